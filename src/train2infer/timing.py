"""Timing: interleaved rotating rounds of timed blocks, summary statistics, throughput.

Method (MLPerf-style single-stream and offline scenarios):

- *Latency* is batch-1: untimed warm-up calls, then individually timed calls
  (``time.perf_counter_ns``) of the whole inference a user makes: input in, output read
  back as NumPy. Variants are measured **interleaved**: in rounds, each variant runs a
  block of calls, and the order rotates every round, so a noisy neighbour or a frequency
  change hits every variant alike. Rounds continue until every variant has at least the
  minimum number of runs and of timed seconds. Reported: p50/p90/p99, mean, std and the
  coefficient of variation (std / mean).
- *Throughput* (offline) is images/s at each batch size of a sweep, over a time-bounded
  loop after warm-up.

The processes that run the calls are :mod:`train2infer.evaluate.worker`; the machine's
GEMM peaks, :mod:`train2infer.evaluate.peaks`.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np


def summarize(samples_ms) -> dict:
    """p50/p90/p99, mean, std and coefficient of variation of latency samples (ms)."""
    ms = np.asarray(samples_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    mean = float(ms.mean())
    return {
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "mean_ms": mean,
        "std_ms": float(ms.std()),
        "cv": float(ms.std() / mean) if mean > 0 else 0.0,
        "runs": int(ms.size),
    }


def interleaved_latency(
    calls: dict[str, Callable[[], object]],
    warmup_runs: int,
    min_runs: int,
    min_seconds: float,
    runs_per_round: int,
) -> dict[str, dict]:
    """Batch-1 latency of several variants, measured in rotating interleaved rounds.

    Args:
        calls: Variant name -> one inference.
        warmup_runs: Untimed calls per variant before the first round.
        min_runs: Rounds continue until every variant has this many timed calls ...
        min_seconds: ... and the rounds have lasted this long in all.
        runs_per_round: Calls per variant per round.

    Returns:
        Variant name -> :func:`summarize` plus ``rounds``.
    """
    names = list(calls)
    for name in names:
        for _ in range(warmup_runs):
            calls[name]()
    samples, rounds = rotating_rounds(
        names, lambda name: timed_block(calls[name], runs_per_round), min_runs, min_seconds, runs_per_round
    )
    return {n: {**summarize(samples[n]), "rounds": rounds} for n in names}


def timed_block(call: Callable[[], object], runs: int) -> list[float]:
    """``runs`` calls of ``call``, each timed on its own; milliseconds."""
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        call()
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    return samples


def rotating_rounds(
    names: list[str],
    block: Callable[[str], list[float]],
    min_runs: int,
    min_seconds: float,
    runs_per_round: int,
    on_round: Callable[[int, int, float], None] | None = None,
) -> tuple[dict[str, list[float]], int]:
    """Interleave timed blocks of several variants in rounds whose order rotates.

    Args:
        names: Variants, in their first-round order.
        block: Times one block of ``runs_per_round`` calls of a variant; its samples.
        min_runs: Rounds continue until every variant has this many samples ...
        min_seconds: ... and the rounds have lasted this long in all.
        runs_per_round: Samples one block yields.
        on_round: Called after every round with ``(rounds done, rounds expected, seconds left)``.

    Returns:
        ``(samples per variant, rounds)``.
    """
    samples: dict[str, list[float]] = {n: [] for n in names}
    rounds, start = 0, time.perf_counter()
    need = math.ceil(min_runs / runs_per_round)
    while rounds * runs_per_round < min_runs or time.perf_counter() - start < min_seconds:
        k = rounds % len(names)
        for name in names[k:] + names[:k]:
            samples[name] += block(name)
        rounds += 1
        if on_round is not None:
            elapsed = time.perf_counter() - start
            left = max((need - rounds) * elapsed / rounds, min_seconds - elapsed, 0.0)
            on_round(rounds, rounds + math.ceil(left * rounds / elapsed) if elapsed else rounds, left)
    return samples, rounds


def throughput(call: Callable[[], object], batch: int, warmup_runs: int, min_seconds: float,
               min_runs: int = 5) -> float:
    """Offline throughput in images/s of a batched inference ``call`` of ``batch`` images."""
    for _ in range(warmup_runs):
        call()
    runs, t0 = 0, time.perf_counter()
    while runs < min_runs or time.perf_counter() - t0 < min_seconds:
        call()
        runs += 1
    return batch * runs / (time.perf_counter() - t0)


def saturation_batch(images_per_second: dict[int, float], tolerance: float = 0.05) -> int | None:
    """The smallest batch size whose throughput is within ``tolerance`` of the best, or
    None when throughput still grows by more than ``tolerance`` at the largest batch
    (not saturated within the sweep, or no sweep at all)."""
    if not images_per_second:
        return None
    batches = sorted(images_per_second)
    best = max(images_per_second.values())
    if len(batches) > 1 and images_per_second[batches[-1]] > (1 + tolerance) * images_per_second[batches[-2]]:
        return None
    return min(b for b in batches if images_per_second[b] >= (1 - tolerance) * best)


def tflite_p50(models: dict, x: np.ndarray, threads: int = 1, seconds: float = 2.0) -> dict[str, float]:
    """p50 ms of whole ``.tflite`` models (name -> bytes) on input ``x`` (batch 1), interleaved in
    one run on LiteRT: what comparing two conversions of one model needs."""
    from train2infer import litert

    calls = {n: litert.runner(litert.interpreter(c, num_threads=threads), x) for n, c in models.items()}
    timed = interleaved_latency(calls, warmup_runs=20, min_runs=200, min_seconds=seconds, runs_per_round=20)
    return {n: timed[n]["p50_ms"] for n in models}
