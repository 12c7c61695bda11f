"""Latency and size measurement.

Latency is batch-1, single-stream: a fixed number of untimed warm-up calls, then at least
200 timed calls, each timed on its own with ``time.perf_counter_ns``; reported as
percentiles (p50/p90/p99) plus mean and standard deviation, in milliseconds. The call
timed is the whole inference a user makes: input in, output read back as NumPy.
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
    samples = np.empty(timed_runs, dtype=np.float64)
    for i in range(timed_runs):
        t0 = time.perf_counter_ns()
        call()
        samples[i] = time.perf_counter_ns() - t0
    ms = samples / 1e6
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "mean_ms": float(ms.mean()),
        "std_ms": float(ms.std()),
        "runs": int(timed_runs),
    }


def keras_call(model, x1: np.ndarray) -> Callable[[], np.ndarray]:
    """A batch-1 inference of a Keras model through ``tf.function`` (the baseline path)."""
    import tensorflow as tf

    fn = tf.function(lambda t: model(t, training=False), reduce_retracing=True)
    t = tf.constant(x1, dtype=tf.float32)
    return lambda: fn(t).numpy()


def tflite_call(interp, x1: np.ndarray) -> Callable[[], np.ndarray]:
    """A batch-1 inference on an allocated LiteRT interpreter: set input, invoke, read output."""
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
