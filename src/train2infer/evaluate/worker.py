"""Measurement harness: one fresh process per variant, driven in interleaved rounds.

Why processes: a TensorFlow runtime in the same process disturbs a LiteRT model timed
right after it (measured here: an int8 model went from 0.11 to 0.17 ms p50 when
interleaved in-process with the Keras baseline), TensorFlow's thread pools can be sized
only once per process, and a variant's memory is only its own in its own process. A
LiteRT worker never imports TensorFlow, so its footprint is that of a real deployment.

The parent (:func:`started`, then :func:`measure_variants`) starts one worker per variant, then in rounds whose
order rotates asks each worker in turn for a block of timed batch-1 calls (one worker
runs at a time; the others sleep on their pipe; a short cool-down separates blocks), then
reads each worker's memory, then sweeps batch sizes for throughput in two passes over all
workers (batch 1: from the rounds).

Worker protocol (JSON lines on stdin/stdout)::

    python -m train2infer.evaluate.worker FORMAT PATH THREADS INPUT.npy WARMUP [PRECISION]
    -> {"ready": true}
    {"op": "latency", "runs": N, "warmup": W} -> {"samples_ms": [...]} (W untimed calls first)
    {"op": "memory"}                      -> {"runtime_rss_bytes", "peak_rss_bytes", ...}
        (LiteRT also: ``load_rss_bytes`` and ``allocate_rss_bytes``, the resident growth while
        creating the interpreter and in ``allocate_tensors()``, where the arena is allocated;
        ``activation_bytes``, the sum of non-constant tensors, an upper bound of the arena)
    {"op": "throughput", "batch": B, "seconds": S} -> {"images_per_second": v}
    {"op": "quit"}
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time


def worker(fmt: str, path: str, threads: int, input_path: str, warmup: int, precision: str = "float") -> None:
    """Serve measurement requests for one variant (see the module docstring)."""
    import numpy as np

    from train2infer import litert, timing
    from train2infer.evaluate import runtimes

    out = sys.stdout
    sys.stdout = sys.stderr  # nothing but protocol lines on the real stdout
    cpus = sorted(os.sched_getaffinity(0))
    if threads < len(cpus):  # pin to the last cores: no migration, away from the parent on core 0
        os.sched_setaffinity(0, set(cpus[-threads:]))
    runtimes.load_runtime(fmt, threads)
    runtime_rss = runtimes.rss()[0]  # the runtime alone, before the model
    make = runtimes.runner(fmt, path, threads, precision)
    x = np.load(input_path)
    call = make(x[:1])
    for _ in range(warmup):
        call()

    def reply(obj):
        out.write(json.dumps(obj) + "\n")
        out.flush()

    reply({"ready": True})
    for line in sys.stdin:
        req = json.loads(line)
        op = req["op"]
        if op == "latency":
            for _ in range(int(req.get("warmup", 0))):  # re-warm caches after another worker ran
                call()
            reply({"samples_ms": timing.timed_block(call, int(req["runs"]))})
        elif op == "memory":
            cur, peak = runtimes.rss()
            mem = {"runtime_rss_bytes": runtime_rss, "rss_bytes": cur, "peak_rss_bytes": peak}
            if fmt == "tflite":
                mem["activation_bytes"] = litert.activation_bytes(call.interp)
                mem["load_rss_bytes"] = call.load_rss_bytes
                mem["allocate_rss_bytes"] = call.allocate_rss_bytes
            reply(mem)
        elif op == "throughput":
            b = int(req["batch"])
            xb = np.concatenate([x] * (b // len(x) + 1))[:b] if b > 1 else x[:1]
            reply({"images_per_second": timing.throughput(make(xb), b, 3, float(req["seconds"]))})
        elif op == "quit":
            reply({"bye": True})
            return


def failure_line(lines: list[str]) -> str:
    """The exception line of a worker's stderr (the last ``SomethingError: ...``; Keras adds lines
    such as ``• mask=None`` after it), else its last line."""
    import re

    for line in reversed(lines):
        if re.match(r"^[\w.]*(Error|Exception|Interrupt)\b", line.strip()):
            return line.strip()
    return lines[-1].strip() if lines else "no output"


class Worker:
    """A variant's measurement process, seen from the parent."""

    def __init__(self, name: str, fmt: str, path: str, threads: int, input_path: str, warmup: int,
                 precision: str = "float"):
        self.name, self.is_ready = name, False
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "train2infer.evaluate.worker", fmt, str(path), str(threads), str(input_path),
             str(warmup), precision],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def ready(self) -> "Worker":
        """Wait until the process has loaded its model and warmed up (workers start in parallel);
        at once when it already has."""
        if not self.is_ready:
            self._expect("ready")
            self.is_ready = True
        return self

    def _expect(self, key: str) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read().strip().splitlines()
            from train2infer import Train2InferError

            raise Train2InferError(f"measurement of {self.name} failed: {failure_line(err)}")
        reply = json.loads(line)
        if key not in reply:
            raise RuntimeError(f"{self.name}: unexpected reply {reply}")
        return reply

    def ask(self, key: str, **request) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self._expect(key)

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.ask("bye", op="quit")
        finally:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def started(variants: dict, thread_counts: list[int], x, warmup_runs: int):
    """Start the workers of the given thread counts at once and yield ``{threads: {label: Worker}}``;
    close them all on exit. They load their runtimes (TensorFlow's take seconds each) while the
    caller does work that is not timed (evaluate's accuracy pass); call :func:`all_ready` before
    timing anything, so that no worker is still loading while another is timed. Ready workers sleep
    on their pipes, yet a second set of 17 alive beside a session measured 2-7 % slower latencies
    (``reports/experiments/idle-workers/``): evaluate starts only the first session's this way.

    Args:
        variants: Label -> :class:`train2infer.core.variants.Variant`.
        thread_counts: One set of workers per thread count.
        x: float32 test images; the first 64 are the workers' input.
        warmup_runs: Untimed calls in each worker before it says it is ready.
    """
    import tempfile
    from pathlib import Path

    import numpy as np

    pools: dict[int, dict[str, Worker]] = {}
    with tempfile.TemporaryDirectory(prefix="t2i-session-") as tmp:
        path = Path(tmp) / "x.npy"
        np.save(path, np.asarray(x[:64], np.float32))
        try:
            for t in thread_counts:
                _start(variants, t, str(path), warmup_runs, pools.setdefault(t, {}))
            yield pools
        finally:
            for pool in pools.values():
                for w in pool.values():
                    w.close()


