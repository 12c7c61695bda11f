"""This machine's GEMM peaks on LiteRT: what the variants' achieved work rate is compared with.

The six one-convolution models timed here ship with the package (``peak_models/``, 0.3 MB,
written by ``python tools/peak_models.py``): converting them took 8 s of every evaluate run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PEAK_SHAPES = ((32, 128, 128, 1), (16, 64, 64, 3))  # (height=width, in, out, kernel)
MODES = {"float32": ("float32",), "int8": ("full_int8", "dynamic")}  # kind -> TFLite modes timed
PRECISION = {"float32": "float", "full_int8": "int8", "dynamic": "dynamic"}  # mode -> models.io precision
SHIPPED = Path(__file__).with_name("peak_models")


def model_name(hw: int, c_in: int, c_out: int, k: int, mode: str) -> str:
    """File stem of a peak model, e.g. ``32x32x128-128_k1_float32``."""
    return f"{hw}x{hw}x{c_in}-{c_out}_k{k}_{mode}"


def build(hw: int, c_in: int, c_out: int, k: int, mode: str) -> bytes:
    """The ``.tflite`` bytes of one peak model: a single bias-free ``k`` x ``k`` convolution from
    ``c_in`` to ``c_out`` channels over an ``hw`` x ``hw`` grid (weights from seed 0), batch 1;
    ``full_int8`` with int8 input and output, calibrated on 8 seeded normal images."""
    import tf_keras as keras

    from train2infer.models.io import to_tflite

    keras.utils.set_random_seed(0)
    inp = keras.Input((hw, hw, c_in), batch_size=1)
    model = keras.Model(inp, keras.layers.Conv2D(c_out, k, padding="same", use_bias=False)(inp))
    rep = np.random.default_rng(0).standard_normal((8, hw, hw, c_in)).astype(np.float32)
    return to_tflite(model, PRECISION[mode], representative=rep, int8_io=mode == "full_int8")


def load(hw: int, c_in: int, c_out: int, k: int, mode: str) -> bytes:
    """The shipped peak model, or (a shape or mode not shipped) one converted now."""
    path = SHIPPED / f"{model_name(hw, c_in, c_out, k, mode)}.tflite"
    return path.read_bytes() if path.is_file() else build(hw, c_in, c_out, k, mode)


def matmul_peaks(num_threads: int, seconds: float = 3.0) -> dict:
    """Peak GFLOP/s (float32) and GOP/s (int8) of this machine's GEMM kernels on LiteRT.

    Each shape is one convolution: a 1x1 convolution over a 32x32 grid is a plain
    1024x128 by 128x128 matmul, a 3x3 one an im2col matmul, both run by XNNPACK's GEMM
    microkernels like the variants' own layers. The six models (two shapes, three modes) are
    timed like the variants: batch 1, p50 of individually timed calls, same runtime and threads,
    interleaved in rotating rounds for at least ``seconds`` in all, so that each spans the fast
    and slow states this host switches between every second (one after another, 1.5 s each,
    they took 9 s of every evaluate run). int8 takes the better of full-integer and dynamic-range
    quantization (both compute in int8).

    Returns:
        ``{kind: {"gflops": best rate, "shapes": {shape: rate}}}`` for kind float32 and int8.
    """
    from train2infer.litert import interpreter
    from train2infer.timing import interleaved_latency

    rng = np.random.default_rng(0)
    calls, work, kinds = {}, {}, {}
    for kind, modes in MODES.items():
        for hw, c_in, c_out, k in PEAK_SHAPES:
            for mode in modes:
                interp = interpreter(load(hw, c_in, c_out, k, mode), num_threads=num_threads)
                detail = interp.get_input_details()[0]
                shape = (1, hw, hw, c_in)
                x = rng.integers(-100, 100, shape) if mode == "full_int8" else rng.standard_normal(shape)
                name = f"{hw}x{hw}x{c_in}->{c_out} k{k} {mode}"
                calls[name] = _invoke(interp, detail["index"], x.astype(detail["dtype"]))
                work[name], kinds[name] = 2.0 * hw * hw * c_in * c_out * k * k, kind
    timed = interleaved_latency(calls, 20, 200, seconds, 25)
    out = {kind: {"gflops": 0.0, "shapes": {}} for kind in MODES}
    for name, t in timed.items():
        rate = round(work[name] / (t["p50_ms"] / 1e3) / 1e9, 2)
        out[kinds[name]]["shapes"][name] = rate
        out[kinds[name]]["gflops"] = max(out[kinds[name]]["gflops"], rate)
    return out


def _invoke(interp, index: int, x: np.ndarray):
    """One batch-1 call of ``interp`` on ``x``."""

    def call():
        interp.set_tensor(index, x)
        interp.invoke()

    return call
