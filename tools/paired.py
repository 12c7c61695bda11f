"""Paired accuracy of Keras models on the same prepared test images (an ablation's verdict).

Each model's accuracy with its Wilson interval, and against the first model: the difference in
points with its paired bootstrap interval, McNemar's exact p and the verdict at 5 %, as evaluate
reports them. Used by the recorded experiments to compare what one knob does (e.g. shrink with and
without distillation) without a whole pipeline run per setting.

Run:  python tools/paired.py --data data/prepared models/shrunk.keras models/ablation/no_distill.keras
"""

from __future__ import annotations

import argparse

import train2infer  # noqa: F401  (first: fixes the Keras flavour before TensorFlow loads)


def compare(data: str, paths: list[str]) -> list[dict]:
    """One row per model: accuracy and interval; against ``paths[0]``: difference, interval, p, verdict."""
    import numpy as np

    from train2infer import stats
    from train2infer.models import io
    from train2infer.prepared import load_prepared, to_float

    x, y = load_prepared(data, "test")
    preds = [np.argmax(io.load_model(p).predict(to_float(x), batch_size=256, verbose=0), axis=-1) for p in paths]
    rows = []
    for path, pred in zip(paths, preds):
        c = stats.compare_accuracy(y, preds[0], pred)
        rows.append({"model": path, "accuracy": float(np.mean(pred == y)), "ci": (c["accuracy_ci_low"],
                     c["accuracy_ci_high"]), "difference": float(np.mean(pred == y) - np.mean(preds[0] == y)),
                     "difference_ci": (c["accuracy_diff_ci_low"], c["accuracy_diff_ci_high"]),
                     "p": c["mcnemar_p"], "verdict": c["accuracy_verdict"]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("models", nargs="+")
    args = ap.parse_args()
    print("| model | accuracy [95% CI] | vs first, points [95% CI] | McNemar p | at 5 % |\n|---|---|---|---:|---|")
    for r in compare(args.data, args.models):
        print(f"| {r['model']} | {r['accuracy']:.4f} [{r['ci'][0]:.4f}, {r['ci'][1]:.4f}] | "
              f"{100 * r['difference']:+.2f} [{100 * r['difference_ci'][0]:+.2f}, {100 * r['difference_ci'][1]:+.2f}] "
              f"| {r['p']:.3g} | {r['verdict']} |")


if __name__ == "__main__":
    main()