def all_ready(pools: dict) -> None:
    """Wait until every worker of :func:`started`'s ``pools`` has loaded its model and warmed up."""
    for pool in pools.values():
        for w in pool.values():
            w.ready()


def session(variants: dict, threads: int, x, cfg, *, batch_sizes=(), min_seconds: float | None = None,
            label: str = "evaluate", workers: dict | None = None) -> dict:
    """One interleaved measurement session with evaluate's method: the one place where the method
    (``cfg``, the ``evaluate`` section) becomes a session; evaluate, ``sweep bench`` and
    ``tools/latency_noise.py`` all call it.

    Args:
        variants: Label -> :class:`train2infer.core.variants.Variant` (its ``format``, ``path``
            and ``precision`` say what to load and on which runtime).
        threads: Thread count for every runtime.
        x: float32 test images; the first 64 are the input (batch-1 calls use the first).
        cfg: The ``evaluate`` section: warm-up, minimum runs and seconds, rounds, block warm-up,
            throughput seconds.
        batch_sizes: Throughput sweep (empty: none).
        min_seconds: Instead of ``cfg.min_seconds``.
        label: Who measures, for the progress lines (:mod:`train2infer.core.progress`).
        workers: The variants' workers for ``threads`` from :func:`started` (None: start them here).

    Returns:
        As :func:`measure_variants`.
    """
    with contextlib.ExitStack() as stack:
        if workers is None:
            workers = stack.enter_context(started(variants, [threads], x, cfg.warmup_runs))[threads]
        return measure_variants(
            workers, threads, min_runs=cfg.min_runs,
            min_seconds=cfg.min_seconds if min_seconds is None else min_seconds, runs_per_round=cfg.runs_per_round,
            block_warmup=cfg.block_warmup, batch_sizes=list(batch_sizes), throughput_seconds=cfg.throughput_seconds,
            label=label)


