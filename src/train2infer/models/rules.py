"""What each kind of layer means to graph surgery, in one registry (Torch-Pruning style).

Every piece of code here that needs to know a layer kind asks :func:`rule_for` — channel coupling
and weight slicing (:mod:`train2infer.models.groups`), filter norms (:mod:`train2infer.shrink.channels`),
multiply-adds (:mod:`train2infer.models.work`) and BatchNorm folding (:mod:`train2infer.models.graph`).
A layer kind without a rule is not understood: shrink pins the channels it touches (leaves them
whole) and the MAC count skips it. :func:`register` adds a rule for a user's own layer class so it
can be shrunk instead of pinned; ``docs/pruning.md`` has a worked example.

A rule's ``channels`` says how a layer's output channels relate to its input channels:

* ``reader``: mixes input channels into new output channels (Conv2D, Dense, SeparableConv2D,
  Conv2DTranspose). Ends a channel class; its output filters start new ones.
* ``per_channel``: output channel ``c`` depends on input channel ``c`` only (BatchNormalization,
  activations, pooling, padding, dropout, reshapes that keep the last axis).
* ``merge``: element-wise over inputs of the same width (Add, Multiply, ``x * y`` ops); an input
  of width 1 broadcasts and is not tied.
* ``depthwise``: input channel ``c`` makes outputs ``c*m .. c*m+m-1`` (DepthwiseConv2D).
* ``concat``: output channels are slices of the inputs' (Concatenate on the last axis).
* ``flatten``: output ``p * C + c`` is channel ``c`` at position ``p`` (Flatten).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np
import tf_keras as keras
from tf_keras.src.layers.core.tf_op_layer import TFOpLambda  # not exported by tf_keras.layers

L = keras.layers
CHANNELS = ("reader", "per_channel", "merge", "depthwise", "concat", "flatten")
CROSS_CHANNEL_ACTIVATIONS = {"softmax", "log_softmax"}
# Extra operations per output element of some activations: swish is x * sigmoid(beta * x), two
# multiplies in TensorFlow (also when it is a kernel layer's ``activation``).
ACTIVATION_OPS = {"swish": 2, "silu": 2}
# TF ops (``x + 3``, ``x * y``, ``tf.nn.relu6(x)``) that work element by element; the arithmetic
# ones count one operation per output element.
ARITHMETIC_OPS = {"__operators__.add", "__operators__.sub", "__operators__.truediv", "math.add", "math.subtract",
                  "math.multiply", "math.truediv", "math.divide", "math.maximum", "math.minimum"}
ELEMENTWISE_OPS = ARITHMETIC_OPS | {
    "__operators__.neg", "__operators__.pow", "math.negative", "math.abs", "math.square", "math.sqrt", "math.exp",
    "math.pow", "math.sigmoid", "math.tanh", "nn.relu", "nn.relu6", "nn.sigmoid", "nn.swish", "nn.silu", "nn.gelu",
    "nn.elu", "nn.selu", "nn.leaky_relu", "clip_by_value"}

Slicer = Callable[[L.Layer, np.ndarray, np.ndarray], tuple[dict, list]]


@dataclass(frozen=True)
class Rule:
    """What one layer class means to shrink, fold and count.

    Attributes:
        channels: One of :data:`CHANNELS` (see the module docstring).
        applies: Whether a given layer of the class obeys the rule (a softmax Activation does
            not keep channels apart); a layer that does not is pinned, with ``why(layer)`` as reason.
        why: The reason a layer the rule does not apply to is pinned.
        slice: ``(layer, kept input channels, kept output channels) -> (config changes, weights)``;
            None for a layer without weights. Indices are into the layer's own channels.
        filters: A reader's output filters as an array whose last axis is the output channel,
            for filter norms.
        macs: Multiply-adds of one image for a kernel layer ``(layer in the model, inner layer)``.
        ops: Operations per output element of an element-wise layer (``ops(layer)``; None: none).
        kernel: The kernel TF-MOT prunes and sparsity is counted on.
        folds_bn: A following BatchNormalization folds into this layer's kernel and bias.
    """

    channels: str
    applies: Callable[[L.Layer], bool] = lambda layer: True
    why: Callable[[L.Layer], str] = lambda layer: f"{type(layer).__name__} is not known to keep channels apart"
    slice: Slicer | None = None
    filters: Callable[[L.Layer], np.ndarray] | None = None
    macs: Callable[[L.Layer, L.Layer], int] | None = None
    ops: Callable[[L.Layer], int | None] | None = None
    kernel: Callable[[L.Layer], object] | None = None
    folds_bn: bool = False


RULES: dict[type, Rule] = {}


def register(layer_class: type, rule: Rule | None = None, **fields) -> Rule:
    """Add (or replace) the rule of ``layer_class``; it also covers subclasses without their own.

    Args:
        layer_class: A tf_keras layer class (a user's custom layer included).
        rule: The rule, or None to build one from ``fields`` (the :class:`Rule` attributes).
        **fields: With ``rule``: the attributes to change in it.

    Returns:
        The registered rule.

    Example:
        ``register(Scale, channels="per_channel", slice=lambda layer, i, o: ({}, [layer.get_weights()[0][o]]))``
    """
    rule = Rule(**fields) if rule is None else dataclasses.replace(rule, **fields)
    if rule.channels not in CHANNELS:
        raise ValueError(f"unknown channels rule {rule.channels!r}; known: {', '.join(CHANNELS)}")
    RULES[layer_class] = rule
    return rule


def rule_for(layer: L.Layer) -> Rule | None:
    """The rule of the nearest class of ``layer`` along its MRO, or None (not understood)."""
    return next((RULES[c] for c in type(layer).__mro__ if c in RULES), None)


def channels_of(layer: L.Layer) -> str | None:
    """The ``channels`` of the rule that applies to ``layer``, or None."""
    rule = rule_for(layer)
    return rule.channels if rule is not None and rule.applies(layer) else None


def is_reader(layer: L.Layer) -> bool:
    """A layer that reads channels in and creates new ones (Conv2D, Dense, SeparableConv2D...)."""
    rule = rule_for(layer)
    return rule is not None and rule.channels == "reader"


# --------------------------------------------------------------------------- the built-in rules


def _spatial(layer) -> int:
    return int(np.prod(layer.output_shape[1:-1], dtype=np.int64))


def _bias(layer, o) -> list:
    return [layer.get_weights()[-1][o]] if getattr(layer, "use_bias", False) else []


def _last_axis(layer) -> bool:
    axis = layer.axis[0] if isinstance(layer.axis, (list, tuple)) else layer.axis
    return axis in (-1, len(layer.output_shape) - 1)


def _per_channel_weights(layer, i, o) -> tuple[dict, list]:
    """Weights whose last axis is the layer's width (BatchNorm statistics, PReLU slopes), sliced."""
    full = layer.output_shape[-1]
    return {}, [a[..., o] if np.ndim(a) and a.shape[-1] == full else a for a in layer.get_weights()]


def _conv_slice(layer, i, o):
    return {"filters": len(o)}, [layer.get_weights()[0][:, :, i][..., o]] + _bias(layer, o)


def _conv_macs(layer, inner) -> int:
    kh, kw, c_in_per_group, c_out = inner.kernel.shape
    return _spatial(layer) * c_out * kh * kw * c_in_per_group


def _transpose_slice(layer, i, o):  # kernel (kh, kw, out, in)
    return {"filters": len(o)}, [layer.get_weights()[0][:, :, o][..., i]] + _bias(layer, o)


def _transpose_macs(layer, inner) -> int:  # every input pixel scatters a kh x kw x c_out patch
    kh, kw, c_out, c_in = inner.kernel.shape
    _, ih, iw, _ = layer.input_shape
    return ih * iw * c_in * kh * kw * c_out


def _separable_slice(layer, i, o):
    w = layer.get_weights()
    m = w[0].shape[-1]
    rows = (i[:, None] * m + np.arange(m)).ravel()
    return {"filters": len(o)}, [w[0][:, :, i, :], w[1][:, :, rows][..., o]] + _bias(layer, o)


def _separable_macs(layer, inner) -> int:
    kh, kw, c_in, mult = inner.depthwise_kernel.shape
    return _spatial(layer) * c_in * mult * (kh * kw + inner.pointwise_kernel.shape[-1])


def _depthwise_slice(layer, i, o):
    w = layer.get_weights()
    kernel = w[0][:, :, i, :]
    return {}, [kernel] + ([w[1].reshape(-1, kernel.shape[-1])[i].ravel()] if len(w) > 1 else [])


def _depthwise_macs(layer, inner) -> int:
    kh, kw = inner.depthwise_kernel.shape[:2]
    return _spatial(layer) * layer.output_shape[-1] * kh * kw


def _dense_slice(layer, i, o):
    return {"units": len(o)}, [layer.get_weights()[0][i][:, o]] + _bias(layer, o)


def _dense_macs(layer, inner) -> int:
    return _spatial(layer) * inner.kernel.shape[0] * inner.kernel.shape[1]


def _elementwise_op(layer) -> bool:
    """A TF op (``x + 3``, ``x * y``) that works element by element, with scalar constants only
    (``x * per_channel_array`` would need its constant sliced too)."""
    import tensorflow as tf

    if layer.get_config()["function"] not in ELEMENTWISE_OPS:
        return False
    node = layer.inbound_nodes[0]
    constants = [a for a in tf.nest.flatten((node.call_args, node.call_kwargs)) if not tf.is_tensor(a)
                 and type(a).__name__ != "KerasTensor"]
    return all(np.ndim(a) == 0 for a in constants if a is not None)


def activation_name(layer: L.Layer) -> str | None:
    """The name of a layer's activation function (``activation`` config), if it has one."""
    act = layer.get_config().get("activation")
    return act if isinstance(act, str) else None


def _inputs(layer) -> int:
    return len(layer.input_shape) if isinstance(layer.input_shape, list) else 1


def _builtin() -> None:
    conv = dict(channels="reader", applies=lambda layer: getattr(layer, "groups", 1) == 1,
                why=lambda layer: f"grouped convolution ({layer.groups} groups)")
    register(L.Conv2D, **conv, slice=_conv_slice, filters=lambda layer: layer.get_weights()[0], macs=_conv_macs,
             kernel=lambda layer: layer.kernel, folds_bn=True)
    register(L.Conv2DTranspose, **conv, slice=_transpose_slice, macs=_transpose_macs,
             filters=lambda layer: np.moveaxis(layer.get_weights()[0], 2, -1), kernel=lambda layer: layer.kernel)
    register(L.SeparableConv2D, **conv, slice=_separable_slice, filters=lambda layer: layer.get_weights()[1],
             macs=_separable_macs, kernel=lambda layer: layer.pointwise_kernel)
    register(L.Dense, channels="reader", slice=_dense_slice,
             filters=lambda layer: layer.get_weights()[0], macs=_dense_macs, kernel=lambda layer: layer.kernel)
    register(L.DepthwiseConv2D, channels="depthwise", slice=_depthwise_slice, macs=_depthwise_macs,
             kernel=lambda layer: layer.depthwise_kernel, folds_bn=True)
    for kind in (L.ReLU, L.PReLU, L.LeakyReLU, L.ELU, L.ThresholdedReLU, L.MaxPooling2D, L.AveragePooling2D,
                 L.GlobalAveragePooling2D, L.GlobalMaxPooling2D, L.Dropout, L.SpatialDropout2D, L.GaussianNoise,
                 L.GaussianDropout, L.AlphaDropout, L.ZeroPadding2D, L.Cropping2D, L.UpSampling2D,
                 L.ActivityRegularization):
        register(kind, channels="per_channel", slice=_per_channel_weights if kind is L.PReLU else None)
    register(L.BatchNormalization, channels="per_channel", applies=_last_axis, slice=_per_channel_weights)
    register(L.Activation, channels="per_channel",
             applies=lambda layer: activation_name(layer) not in CROSS_CHANNEL_ACTIVATIONS,
             ops=lambda layer: ACTIVATION_OPS.get(activation_name(layer)))
    register(L.Rescaling, channels="per_channel", ops=lambda layer: 2,  # x * scale + offset
             applies=lambda layer: np.ndim(layer.scale) == 0 and np.ndim(layer.offset) == 0)
    register(L.Normalization, channels="per_channel", slice=_per_channel_weights, ops=lambda layer: 2,  # (x-m)/s
             applies=lambda layer: layer.axis in ((-1,), (len(layer.output_shape) - 1,)) and layer.input_mean is None)
    register(L.Reshape, channels="per_channel",  # channels innermost: same last axis = same channel, new place
             slice=lambda layer, i, o: ({"target_shape": (*layer.target_shape[:-1], len(o))}, layer.get_weights()))
    for kind, per in ((L.Add, lambda n: n - 1), (L.Subtract, lambda n: 1), (L.Multiply, lambda n: n - 1),
                      (L.Maximum, lambda n: n - 1), (L.Minimum, lambda n: n - 1), (L.Average, lambda n: n)):
        register(kind, channels="merge", ops=lambda layer, per=per: per(_inputs(layer)))
    register(TFOpLambda, channels="merge", applies=_elementwise_op,
             ops=lambda layer: 1 if layer.get_config().get("function") in ARITHMETIC_OPS else None)
    register(L.Concatenate, channels="concat", applies=_last_axis)
    register(L.Flatten, channels="flatten")


_builtin()
