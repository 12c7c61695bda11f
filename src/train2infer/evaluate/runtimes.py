"""How each runtime loads and runs a variant: one runner per format, for timing and for accuracy.

``runner(format, path, threads, precision)`` returns ``make(x) -> call``: ``call()`` is one
whole inference on the float32 batch ``x`` (input set, run, output read back as NumPy), what
the measurement worker times. ``predict`` runs a whole test split for accuracy with the same
runtime, so accuracy is computed per runtime, never copied from another variant. Each runtime
is imported only when its variant is run: a LiteRT or OpenVINO process never loads TensorFlow.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def rss() -> tuple[int, int]:
    """Current and peak resident set size of this process in bytes (Linux /proc)."""
    cur = peak = 0
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) * 1024
    return cur, peak


def set_tf_threads(num_threads: int) -> None:
    """Fix TensorFlow's thread pools (call before TensorFlow runs any op)."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(num_threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def keras_runner(path: str) -> Callable:
    """The baseline: the Keras model called through ``tf.function``."""
    import tensorflow as tf

    from train2infer.models.io import load_model

    model = load_model(path)
    fn = tf.function(lambda t: model(t, training=False), reduce_retracing=True)

    def make(x):
        t = tf.constant(x, dtype=tf.float32)
        return lambda: fn(t).numpy()

    return make


def saved_model_runner(path: str) -> Callable:
    """A SavedModel loaded with ``tf.saved_model.load``, called through its serving signature
    (what TF Serving runs)."""
    import tensorflow as tf

    fn = tf.saved_model.load(path).signatures["serving_default"]
    (name,) = fn.structured_input_signature[1]  # the one input's keyword
    (out,) = fn.structured_outputs

    def make(x):
        t = tf.constant(x, dtype=tf.float32)
        return lambda: fn(**{name: t})[out].numpy()

    return make


PRECISION_HINT = {"float": "f32", "bf16": "bf16"}  # variant precision -> OpenVINO's INFERENCE_PRECISION_HINT


def openvino_request(path: str, shape, precision: str, threads: int = 0):
    """An OpenVINO infer request for the float ``.tflite`` at ``path``, read directly, with the
    input shape fixed, the inference precision set explicitly (OpenVINO's own default on a
    BF16-capable CPU is bf16) and ``threads`` threads (0: OpenVINO's choice)."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(path)
    model.reshape(list(shape))
    config = {"INFERENCE_PRECISION_HINT": PRECISION_HINT[precision], "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    return core.compile_model(model, "CPU", config).create_infer_request()


def openvino_precisions() -> list[str]:
    """The precisions OpenVINO computes in on this CPU: ``float`` always, ``bf16`` where it
    reports BF16 among the CPU's optimization capabilities."""
    import openvino as ov

    return ["float"] + (["bf16"] if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES") else [])


def openvino_runner(path: str, threads: int, precision: str) -> Callable:
    """OpenVINO on the float ``.tflite``, compiled for ``x``'s batch (see :func:`openvino_request`)."""

    def make(x):
        request = openvino_request(path, x.shape, precision, threads)
        xc = np.ascontiguousarray(x, dtype=np.float32)

        def call():
            request.infer({0: xc})
            return request.get_output_tensor(0).data.copy()

        return call

    return make


def tflite_runner(path: str, threads: int) -> Callable:
    """LiteRT through :func:`train2infer.litert.runner`, recording the resident memory growth of
    creating the interpreter (``load_rss_bytes``) and of allocating its tensors."""
    from train2infer import litert

    def make(x):
        rss0 = rss()[0]
        interp = litert.Interpreter(model_path=path, num_threads=threads)
        rss1 = rss()[0]
        interp.allocate_tensors()
        call = litert.runner(interp, x)  # resizes (and re-allocates) for a batch; int8 inputs quantized here
        call.interp = interp
        call.load_rss_bytes = rss1 - rss0  # model file and interpreter
        call.allocate_rss_bytes = rss()[0] - rss1  # tensor arena (and the delegate's packed weights)
        return call

    return make


def load_runtime(fmt: str, threads: int) -> None:
    """Import the runtime of format ``fmt`` (TensorFlow with its thread pools set), and nothing else."""
    if fmt in ("keras", "saved_model"):
        set_tf_threads(threads)
    elif fmt == "openvino":
        import openvino  # noqa: F401
    else:
        import ai_edge_litert.interpreter  # noqa: F401


def runner(fmt: str, path: str, threads: int, precision: str = "float") -> Callable:
    """``make(x) -> call`` for a variant of format ``fmt`` (see the module docstring).

    In a measurement process call :func:`load_runtime` first: TensorFlow's thread pools can
    only be sized before it runs anything.
    """
    if fmt in ("keras", "saved_model"):  # TensorFlow's threads are set by load_runtime, before it starts
        return keras_runner(path) if fmt == "keras" else saved_model_runner(path)
    if fmt == "openvino":
        return openvino_runner(path, threads, precision)
    if fmt == "tflite":
        return tflite_runner(path, threads)
    raise ValueError(f"unknown format {fmt!r}")


def predict(variant, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Float logits of ``variant`` (a :class:`~train2infer.core.variants.Variant`) on every image of
    ``x``, computed by its own runtime (TFLite and OpenVINO one image at a time, as timed)."""
    from train2infer import litert

    if variant.format == "tflite":
        return litert.predict(variant.path, x)
    if variant.format == "keras":
        from train2infer.models.io import load_model

        return load_model(variant.path).predict(x, batch_size=batch_size, verbose=0)
    if variant.format == "saved_model":
        make = saved_model_runner(variant.path)
        return np.concatenate([make(x[i : i + batch_size])() for i in range(0, len(x), batch_size)])
    request = openvino_request(variant.path, (1, *x.shape[1:]), variant.precision)
    out = []
    for i in range(len(x)):
        request.infer({0: np.ascontiguousarray(x[i : i + 1], dtype=np.float32)})
        out.append(request.get_output_tensor(0).data[0].copy())
    return np.stack(out).astype(np.float32)
