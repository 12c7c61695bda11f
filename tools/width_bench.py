"""Does a channel width that is not a multiple of 8 cost time? (``shrink.round_to``)

Builds, for each width ``w``, four 3x3 convolutions ``w -> w`` on a 24x24 map (and the same as
1x1 convolutions), converts each to float32 and full-int8 TFLite, and times them all at batch 1
on one thread in one interleaved run (LiteRT with XNNPACK, the runtime of the ``*_tflite_*``
variants). Prints and writes per width: p50 latency, multiply-adds, and multiply-adds per
nanosecond; a width whose throughput drops below its neighbours' wastes SIMD lanes.

Run:  python tools/width_bench.py --widths 56 57 60 62 63 64 65 72 --out reports/experiments/round-to
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import train2infer  # noqa: F401  (first: fixes the Keras flavour before TensorFlow loads)


def block(width: int, kernel: int, size: int = 24, depth: int = 4):
    """``depth`` convolutions ``width -> width`` with a ``kernel`` x ``kernel`` window."""
    import tf_keras as keras

    x0 = keras.Input((size, size, width))
    x = x0
    for _ in range(depth):
        x = keras.layers.Conv2D(width, kernel, padding="same", activation="relu")(x)
    return keras.Model(x0, x), depth * size * size * kernel * kernel * width * width


def measure(widths: list[int], kernels: list[int], seconds: float) -> list[dict]:
    """Latency of every (kernel, width, precision) model, interleaved in one run."""
    import numpy as np

    from train2infer import litert
    from train2infer.convert.tflite import to_tflite
    from train2infer.timing import interleaved_latency

    rng = np.random.default_rng(0)
    calls, rows = {}, {}
    for k in kernels:
        for w in widths:
            model, macs = block(w, k)
            x = rng.uniform(0, 1, (1, *model.input_shape[1:])).astype(np.float32)
            for precision in ("float", "int8"):
                flat = to_tflite(model, precision, representative=rng.uniform(0, 1, (8, *x.shape[1:])))
                name = f"{k}x{k} w{w} {precision}"
                calls[name] = litert.runner(litert.interpreter(flat, 1), x)
                rows[name] = {"kernel": k, "width": w, "precision": precision, "macs": macs}
    latency = interleaved_latency(calls, warmup_runs=20, min_runs=200, min_seconds=seconds, runs_per_round=20)
    for name, row in rows.items():
        row["p50_ms"] = latency[name]["p50_ms"]
        row["macs_per_ns"] = row["macs"] / (row["p50_ms"] * 1e6)
    return list(rows.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[56, 57, 60, 62, 63, 64, 65, 72])
    ap.add_argument("--kernels", type=int, nargs="+", default=[3, 1])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    rows = measure(args.widths, args.kernels, args.seconds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "widths.json").write_text(json.dumps(rows, indent=2) + "\n")
    for r in rows:
        print(f"{r['kernel']}x{r['kernel']} width {r['width']:3d} {r['precision']:5s} p50 {r['p50_ms']:.3f} ms "
              f"{r['macs']:>11,} MACs {r['macs_per_ns']:.2f} MACs/ns")


if __name__ == "__main__":
    main()
