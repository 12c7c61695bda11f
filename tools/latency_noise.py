"""How much does a speedup move from one measurement session to the next on this machine?

    python tools/latency_noise.py --seconds 300 --window 20 --out reports/experiments/latency-noise

Times the baseline and a few exported variants of the workspace (``models/``) interleaved for
``--seconds`` with evaluate's method and settings (``params.yaml``: rounds, warm-up, first thread
count), then cuts the session into consecutive windows of about ``--window`` seconds, as long as
one evaluate session, and computes in each window the speedup over the baseline two ways: the
ratio of p50s over every round, and over the quiet rounds only (what evaluate reports). The
spread of the window estimates (coefficient of variation) is what no resampling inside one
session can see: ``evaluate.session_cv`` is set from it. Writes ``summary.json`` (every
window) and ``table.md`` (the summary table) to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

import train2infer  # noqa: F401  (first: fixes the Keras flavour before TensorFlow loads)
from train2infer import config, stats
from train2infer.core import cli
from train2infer.core.publish import write_json
from train2infer.core.variants import BASELINE, read_manifest
from train2infer.evaluate import worker
from train2infer.prepared import load_prepared, to_float

VARIANTS = ("trained_saved_model_float", "trained_tflite_float", "trained_tflite_dynamic", "shrunk_tflite_float",
            "shrunk_tflite_int8")


def measure(cfg, seconds: float, models: Path, data: Path) -> tuple[dict, float]:
    """Every call of one long interleaved session, in order, and its wall time."""
    exported, _ = read_manifest(models / "export")
    variants = {BASELINE.name: dataclasses.replace(BASELINE, path=str(models / "trained.keras"))}
    variants |= {v.name: v for v in exported if v.name in VARIANTS}
    t0 = time.perf_counter()
    got = worker.session(variants, cfg.threads[0] or 1, to_float(load_prepared(data, "test")[0]), cfg,
                         min_seconds=seconds, label="latency_noise")
    return got["samples_ms"], time.perf_counter() - t0


def windows(samples: dict, cfg, per_window: int) -> dict:
    """Per variant and window: all-rounds and quiet-rounds speedups with the within-session interval."""
    rounds = {n: stats.by_round(s, cfg.runs_per_round) for n, s in samples.items()}
    base = rounds[BASELINE.name]
    out = {}
    for name, r in rounds.items():
        if name == BASELINE.name:
            continue
        rows = []
        for w0 in range(0, len(base) - per_window + 1, per_window):
            b, v = base[w0:w0 + per_window], r[w0:w0 + per_window]
            quiet = stats.quiet_rounds(b, cfg.quiet_tolerance)
            _, lo, hi = stats.ratio_interval(b, v, quiet=quiet, block=cfg.bootstrap_block, reps=500)
            rows.append({"all_rounds": float(np.median(b) / np.median(v)),
                         "quiet": float(np.median(b[quiet]) / np.median(v[quiet])), "quiet_ci": [lo, hi],
                         "quiet_share": float(quiet.mean())})
        out[name] = rows
    return out


def cv(values) -> float:
    v = np.asarray(values, np.float64)
    return float(v.std(ddof=1) / v.mean())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--window", type=float, default=20.0, help="seconds per window (one evaluate session)")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    cfg = config.load_checked(args.params).evaluate
    samples, wall = measure(cfg, args.seconds, Path("models"), Path("data/prepared"))
    n_rounds = len(next(iter(samples.values()))) // cfg.runs_per_round
    per_window = max(10, int(n_rounds * args.window / wall))
    got = windows(samples, cfg, per_window)
    summary = {"seconds": round(wall, 1), "rounds": n_rounds, "rounds_per_window": per_window,
               "variants": {n: {"cv_all_rounds": cv([w["all_rounds"] for w in rows]),
                                "cv_quiet": cv([w["quiet"] for w in rows]),
                                "next_window_outside_interval": sum(
                                    not (a["quiet_ci"][0] <= b["quiet"] <= a["quiet_ci"][1])
                                    for a, b in zip(rows, rows[1:])),
                                "windows": rows} for n, rows in got.items()}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "summary.json", summary)
    lines = [f"| {n} | {len(v['windows'])} | {v['cv_all_rounds']:.1%} | {v['cv_quiet']:.1%} | "
             f"{v['next_window_outside_interval']} of {len(v['windows']) - 1} |"
             for n, v in summary["variants"].items()]
    head = ("| variant | windows | CV of p50 speedup, all rounds | CV, quiet rounds | next window's "
            "estimate outside this window's bootstrap interval |\n|---|---:|---:|---:|---:|\n")
    (out / "table.md").write_text(head + "\n".join(lines) + "\n")
    print(f"latency_noise: {n_rounds} rounds in {wall:.0f} s, windows of {per_window} rounds -> {out}/summary.json")
    print("\n".join(lines))


if __name__ == "__main__":
    cli.run(main)
