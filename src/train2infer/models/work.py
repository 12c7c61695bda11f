"""What a model computes: its kernels, their sparsity, and multiply-adds per layer.

One walk over the kernel layers (:func:`kernels`) serves every sparsity count here; wrapped
layers (TF-MOT's pruning wrapper) are seen through to their inner layer. :func:`layer_macs`
counts every layer that does arithmetic on a functional graph, and :func:`traced_macs`
counts the same from TensorFlow's own op statistics, independently of this code.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import tf_keras as keras

from train2infer.models.rules import ACTIVATION_OPS, activation_name, rule_for

L = keras.layers
KERNEL_OPS = {"Conv2D", "DepthwiseConv2dNative", "MatMul", "Conv2DBackpropInput"}  # TF counts 2 flops per MAC
ELEMENTWISE_OPS = {"AddV2", "Add", "Sub", "Mul", "RealDiv", "Maximum", "Minimum", "AddN"}
__all__ = ["activation_name"]  # re-exported for the reports


def kernels(model: keras.Model) -> Iterator[tuple[L.Layer, L.Layer, np.ndarray]]:
    """``(layer in the model, inner layer, kernel)`` for every layer whose rule names a kernel
    (Conv2D, DepthwiseConv2D, Dense, a SeparableConv2D's pointwise kernel: what TF-MOT prunes);
    a wrapper (TF-MOT's pruning wrapper) is seen through to its inner layer."""
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        rule = rule_for(inner)
        if rule is not None and rule.kernel is not None:
            kernel = rule.kernel(inner)
            yield layer, inner, np.asarray(kernel.numpy() if hasattr(kernel, "numpy") else kernel)


def kernel_sparsity(model: keras.Model) -> dict[str, float]:
    """Fraction of exact zeros in each kernel, by layer name."""
    return {inner.name: float(np.mean(k == 0)) for _, inner, k in kernels(model)}


def overall_sparsity(model: keras.Model) -> float:
    """Zeros over all kernel weights, weighted by size."""
    zeros = total = 0
    for _, _, k in kernels(model):
        zeros += int(np.sum(k == 0))
        total += k.size
    return zeros / total if total else 0.0


def kernel_macs(layer: L.Layer, inner: L.Layer) -> int:
    """Multiply-adds of one kernel layer for one input image (its rule's ``macs``)."""
    return int(rule_for(inner).macs(layer, inner))


def elementwise_ops(layer: L.Layer) -> int | None:
    """Operations of an element-wise layer (merges, ``x + 3``-style ops, swish, Rescaling,
    Normalization) per image (its rule's ``ops`` per output element), or None."""
    rule = rule_for(layer)
    per = rule.ops(layer) if rule is not None and rule.ops is not None else None
    if per is None:
        return None
    return per * int(np.prod(layer.output_shape[1:], dtype=np.int64))


def layer_macs(model: keras.Model) -> list[dict]:
    """Multiply-adds per layer that does arithmetic, for one input image.

    Kernel layers (Conv2D, DepthwiseConv2D, SeparableConv2D, Conv2DTranspose, Dense) count
    their multiply-adds; element-wise layers (Add, Multiply, ... and ``TFOpLambda``
    arithmetic such as hard-swish's ``x + 3``; swish activations, also inside a kernel layer;
    Rescaling, Normalization) count one per operation. BatchNormalization
    (folded into convolutions for inference), activations and pooling are not counted.

    Returns:
        One dict per layer: ``layer``, ``type``, ``kind`` (``kernel`` / ``elementwise``),
        ``macs`` (dense count) and ``nonzero`` (fraction of non-zero kernel weights, so
        ``macs * nonzero`` is the work a sparse kernel would have to do).
    """
    rows = []
    for layer, inner, k in kernels(model):
        fused = ACTIVATION_OPS.get(activation_name(inner), 0) * int(np.prod(layer.output_shape[1:], dtype=np.int64))
        rows.append({"layer": inner.name, "type": type(inner).__name__, "kind": "kernel",
                     "macs": int(kernel_macs(layer, inner)) + fused, "nonzero": float(np.count_nonzero(k) / k.size)})
    for layer in model.layers:
        ops = elementwise_ops(layer)
        if ops is not None:
            rows.append({"layer": layer.name, "type": type(layer).__name__, "kind": "elementwise", "macs": ops,
                         "nonzero": 1.0})
    return rows


def total_macs(rows: list[dict], nonzero: bool = False) -> float:
    """Sum of :func:`layer_macs` rows: dense multiply-adds, or with ``nonzero`` those on
    non-zero weights (the work a sparse kernel would do)."""
    return sum(r["macs"] * (r["nonzero"] if nonzero else 1) for r in rows)


def traced_macs(model: keras.Model) -> dict[str, float]:
    """An independent count: TensorFlow's registered flop statistics of the traced, frozen
    inference graph (batch 1), attributed to layers by op name.

    Convolution and matrix-multiply ops count 2 flops per multiply-add (halved here);
    element-wise ops one per element; other ops (bias adds, BatchNorm, pooling) are left
    out, as :func:`layer_macs` leaves them out.

    Returns:
        ``{layer name: multiply-adds}`` for every layer with counted ops.
    """
    import tensorflow as tf
    from tensorflow.python.framework import ops as tf_ops
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    from tensorflow.python.profiler.internal import flops_registry  # noqa: F401  (registers the statistics)

    from train2infer.models import graph

    spec = tf.TensorSpec([1, *model.input_shape[1:]], model.input.dtype)
    frozen = convert_variables_to_constants_v2(
        tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)).graph
    names = graph.by_length(model.layers)
    found: dict[str, float] = {}
    for op in frozen.get_operations():
        if op.type not in KERNEL_OPS | ELEMENTWISE_OPS:
            continue
        owner = graph.owner(op.name.split("/", 1)[-1], names)  # without the model's scope
        try:
            flops = tf_ops.get_stats_for_node_def(frozen, op.node_def, "flops").value
        except ValueError:  # a shape TensorFlow cannot know statically: no statistic
            flops = None
        if owner is not None and flops:
            found[owner] = found.get(owner, 0) + (flops / 2 if op.type in KERNEL_OPS else flops)
    return found


def summary(model: keras.Model) -> dict:
    """Work and sparsity of a model, as the export manifest records them per source."""
    rows = layer_macs(model)
    return {"macs": int(total_macs(rows)), "macs_nonzero": round(total_macs(rows, nonzero=True)),
            "sparsity": overall_sparsity(model), "params": int(model.count_params())}
