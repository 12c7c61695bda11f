"""Uncertainty of the numbers evaluate reports (NumPy only, no TensorFlow).

- *Accuracy* of one variant: a Wilson score interval (95 %) on k correct of n images.
- *Accuracy against the baseline*, on the same test images (a paired design): the exact
  McNemar test on the discordant images (``b``: only the baseline right, ``c``: only the
  variant right; under "no difference" each discordant image is a fair coin, so the
  two-sided p-value is a binomial tail), and a paired bootstrap interval on the accuracy
  difference (images resampled, both models' answers kept together).
- *Speedup* of a variant over the baseline (ratio of p50 latencies over the rounds in which
  the machine was quiet, :func:`quiet_rounds`): a bootstrap interval that resamples the
  interleaved **rounds**, not single calls, in blocks of consecutive rounds. Calls within a
  round share the machine's state of that moment (this host flips between fast and slow
  states that last seconds to minutes), so they are not independent. The same rounds are
  drawn for both models (paired in time). What one session cannot see, how much a whole
  session's estimate moves on this machine, is added as a measured relative spread
  (``session_cv``).

Every bootstrap uses a fixed seed: the same measurements give the same interval.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

Z95 = NormalDist().inv_cdf(0.975)  # two-sided 95 % normal quantile
ALPHA = 0.05


def wilson(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``correct / n`` (``(0, 1)`` when ``n`` is 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def above_chance(y, predicted) -> dict:
    """Whether ``predicted`` beats always answering the most common class of ``y``: the lower end
    of the accuracy's Wilson 95 % interval lies above that class's share."""
    y, predicted = np.asarray(y), np.asarray(predicted)
    majority = float(np.bincount(y).max() / len(y)) if len(y) else 1.0
    correct = int((y == predicted).sum())
    low, _ = wilson(correct, len(y))
    return {"accuracy": correct / max(len(y), 1), "majority": majority, "low": low, "above": low > majority}


def mcnemar(base_correct, variant_correct) -> dict:
    """Exact two-sided McNemar test of two models on the same images.

    Args:
        base_correct: Per image, whether the baseline was right.
        variant_correct: Per image, whether the variant was right.

    Returns:
        ``{"only_baseline": b, "only_variant": c, "p_value": p}`` where
        ``p = min(1, 2 * P[X <= min(b, c)])``, ``X ~ Binomial(b + c, 1/2)``; 1 when the two
        models never disagree.
    """
    a, v = np.asarray(base_correct, bool), np.asarray(variant_correct, bool)
    if a.shape != v.shape:
        raise ValueError(f"paired test on different image counts: {a.shape} vs {v.shape}")
    b, c = int(np.sum(a & ~v)), int(np.sum(~a & v))
    n = b + c
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n if n else 1.0
    return {"only_baseline": b, "only_variant": c, "p_value": min(1.0, 2 * tail)}


def paired_difference(base_correct, variant_correct, reps: int = 10000, seed: int = 0,
                      level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of ``accuracy(variant) - accuracy(baseline)``, images
    resampled with both models' answers kept together (exactly ``(0, 0)`` when they agree on
    every image)."""
    d = np.asarray(variant_correct, np.int8) - np.asarray(base_correct, np.int8)
    if not d.any():
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(reps, d.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def unpaired(correct: int, n: int, ref_correct: int, ref_n: int) -> dict:
    """Accuracy ``correct / n`` against ``ref_correct / ref_n`` measured on *other* images or by
    another run, where no paired test applies: Newcombe's hybrid score interval of the difference
    (from the two Wilson intervals; Newcombe 1998, method 10) and the two-sided pooled z-test.

    Returns:
        ``{"difference", "difference_ci_low", "difference_ci_high", "p_value", "verdict"}``.
    """
    p1, p2 = correct / n, ref_correct / ref_n
    (l1, u1), (l2, u2) = wilson(correct, n), wilson(ref_correct, ref_n)
    diff = p1 - p2
    low = diff - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = diff + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    pooled = (correct + ref_correct) / (n + ref_n)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / ref_n))
    p_value = 2 * (1 - NormalDist().cdf(abs(diff) / se)) if se > 0 else 1.0
    return {"difference": diff, "difference_ci_low": low, "difference_ci_high": high, "p_value": p_value,
            "verdict": verdict(p_value, diff)}


def verdict(p_value: float, difference: float, alpha: float = ALPHA) -> str:
    """``no significant difference`` or ``significantly better|worse`` at level ``alpha``."""
    if p_value >= alpha or difference == 0:
        return "no significant difference"
    return "significantly better" if difference > 0 else "significantly worse"


def compare_accuracy(y, base_pred, variant_pred) -> dict:
    """A variant's accuracy against the baseline's on the same images: its Wilson interval,
    McNemar's counts and p-value, the bootstrap interval of the difference and the verdict."""
    y = np.asarray(y)
    base_ok, ok = np.asarray(base_pred) == y, np.asarray(variant_pred) == y
    lo, hi = wilson(int(ok.sum()), int(ok.size))
    test = mcnemar(base_ok, ok)
    dlo, dhi = paired_difference(base_ok, ok)
    diff = float(ok.mean() - base_ok.mean())
    return {"accuracy_ci_low": lo, "accuracy_ci_high": hi, "accuracy_diff_ci_low": dlo, "accuracy_diff_ci_high": dhi,
            "mcnemar_only_baseline": test["only_baseline"], "mcnemar_only_variant": test["only_variant"],
            "mcnemar_p": test["p_value"], "accuracy_verdict": verdict(test["p_value"], diff)}


