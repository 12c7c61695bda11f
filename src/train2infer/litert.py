"""LiteRT helpers, free of TensorFlow: load, run, and read a TFLite model.

TFLite models are run with LiteRT's ``ai_edge_litert.interpreter.Interpreter``
(``tf.lite.Interpreter`` is deprecated). A process that imports only this module has the
footprint of a real deployment, which is why the measurement worker uses it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from train2infer import Train2InferError


def interpreter(model: bytes | str | Path, num_threads: int = 1, delegates: bool = True) -> Interpreter:
    """A LiteRT interpreter with tensors allocated.

    Args:
        model: ``.tflite`` bytes or a path to a ``.tflite`` file.
        num_threads: CPU threads for the kernels (and the XNNPACK delegate).
        delegates: Apply the default XNNPACK delegate (the fast path); without it every
            op stays visible and every constant tensor readable, for inspection.

    Raises:
        Train2InferError: If the file is missing or not a valid TFLite model.
    """
    kwargs = {"num_threads": num_threads}
    if not delegates:
        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    if isinstance(model, (bytes, bytearray)):
        kwargs["model_content"] = bytes(model)
        what = "in-memory model"
    else:
        p = Path(model)
        if not p.is_file():
            raise Train2InferError(f"TFLite model not found: {p}")
        kwargs["model_path"] = str(p)
        what = str(p)
    try:
        interp = Interpreter(**kwargs)
        interp.allocate_tensors()
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise Train2InferError(f"not a valid TFLite model: {what} ({first})") from None
    return interp


def runner(interp: Interpreter, x: np.ndarray) -> Callable[[], np.ndarray]:
    """One inference on an interpreter: set input, invoke, read the (raw) output.

    The one way every part of the project runs a TFLite model (the measurement worker, the
    accuracy pass, the tests). ``x`` is float32; a model with integer input gets it
    quantized here, once, outside the timed call. If ``x`` has another batch size than
    the model's input, the input is resized (the offline, batched scenario) and the tensors
    re-allocated; otherwise the interpreter must have them allocated already (as
    :func:`interpreter` does).
    """
    detail = interp.get_input_details()[0]
    if tuple(detail["shape"]) != tuple(x.shape):
        interp.resize_tensor_input(detail["index"], list(x.shape))
        interp.allocate_tensors()
        detail = interp.get_input_details()[0]
    inp, out = detail["index"], interp.get_output_details()[0]["index"]
    xq = to_input(x, detail)

    def call():
        interp.set_tensor(inp, xq)
        interp.invoke()
        return interp.get_tensor(out)

    return call


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


def from_output(y: np.ndarray, detail: dict) -> np.ndarray:
    """An output tensor as float32 (dequantized for integer outputs)."""
    if np.dtype(detail["dtype"]).kind == "f":
        return y.astype(np.float32).copy()
    scale, zero = detail["quantization"]
    return ((y.astype(np.float32) - zero) * scale).astype(np.float32)


def predict(model: bytes | str | Path, x: np.ndarray, num_threads: int = 1) -> np.ndarray:
    """Float outputs of a TFLite model for float32 inputs, one example at a time (batch 1).

    A model with int8 input / output tensors gets its inputs quantized and its outputs
    dequantized with the tensors' own scale and zero point.
    """
    interp = interpreter(model, num_threads=num_threads)
    out = interp.get_output_details()[0]
    results = []
    for i in range(len(x)):
        results.append(from_output(runner(interp, x[i : i + 1])()[0], out))
    return np.stack(results)


def ops(model: bytes | str | Path) -> list[dict]:
    """The operators of a TFLite model, in execution order.

    Returns:
        One dict per op: ``index``, ``op`` (e.g. ``CONV_2D``), ``outputs`` (tensor names)
        and ``weights`` (names of constant inputs).
    """
    interp = interpreter(model, delegates=False)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    graph_inputs = {d["index"] for d in interp.get_input_details()}
    produced = set()
    ops = []
    for op in interp._get_ops_details():  # the public API has no op list
        if op["op_name"] == "DELEGATE":
            continue
        produced.update(int(i) for i in op["outputs"])
        ops.append(op)
    result = []
    for op in ops:
        weights = [
            tensors[int(i)]["name"]
            for i in op["inputs"]
            if int(i) >= 0 and int(i) not in produced and int(i) not in graph_inputs
        ]
        result.append(
            {
                "index": int(op["index"]),
                "op": op["op_name"],
                "outputs": [tensors[int(i)]["name"] for i in op["outputs"]],
                "weights": weights,
            }
        )
    return result


def sparsity(model: bytes | str | Path) -> float:
    """Fraction of zeros over the weight tensors of CONV_2D, DEPTHWISE_CONV_2D and
    FULLY_CONNECTED ops, read from the TFLite model itself.

    Where a DEQUANTIZE op feeds the weights, its quantized input is read instead
    (zero stays zero under symmetric int8 quantization); where a DENSIFY op does (TFLite's
    sparse format), the zeros are the dense size minus the non-zero stored values.
    """
    interp = interpreter(model, delegates=False)
    ops = interp._get_ops_details()
    producer = {int(i): op for op in ops for i in op["outputs"]}
    zeros = total = 0
    for op in ops:
        if op["op_name"] not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        w_index = int(op["inputs"][1])
        src = producer.get(w_index)
        if src is not None and src["op_name"] == "DEQUANTIZE":
            w_index = int(src["inputs"][0])
        src = producer.get(w_index)
        if src is not None and src["op_name"] == "DENSIFY":  # sparse format: only the kept values are stored
            size = int(np.prod(interp.get_tensor_details()[w_index]["shape"]))
            stored = interp.get_tensor(int(src["inputs"][0]))
            zeros += size - int(np.count_nonzero(stored))
            total += size
            continue
        w = interp.get_tensor(w_index)
        zeros += int(np.sum(w == 0))
        total += w.size
    return zeros / total if total else 0.0


def delegation(model: bytes | str | Path, num_threads: int = 1) -> dict:
    """What the default XNNPACK delegate took over, read from the delegated interpreter.

    After delegation each ``DELEGATE`` node consumes the tensors entering the subgraph it
    replaced and produces the ones leaving it; an op whose outputs feed a ``DELEGATE`` node
    (or leave the model without passing one) stayed with TFLite's own kernels. XNNPACK
    asks for sparse inference (``XNN_FLAG_HINT_SPARSE_INFERENCE``) exactly when it took a
    ``DENSIFY`` op, i.e. when the sparse weights themselves (the ``DENSIFY`` inputs) enter
    a ``DELEGATE`` node; whether its NCHW sparse rewrite then fired is not visible through
    the Python API and shows in the latency instead.

    Returns:
        ``ops`` (op types of the model, by count), ``delegate_nodes``, ``not_delegated``
        (op types left to TFLite's kernels, by count) and ``sparse_weights_taken``.
    """
    interp = interpreter(model, num_threads=num_threads)
    nodes = interp._get_ops_details()
    delegates = [n for n in nodes if n["op_name"] == "DELEGATE"]
    ops = [n for n in nodes if n["op_name"] != "DELEGATE"]
    d_in = {int(t) for n in delegates for t in n["inputs"]}
    d_out = {int(t) for n in delegates for t in n["outputs"]}
    leaving = {int(d["index"]) for d in interp.get_output_details()} - d_out
    outside, consumed = [], set()
    for op in reversed(ops):
        outs = {int(t) for t in op["outputs"]}
        if not delegates or outs & (d_in | leaving | consumed):
            outside.append(op)
            consumed |= {int(t) for t in op["inputs"] if int(t) >= 0} - d_out
    densify = [op for op in ops if op["op_name"] == "DENSIFY"]
    return {
        "ops": dict(Counter(op["op_name"] for op in ops)),
        "delegate_nodes": len(delegates),
        "not_delegated": dict(Counter(op["op_name"] for op in reversed(outside))),
        "sparse_weights_taken": bool(densify) and all(int(op["inputs"][0]) in d_in for op in densify),
    }


def activation_bytes(interp) -> int:
    """Sum of all non-constant tensors: an upper bound of the interpreter's arena, which
    reuses memory between tensors whose lifetimes do not overlap."""
    live = {int(i) for op in interp._get_ops_details() if op["op_name"] != "DELEGATE" for i in op["outputs"]}
    live |= {d["index"] for d in interp.get_input_details()}
    return int(sum(np.prod(t["shape"]) * np.dtype(t["dtype"]).itemsize
                   for t in interp.get_tensor_details() if t["index"] in live))


