"""Keras -> TFLite conversion at every precision, and which Keras layers each TFLite op computes."""

from __future__ import annotations

import tf_keras as keras

from train2infer.models import graph
from train2infer.models.io import to_tflite  # noqa: F401  (the one converter set-up; used here and by evaluate)


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


