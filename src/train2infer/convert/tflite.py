"""Keras -> TFLite conversion at every precision, and which Keras layers each TFLite op computes."""

from __future__ import annotations

import warnings

import numpy as np
import tensorflow as tf
import tf_keras as keras

from train2infer.core.variants import PRECISIONS
from train2infer.models import graph


def to_tflite(
    model: keras.Model,
    precision: str = "float",
    representative: np.ndarray | None = None,
    int8_io: bool = False,
    sparse: bool = False,
) -> bytes:
    """Convert a Keras model to a TFLite flatbuffer.

    Args:
        model: A float32 tf_keras model (for ``pqat``: one from :func:`quantize_aware`,
            fine-tuned).
        precision: One of :data:`train2infer.core.variants.PRECISIONS`: ``float`` (float32
            weights); ``dynamic`` (dynamic-range: int8 weights for tensors of at least
            1,024 elements, float activations); ``float16`` (float16 weights); ``int8``
            (full integer: int8 weights and activations calibrated on ``representative``);
            ``pqat`` (int8 from the ranges learned in quantization-aware training).
        representative: float32 images for ``int8`` calibration.
        int8_io: For ``int8`` / ``pqat``: int8 input and output tensors instead of float.
        sparse: Store sparse weights in TFLite's sparse format
            (``Optimize.EXPERIMENTAL_SPARSITY``), which XNNPACK's sparse kernels need.

    Returns:
        The ``.tflite`` bytes.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    optimizations = [] if precision == "float" else [tf.lite.Optimize.DEFAULT]
    if sparse:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    converter.optimizations = optimizations
    if precision == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if precision == "int8":
        if representative is None or len(representative) == 0:
            raise ValueError("int8 quantization needs representative images")
        converter.representative_dataset = lambda: ([representative[i : i + 1].astype(np.float32)]
                                                    for i in range(len(representative)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if int8_io and precision in ("int8", "pqat"):
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    with warnings.catch_warnings():  # full-integer conversion warns about legacy input stats we do not use
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
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


def keras_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The computational layers of a model (everything but ``InputLayer``)."""
    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def fusion_table(model: keras.Model, ops: list[dict]) -> dict:
    """Which Keras layers each TFLite op computes.

    The converter names an op's output tensor after the TF ops it fused
    (``cnn/s0c0_relu/Relu;cnn/s0c0_conv/Conv2D``); layer names may themselves hold ``/``
    (``expanded_conv/squeeze_excite/Mul``), so the longest matching name wins, on any
    graph. BatchNormalization leaves no op: it is
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
    names = graph.by_length(layers)
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
                    layer_name = graph.owner(part[len(prefix) :], names)
                    if layer_name and layer_name not in mentioned and layer_name not in seen:
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