def measure_variants(
    workers: dict,
    threads: int,
    *,
    min_runs: int,
    min_seconds: float,
    runs_per_round: int,
    batch_sizes: list[int],
    throughput_seconds: float,
    block_warmup: int = 5,
    cooldown_seconds: float = 0.002,
    label: str = "evaluate",
) -> dict:
    """Measure every variant in its own process at one thread count.

    Args:
        workers: Label -> :class:`Worker` at ``threads`` threads, from :func:`started` (its caller
            closes them; this waits until each is ready).
        threads: Their thread count.
        min_runs: Rounds continue until every variant has this many timed calls ...
        min_seconds: ... and the rounds have lasted this long in all.
        runs_per_round: Timed calls per variant per round.
        batch_sizes: Throughput sweep (empty: none).
        throughput_seconds: Timed seconds per variant and batch size.
        block_warmup: Untimed calls starting every block (the previous worker left the caches cold).
        cooldown_seconds: Pause between two variants' blocks (spinning thread pools go idle).
        label: Who measures: the progress lines start with it.

    Returns:
        ``{"threads", "rounds", "variants": {name: {"latency", "memory", "throughput", "saturation_batch"}},
        "samples_ms": {name: [every timed call, in order: a round's block is contiguous]}}``.
    """
    from train2infer import timing
    from train2infer.core.progress import Phase

    names = [w.ready().name for w in workers.values()]

    def block(name: str) -> list[float]:
        got = workers[name].ask("samples_ms", op="latency", runs=runs_per_round, warmup=block_warmup)
        time.sleep(cooldown_seconds)
        return got["samples_ms"]

    phase = Phase(label, f"timing {len(names)} models, {threads} thread{'s' if threads > 1 else ''}", unit="round")
    samples, rounds = timing.rotating_rounds(names, block, min_runs, min_seconds, runs_per_round,
                                             lambda r, expected, left: phase.update(r, expected, left))
    after = _after_all(workers, samples, batch_sizes, throughput_seconds, phase)
    phase.end(f"{rounds} rounds of {runs_per_round} calls each{_batches(batch_sizes)}")
    return {"threads": threads, "rounds": rounds, "variants": after, "samples_ms": samples}


def _start(variants: dict, threads: int, input_path: str, warmup_runs: int, workers: dict) -> None:
    """One worker per variant into ``workers`` (so that the caller closes what started)."""
    for name, v in variants.items():
        workers[name] = Worker(name, v.format, v.path, threads, input_path, warmup_runs, v.precision)


def _batches(batch_sizes: list[int]) -> str:
    return f", throughput at batch {', '.join(map(str, batch_sizes))}" if batch_sizes else ""


THROUGHPUT_PASSES = 2  # each variant's throughput window, split in two, one pass over all variants apart


def _after_all(workers: dict, samples: dict, batch_sizes: list[int], seconds: float, phase) -> dict:
    """Every variant's latency summary and memory, then the throughput sweep, saying how far it is.

    Throughput: ``seconds`` per variant and batch size, as :data:`THROUGHPUT_PASSES` windows of
    ``seconds / THROUGHPUT_PASSES``, the variants taking turns within a pass, so that a variant's
    figure averages moments a whole pass apart and no variant is timed only in one of this host's
    fast or slow states (each lasts about a second). Batch 1 is not run again: back-to-back
    batch-1 calls are what the latency rounds timed, so its images/s is 1,000 over their mean in
    ms (every timed call of the session, interleaved over all its rounds).
    """
    from train2infer import timing

    after, phase.unit = {}, "memory and throughput, pass"
    for name, w in workers.items():
        after[name] = {"latency": timing.summarize(samples[name]), "memory": w.ask("peak_rss_bytes", op="memory")}
    rates = {name: {1: 1000.0 / float(sum(samples[name]) / len(samples[name]))} for name in workers}
    sweep = [b for b in batch_sizes if b != 1]
    for k in range(THROUGHPUT_PASSES if sweep else 0):
        phase.update(k, THROUGHPUT_PASSES)
        for b in sweep:
            for name, w in workers.items():
                got = w.ask("images_per_second", op="throughput", batch=b, seconds=seconds / THROUGHPUT_PASSES)
                rates[name][b] = rates[name].get(b, 0.0) + got["images_per_second"] / THROUGHPUT_PASSES
    for name in workers:
        ips = {b: rates[name][b] for b in batch_sizes}
        after[name] |= {"throughput": {str(b): round(v, 1) for b, v in ips.items()},
                        "saturation_batch": timing.saturation_batch(ips)}
    return after


if __name__ == "__main__":
    kind, path, threads, input_path, warmup, *precision = sys.argv[1:]
    worker(kind, path, int(threads), input_path, int(warmup), *precision)
