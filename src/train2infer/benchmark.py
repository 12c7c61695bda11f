"""Latency, throughput, work and size measurement.

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
- *Work* is counted from the model's layers (multiply-adds of Conv2D, DepthwiseConv2D and
  Dense), dense and sparsity-aware; *peak* is a float32 and an int8 matmul microbenchmark
  on the same runtime and thread count.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import time
from pathlib import Path
from typing import Callable

import numpy as np


def set_tf_threads(num_threads: int) -> None:
    """Fix TensorFlow's thread pools (call before TensorFlow runs any op).

    Raises:
        RuntimeError: If TensorFlow's runtime is already initialised.
    """
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(num_threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def latency(call: Callable[[], object], warmup_runs: int, timed_runs: int) -> dict:
    """Time ``call`` after warm-up.

    Args:
        call: One inference, input to output.
        warmup_runs: Untimed calls first (allocations, caches, tracing).
        timed_runs: Timed calls.

    Returns:
        ``p50_ms``, ``p90_ms``, ``p99_ms``, ``mean_ms``, ``std_ms``, ``runs``.
    """
    for _ in range(warmup_runs):
        call()
    ms = np.asarray(timed_block(call, timed_runs))
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "mean_ms": float(ms.mean()),
        "std_ms": float(ms.std()),
        "runs": int(timed_runs),
    }


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
) -> tuple[dict[str, list[float]], int]:
    """Interleave timed blocks of several variants in rounds whose order rotates.

    Args:
        names: Variants, in their first-round order.
        block: Times one block of ``runs_per_round`` calls of a variant; its samples.
        min_runs: Rounds continue until every variant has this many samples ...
        min_seconds: ... and the rounds have lasted this long in all.
        runs_per_round: Samples one block yields.

    Returns:
        ``(samples per variant, rounds)``.
    """
    samples: dict[str, list[float]] = {n: [] for n in names}
    rounds, start = 0, time.perf_counter()
    while rounds * runs_per_round < min_runs or time.perf_counter() - start < min_seconds:
        k = rounds % len(names)
        for name in names[k:] + names[:k]:
            samples[name] += block(name)
        rounds += 1
    return samples, rounds


def throughput(call: Callable[[], object], batch: int, warmup_runs: int, min_seconds: float, min_runs: int = 5) -> float:
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


def layer_macs(model) -> list[dict]:
    """Multiply-adds per Conv2D / DepthwiseConv2D / Dense layer for one input image.

    Returns:
        One dict per such layer: ``layer``, ``type``, ``macs`` (dense count) and
        ``nonzero`` (fraction of non-zero kernel weights, so that
        ``macs * nonzero`` is the work a sparse kernel would have to do).
    """
    import tf_keras as keras

    rows = []
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        out_shape = layer.output_shape
        if isinstance(inner, keras.layers.DepthwiseConv2D):
            k = inner.depthwise_kernel.numpy()
            _, h, w, c_out = out_shape
            macs = h * w * c_out * k.shape[0] * k.shape[1]
        elif isinstance(inner, keras.layers.Conv2D):
            k = inner.kernel.numpy()
            _, h, w, c_out = out_shape
            macs = h * w * c_out * k.shape[0] * k.shape[1] * k.shape[2] // getattr(inner, "groups", 1)
        elif isinstance(inner, keras.layers.Dense):
            k = inner.kernel.numpy()
            positions = int(np.prod(out_shape[1:-1])) if len(out_shape) > 2 else 1
            macs = positions * k.shape[0] * k.shape[1]
        else:
            continue
        rows.append({"layer": inner.name, "type": type(inner).__name__, "macs": int(macs),
                     "nonzero": float(np.count_nonzero(k) / k.size)})
    return rows


def total_macs(rows: list[dict], nonzero: bool = False) -> float:
    """Sum of :func:`layer_macs` rows: dense multiply-adds, or with ``nonzero`` those on
    non-zero weights (the work a sparse kernel would do)."""
    return sum(r["macs"] * (r["nonzero"] if nonzero else 1) for r in rows)


PEAK_SHAPES = ((32, 128, 128, 1), (16, 64, 64, 3))  # (height=width, in, out, kernel)


def matmul_peak(kind: str, num_threads: int, seconds: float = 1.5) -> dict:
    """Peak GFLOP/s (float32) or GOP/s (int8) of this machine's GEMM kernels on LiteRT.

    Each shape is one convolution: a 1x1 convolution over a 32x32 grid is a plain
    1024x128 by 128x128 matmul, a 3x3 one an im2col matmul, both run by XNNPACK's GEMM
    microkernels like the variants' own layers. Timed like the variants (batch 1, p50 of
    individually timed calls, same runtime and threads, at least ``seconds``: long enough to
    span the fast and slow states this host switches between every second). int8 takes
    the better of full-integer and dynamic-range quantization (both compute in int8).

    Returns:
        ``{"gflops": best rate, "shapes": {shape: rate}}``.
    """
    import tensorflow as tf
    import tf_keras as keras

    from train2infer.conversion import interpreter

    if kind not in ("float32", "int8"):
        raise ValueError(f"unknown kind {kind!r}")
    rng = np.random.default_rng(0)
    rates = {}
    for hw, c_in, c_out, k in PEAK_SHAPES:
        inp = keras.Input((hw, hw, c_in), batch_size=1)
        model = keras.Model(inp, keras.layers.Conv2D(c_out, k, padding="same", use_bias=False)(inp))
        modes = ["float32"] if kind == "float32" else ["full_int8", "dynamic"]
        for mode in modes:
            converter = tf.lite.TFLiteConverter.from_keras_model(model)
            if mode != "float32":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
            if mode == "full_int8":
                converter.representative_dataset = lambda: (
                    [rng.standard_normal((1, hw, hw, c_in)).astype(np.float32)] for _ in range(8))
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
            interp = interpreter(converter.convert(), num_threads=num_threads)
            detail = interp.get_input_details()[0]
            x = rng.integers(-100, 100, (1, hw, hw, c_in)) if mode == "full_int8" else rng.standard_normal((1, hw, hw, c_in))
            x = x.astype(detail["dtype"])

            def call(interp=interp, index=detail["index"], x=x):
                interp.set_tensor(index, x)
                interp.invoke()

            p50 = interleaved_latency({"peak": call}, 20, 200, seconds, 25)["peak"]["p50_ms"]
            name = f"{hw}x{hw}x{c_in}->{c_out} k{k} {mode}"
            rates[name] = round(2.0 * hw * hw * c_in * c_out * k * k / (p50 / 1e3) / 1e9, 2)
    return {"gflops": max(rates.values()), "shapes": rates}


def keras_call(model, x1: np.ndarray) -> Callable[[], np.ndarray]:
    """One inference of a Keras model on ``x1`` through ``tf.function`` (the baseline path)."""
    import tensorflow as tf

    fn = tf.function(lambda t: model(t, training=False), reduce_retracing=True)
    t = tf.constant(x1, dtype=tf.float32)
    return lambda: fn(t).numpy()


def tflite_call(interp, x1: np.ndarray) -> Callable[[], np.ndarray]:
    """One inference on an allocated LiteRT interpreter: set input, invoke, read output.

    If ``x1`` has a different batch size than the model's input, the input is resized
    (the offline, batched scenario).
    """
    detail = interp.get_input_details()[0]
    if tuple(detail["shape"]) != tuple(x1.shape):
        interp.resize_tensor_input(detail["index"], list(x1.shape))
        interp.allocate_tensors()
    inp = interp.get_input_details()[0]["index"]
    out = interp.get_output_details()[0]["index"]
    x1 = np.ascontiguousarray(x1, dtype=np.float32)

    def call():
        interp.set_tensor(inp, x1)
        interp.invoke()
        return interp.get_tensor(out)

    return call


def size_bytes(path: str | Path) -> int:
    """Size of a file, or the total of the files in a folder."""
    p = Path(path)
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return p.stat().st_size


def gzip_bytes(path: str | Path) -> int:
    """Size after ``gzip -9`` of a file, or of a tar of a folder (what you would ship)."""
    p = Path(path)
    if p.is_dir():
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for f in sorted(p.rglob("*")):
                if f.is_file():
                    info = tar.gettarinfo(str(f), arcname=str(f.relative_to(p)))
                    info.mtime = 0
                    with open(f, "rb") as fh:
                        tar.addfile(info, fh)
        data = buf.getvalue()
    else:
        data = p.read_bytes()
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def to_input(x: np.ndarray, detail: dict) -> np.ndarray:
    """float32 images as a TFLite input tensor wants them (quantized for integer inputs).

    Args:
        x: float32 images.
        detail: The tensor's entry from ``get_input_details()`` (dtype, quantization).
    """
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return np.ascontiguousarray(x, dtype=dtype)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.rint(x / scale + zero), info.min, info.max).astype(dtype)
