"""Write the GEMM peak models evaluate times (src/train2infer/evaluate/peak_models/*.tflite).

They ship with the package so that no evaluate run converts them (8 s each run). Re-run after
changing ``PEAK_SHAPES`` or ``MODES`` in train2infer.evaluate.peaks, or the TensorFlow version;
tests/test_evaluate.py checks that every shape and mode is shipped with the expected tensors.

Run:  python tools/peak_models.py     # ~10 s; prints one line per model
"""

from __future__ import annotations

import train2infer  # noqa: F401  (first: fixes the Keras flavour before TensorFlow loads)


def main() -> None:
    from train2infer.evaluate import peaks

    peaks.SHIPPED.mkdir(exist_ok=True)
    for old in peaks.SHIPPED.glob("*.tflite"):
        old.unlink()
    for shape in peaks.PEAK_SHAPES:
        for modes in peaks.MODES.values():
            for mode in modes:
                path = peaks.SHIPPED / f"{peaks.model_name(*shape, mode)}.tflite"
                path.write_bytes(peaks.build(*shape, mode))
                print(f"peak_models: {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
