"""Keras -> TFLite / SavedModel conversion, and what the converter fused.

TFLite models are run with LiteRT's ``ai_edge_litert.interpreter.Interpreter``
(``tf.lite.Interpreter`` is deprecated).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras as keras
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from train2infer import Train2InferError
from train2infer.benchmark import to_input

QUANTIZATIONS = ("float", "dynamic", "float16", "int8", "qat")
# variant-name suffix of each quantization (dynamic-range int8 keeps the pipeline's "int8");
# "qat" converts a quantization-aware-trained model (the pqat option of the convert stage)
SUFFIX = {"float": "float", "dynamic": "int8", "float16": "float16", "int8": "fullint8", "qat": "pqat"}


def to_tflite(
    model: keras.Model,
    quantization: str = "float",
    representative: np.ndarray | None = None,
    int8_io: bool = False,
    sparse: bool = False,
) -> bytes:
    """Convert a Keras model to a TFLite flatbuffer.

    Args:
        model: A float32 tf_keras model (for ``qat``: one from :func:`quantize_aware`).
        quantization: ``float`` (float32 weights); ``dynamic`` (dynamic-range: int8
            weights for tensors of at least 1,024 elements, float activations);
            ``float16`` (float16 weights); ``int8`` (full integer: int8 weights and
            activations calibrated on ``representative``); ``qat`` (int8 from the ranges
            learned in quantization-aware training).
        representative: float32 images for ``int8`` calibration.
        int8_io: For ``int8`` / ``qat``: int8 input and output tensors instead of float.
        sparse: Store sparse weights in TFLite's sparse format
            (``Optimize.EXPERIMENTAL_SPARSITY``), which XNNPACK's sparse kernels need.

    Returns:
        The ``.tflite`` bytes.
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {quantization!r}; known: {', '.join(QUANTIZATIONS)}")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    optimizations = [] if quantization == "float" else [tf.lite.Optimize.DEFAULT]
    if sparse:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    converter.optimizations = optimizations
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantization == "int8":
        if representative is None or len(representative) == 0:
            raise ValueError("int8 quantization needs representative images")
        converter.representative_dataset = lambda: ([representative[i : i + 1].astype(np.float32)]
                                                    for i in range(len(representative)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if int8_io and quantization in ("int8", "qat"):
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def quantize_aware(model: keras.Model, preserve_sparsity: bool = True) -> keras.Model:
    """Wrap ``model`` for quantization-aware training (TF-MOT), keeping its zeros if asked.

    With ``preserve_sparsity`` the scheme is TF-MOT's
    ``Default8BitPrunePreserveQuantizeScheme`` (PQAT): weights that are zero stay zero
    through fine-tuning, so a pruned model keeps its sparsity in int8.
    """
    import tensorflow_model_optimization as tfmot

    annotated = tfmot.quantization.keras.quantize_annotate_model(model)
    if preserve_sparsity:
        scheme = tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
        return tfmot.quantization.keras.quantize_apply(annotated, scheme)
    return tfmot.quantization.keras.quantize_apply(annotated)


def export_saved_model(model: keras.Model, path: str | Path) -> None:
    """Export an inference SavedModel (``serving_default`` signature) to ``path``."""
    tf.saved_model.save(model, str(path))


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


def tflite_ops(model: bytes | str | Path) -> list[dict]:
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


def keras_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The computational layers of a model (everything but ``InputLayer``)."""
    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def fusion_table(model: keras.Model, ops: list[dict]) -> dict:
    """Which Keras layers each TFLite op computes.

    The converter names an op's output tensor after the TF ops it fused
    (``cnn/s0c0_relu/Relu;cnn/s0c0_conv/Conv2D``). BatchNormalization leaves no op: it is
    folded into the preceding convolution's weights and bias, so a BN layer is credited to
    the op computing the conv it directly follows. Dropout is the identity at inference.

    Args:
        model: The Keras model that was converted.
        ops: :func:`tflite_ops` of the converted model.

    Returns:
        ``{"ops": [{"op", "index", "keras_layers"}], "unmapped": [...]}`` where
        ``unmapped`` lists layers found in no op (with the reason when known).
    """
    layers = keras_layers(model)
    names = {layer.name for layer in layers}
    prefix = model.name + "/"
    follows = {}  # BN name -> name of the layer feeding it
    for layer in layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            inbound = layer._inbound_nodes[0].inbound_layers
            inbound = inbound[0] if isinstance(inbound, (list, tuple)) else inbound
            follows[layer.name] = inbound.name
    rows, seen = [], set()
    for op in ops:
        mentioned = []
        for tensor_name in op["outputs"] + op["weights"]:
            for part in tensor_name.split(";"):
                if part.startswith(prefix):
                    layer_name = part[len(prefix) :].split("/")[0]
                    if layer_name in names and layer_name not in mentioned and layer_name not in seen:
                        mentioned.append(layer_name)
        for bn, src in follows.items():
            if src in mentioned and bn not in mentioned and bn not in seen:
                mentioned.insert(mentioned.index(src) + 1, bn)
        order = {layer.name: i for i, layer in enumerate(layers)}
        mentioned.sort(key=order.get)
        seen.update(mentioned)
        rows.append({"index": op["index"], "op": op["op"], "keras_layers": mentioned})
    unmapped = []
    for layer in layers:
        if layer.name in seen:
            continue
        reason = "identity at inference" if isinstance(layer, keras.layers.Dropout) else "not found in op names"
        unmapped.append({"layer": layer.name, "reason": reason})
    return {"ops": rows, "unmapped": unmapped}


def run_tflite(model: bytes | str | Path, x: np.ndarray, num_threads: int = 1) -> np.ndarray:
    """Float outputs of a TFLite model for float32 inputs, one example at a time (batch 1).

    A model with int8 input / output tensors gets its inputs quantized and its outputs
    dequantized with the tensors' own scale and zero point.
    """
    interp = interpreter(model, num_threads=num_threads)
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    results = []
    for i in range(len(x)):
        interp.set_tensor(inp["index"], to_input(x[i : i + 1], inp))
        interp.invoke()
        results.append(from_output(interp.get_tensor(out["index"])[0], out))
    return np.stack(results)


def from_output(y: np.ndarray, detail: dict) -> np.ndarray:
    """An output tensor as float32 (dequantized for integer outputs)."""
    if np.dtype(detail["dtype"]).kind == "f":
        return y.astype(np.float32).copy()
    scale, zero = detail["quantization"]
    return ((y.astype(np.float32) - zero) * scale).astype(np.float32)


def tflite_sparsity(model: bytes | str | Path) -> float:
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


def graph_optimization(saved_model_dir: str | Path) -> dict:
    """The SavedModel's inference graph before and after TF's graph optimizer (Grappler).

    The ``serving_default`` function is frozen (variables to constants), then run through
    Grappler with the passes TF applies before executing a graph: constant folding,
    arithmetic simplification, layout and remapping (which fuses ``Conv2D + BiasAdd +
    Relu`` into one ``_FusedConv2D`` and ``MatMul + BiasAdd + Relu`` into
    ``_FusedMatMul``), on the CPU.

    Returns:
        ``nodes_before``, ``nodes_after``, and ``ops_before`` / ``ops_after`` (op type ->
        count, ``Const``/``Identity``/``NoOp``/placeholders left out).
    """
    from tensorflow.core.protobuf import config_pb2, meta_graph_pb2, rewriter_config_pb2
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    from tensorflow.python.grappler import tf_optimizer
    from tensorflow.python.training import saver

    loaded = tf.saved_model.load(str(saved_model_dir))
    fn = loaded.signatures["serving_default"]
    frozen = convert_variables_to_constants_v2(fn)
    graph_def = frozen.graph.as_graph_def()
    for node in graph_def.node:  # the remapper fuses only nodes placed on a device it knows
        node.device = "/device:CPU:0"

    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(graph_def, name="")
        meta = saver.export_meta_graph(graph_def=graph.as_graph_def(add_shapes=True), graph=graph)
    fetch = meta_graph_pb2.CollectionDef()
    for t in frozen.outputs:
        fetch.node_list.value.append(t.name)
    meta.collection_def["train_op"].CopyFrom(fetch)
    rewriter = rewriter_config_pb2.RewriterConfig()
    rewriter.optimizers.extend(["constfold", "arithmetic", "dependency", "layout", "remap"])
    rewriter.meta_optimizer_iterations = rewriter_config_pb2.RewriterConfig.ONE
    config = config_pb2.ConfigProto()
    config.graph_options.rewrite_options.CopyFrom(rewriter)
    optimized = tf_optimizer.OptimizeGraph(config, meta)

    def ops(gd):
        skip = {"Const", "Identity", "NoOp", "Placeholder", "_Arg", "_Retval"}
        counts: dict[str, int] = {}
        for node in gd.node:
            if node.op not in skip:
                counts[node.op] = counts.get(node.op, 0) + 1
        return dict(sorted(counts.items()))

    before, after = ops(graph_def), ops(optimized)
    return {"nodes_before": sum(before.values()), "nodes_after": sum(after.values()),
            "ops_before": before, "ops_after": after}


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
    from collections import Counter

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
