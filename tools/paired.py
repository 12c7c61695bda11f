"""Paired accuracy of Keras models on the same prepared test images (an ablation's verdict).

Each model's accuracy with its Wilson interval, and against the first model: the difference in
points with its paired bootstrap interval, McNemar's exact p and the verdict at 5 %, as evaluate
reports them. Used by the recorded experiments to compare what one knob does (e.g. shrink with and
without distillation) without a whole pipeline run per setting.

``--against NAME=K/N`` adds, per model, an *unpaired* comparison with an accuracy recorded
elsewhere (another run's K correct of N images, e.g. a report's metrics.json whose models are
gone): Newcombe's interval of the difference and the pooled z-test (``stats.unpaired``). Weaker than
the paired test: two runs' models err on different images.

Run:  python tools/paired.py --data data/prepared models/shrunk.keras models/ablation/no_distill.keras
      python tools/paired.py --data data/prepared models/scratch.keras --against run8_shrunk=8541/10000
"""

from __future__ import annotations

import argparse

import train2infer  # noqa: F401  (first: fixes the Keras flavour before TensorFlow loads)
from train2infer import stats


def compare(data: str, paths: list[str]) -> list[dict]:
    """One row per model: accuracy and interval; against ``paths[0]``: difference, interval, p, verdict."""
    import numpy as np

    from train2infer.models import io
    from train2infer.prepared import load_prepared, to_float

    x, y = load_prepared(data, "test")
    preds = [np.argmax(io.load_model(p).predict(to_float(x), batch_size=256, verbose=0), axis=-1) for p in paths]
    rows = []
    for path, pred in zip(paths, preds):
        c = stats.compare_accuracy(y, preds[0], pred)
        correct = int(np.sum(pred == y))
        rows.append({"model": path, "accuracy": correct / y.size, "ci": (c["accuracy_ci_low"],
                     c["accuracy_ci_high"]), "difference": float(np.mean(pred == y) - np.mean(preds[0] == y)),
                     "difference_ci": (c["accuracy_diff_ci_low"], c["accuracy_diff_ci_high"]),
                     "p": c["mcnemar_p"], "verdict": c["accuracy_verdict"], "correct": correct, "n": int(y.size)})
    return rows


def against(text: str) -> tuple[str, int, int]:
    """``NAME=K/N`` -> ``(NAME, K, N)``, ``0 <= K <= N`` and ``N > 0`` (argparse type: else a usage error)."""
    name, _, kn = text.partition("=")
    k, _, n = kn.partition("/")
    if not (name and k.isdigit() and n.isdigit() and 0 <= int(k) <= int(n) and int(n) > 0):
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=K/N, K of N images right (0 <= K <= N)")
    return name, int(k), int(n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--against", type=against, metavar="NAME=K/N", help="unpaired, against K of N right in another run")
    args = ap.parse_args()
    rows = compare(args.data, args.models)
    if args.against:
        name, k, n = args.against
        print(f"| model | accuracy [95% CI] | vs {name} ({k}/{n}), points [95% CI, Newcombe] | z-test p | at 5 % |\n"
              "|---|---|---|---:|---|")
        for r in rows:
            u = stats.unpaired(r["correct"], r["n"], k, n)
            print(f"| {r['model']} | {r['accuracy']:.4f} [{r['ci'][0]:.4f}, {r['ci'][1]:.4f}] | "
                  f"{100 * u['difference']:+.2f} [{100 * u['difference_ci_low']:+.2f}, "
                  f"{100 * u['difference_ci_high']:+.2f}] | {u['p_value']:.3g} | {u['verdict']} |")
        return
    print("| model | accuracy [95% CI] | vs first, points [95% CI] | McNemar p | at 5 % |\n|---|---|---|---:|---|")
    for r in rows:
        print(f"| {r['model']} | {r['accuracy']:.4f} [{r['ci'][0]:.4f}, {r['ci'][1]:.4f}] | "
              f"{100 * r['difference']:+.2f} [{100 * r['difference_ci'][0]:+.2f}, {100 * r['difference_ci'][1]:+.2f}] "
              f"| {r['p']:.3g} | {r['verdict']} |")


if __name__ == "__main__":
    main()