def by_round(samples_ms, runs_per_round: int) -> np.ndarray:
    """Latency samples in call order -> ``(rounds, runs_per_round)`` (a round's block is contiguous)."""
    ms = np.asarray(samples_ms, np.float64)
    if runs_per_round <= 0 or ms.size % runs_per_round:
        raise ValueError(f"{ms.size} samples are not whole rounds of {runs_per_round}")
    return ms.reshape(-1, runs_per_round)


def quiet_rounds(base_rounds, tolerance: float) -> np.ndarray:
    """Rounds in which the machine was in its quiet (fast) state: the baseline's median in the
    round is within ``tolerance`` of its 5th-percentile round median.

    This host flips between a fast and a slow state (measured here: the Keras baseline's round
    medians cluster at 0.75 and 1.25 ms) and the two runtimes slow down by different amounts, so
    a ratio over all rounds depends on how long each state lasted in the session: p50 ratios of
    20-s windows of one long session varied with a CV of 7-10 %, ratios over quiet rounds by
    about 1 % (``reports/experiments/latency-noise/``).
    """
    med = np.median(np.asarray(base_rounds, np.float64), axis=1)
    return med <= (1 + tolerance) * np.percentile(med, 5)


def _block_indices(rng, n: int, block: int, reps: int) -> np.ndarray:
    """``reps`` moving-block bootstrap resamples of ``0..n-1``: runs of ``block`` consecutive
    rounds (the machine's state persists for several rounds), cut to length ``n``."""
    block = max(1, min(block, n))
    starts = rng.integers(0, n - block + 1, size=(reps, -(-n // block)))
    return (starts[:, :, None] + np.arange(block)).reshape(reps, -1)[:, :n]


def ratio_interval(base_rounds, variant_rounds, *, quiet=None, block: int = 1, session_cv: float = 0.0,
                   reps: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """Speedup ``p50(baseline) / p50(variant)`` with a bootstrap interval over rounds.

    Args:
        base_rounds: Baseline latencies, ``(rounds, calls)`` (see :func:`by_round`).
        variant_rounds: The variant's, same rounds (the same interleaved session).
        quiet: Which rounds count (:func:`quiet_rounds`); None: all.
        block: Moving-block length in rounds (1: rounds resampled one by one).
        session_cv: Relative spread of a whole session's estimate on this machine, which no
            resampling within one session can see; added in quadrature (log scale) to the
            bootstrap half-widths. 0: the bootstrap interval alone.
        reps: Bootstrap replicates.
        seed: Random seed (the interval is reproducible).
        level: Coverage.

    Returns:
        ``(estimate, low, high)``; the estimate is the ratio of the medians of the counted calls.
    """
    base, var = np.asarray(base_rounds, np.float64), np.asarray(variant_rounds, np.float64)
    if base.shape[0] != var.shape[0]:
        raise ValueError(f"rounds differ: {base.shape[0]} vs {var.shape[0]}")
    if quiet is not None:
        base, var = base[quiet], var[quiet]
    estimate = float(np.median(base) / np.median(var))
    rng = np.random.default_rng(seed)
    ratios = np.empty(reps)
    for i0 in range(0, reps, 250):  # chunks: bounded memory
        idx = _block_indices(rng, base.shape[0], block, min(250, reps - i0))
        ratios[i0:i0 + len(idx)] = (np.median(base[idx].reshape(len(idx), -1), axis=1)
                                    / np.median(var[idx].reshape(len(idx), -1), axis=1))
    lo, hi = np.quantile(ratios, [(1 - level) / 2, (1 + level) / 2])
    widen = (NormalDist().inv_cdf((1 + level) / 2) * session_cv) ** 2
    lo = estimate * math.exp(-math.sqrt(math.log(estimate / min(lo, estimate)) ** 2 + widen))
    hi = estimate * math.exp(math.sqrt(math.log(max(hi, estimate) / estimate) ** 2 + widen))
    return estimate, float(lo), float(hi)


def speedups(rounds: dict, baseline: str, *, tolerance: float, block: int, session_cv: float) -> tuple[dict, float]:
    """Every model's speedup over ``baseline`` in one interleaved session, as evaluate reports it.

    Args:
        rounds: Model -> its latencies, ``(rounds, calls)`` (:func:`by_round`), same rounds for all.
        baseline: The key of the baseline in ``rounds``.
        tolerance: See :func:`quiet_rounds` (the baseline's rounds decide which count).
        block: See :func:`ratio_interval`.
        session_cv: See :func:`ratio_interval`.

    Returns:
        ``({model: {"speedup_p50", "speedup_p50_ci_low", "speedup_p50_ci_high",
        "latency_p50_ms_quiet"}}, share of the rounds counted)``; the baseline's own speedup is
        exactly 1 with no interval around it.
    """
    base = rounds[baseline]
    quiet = quiet_rounds(base, tolerance)
    out = {}
    for name, r in rounds.items():
        est, lo, hi = (1.0, 1.0, 1.0) if name == baseline else ratio_interval(
            base, r, quiet=quiet, block=block, session_cv=session_cv)
        out[name] = {"speedup_p50": est, "speedup_p50_ci_low": lo, "speedup_p50_ci_high": hi,
                     "latency_p50_ms_quiet": float(np.median(r[quiet]))}
    return out, float(quiet.mean())
