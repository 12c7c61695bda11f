"""Channel dependency groups of any functional tf_keras model, and the model rebuilt without some.

Removing output channel ``j`` of a convolution removes channel ``j`` of every tensor it flows
into until a layer that mixes channels reads it. :func:`dependencies` finds these couplings on
the model's config, one *channel class* per set of channels that must go together:

* per-channel layers (BatchNormalization, activations incl. hard-swish / swish ops, pooling,
  padding, dropout, depthwise convolutions, reshapes that keep the last axis such as squeeze-
  excite's ``[1, 1, C]``) tie output channel ``c`` to input channel ``c``;
* element-wise merges (Add, Subtract, Multiply, Maximum, Minimum, Average, and ``x * y`` ops)
  tie channel ``c`` of all inputs and the output (an input broadcast over channels is not tied);
* Concatenate ties its output channels to slices of its inputs; Flatten ties channel ``c`` to
  every ``p * C + c``; a depthwise multiplier ``m`` ties input ``c`` to outputs ``c*m .. c*m+m-1``;
* *readers* take channels in and make new ones (Conv2D, Dense, SeparableConv2D,
  Conv2DTranspose): they end a class, and their outputs start new ones.

Classes that touch the model's input or output, or a layer not understood here (a custom layer,
a grouped convolution, LayerNormalization, a layer called twice...), are *pinned*: never removed.
A *group* is the classes that run through the same tensors (a residual stream across its adds,
one input slice of a DenseNet concatenation): what the reports list and ``keep`` applies to.
:func:`slice_model` rebuilds the model with the chosen classes removed, every affected layer
cloned from its config with new widths and its weights sliced on input and output axes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tf_keras as keras

from train2infer.models.graph import edit, functional, wiring
from train2infer.models.work import ELEMENTWISE_FUNCTIONS, MERGES

L = keras.layers
READERS = (L.Conv2D, L.Dense, L.SeparableConv2D)  # Conv2DTranspose and DepthwiseConv2D are Conv2Ds
PER_CHANNEL = (L.BatchNormalization, L.ReLU, L.PReLU, L.LeakyReLU, L.ELU, L.ThresholdedReLU, L.Activation,
               L.MaxPooling2D, L.AveragePooling2D, L.GlobalAveragePooling2D, L.GlobalMaxPooling2D, L.Dropout,
               L.SpatialDropout2D, L.GaussianNoise, L.GaussianDropout, L.AlphaDropout, L.ZeroPadding2D,
               L.Cropping2D, L.UpSampling2D, L.Rescaling, L.Normalization, L.ActivityRegularization)
MERGE_LAYERS = tuple(MERGES)  # Add, Subtract, Multiply, Maximum, Minimum, Average
# TF ops (``x + 3``, ``x * y``, ``tf.nn.relu6(x)``) that work element by element: work.py's
# arithmetic ones and the unary ones.
ELEMENTWISE_OPS = ELEMENTWISE_FUNCTIONS | {
    "__operators__.neg", "__operators__.pow", "math.negative", "math.abs", "math.square", "math.sqrt", "math.exp",
    "math.pow", "math.sigmoid", "math.tanh", "nn.relu", "nn.relu6", "nn.sigmoid", "nn.swish", "nn.silu", "nn.gelu",
    "nn.elu", "nn.selu", "nn.leaky_relu", "clip_by_value"}
CROSS_CHANNEL_ACTIVATIONS = {"softmax", "log_softmax"}


@dataclass
class Group:
    """Channel classes that run through the same tensors and are removed as one choice."""

    name: str  # the first layer that creates them (or the first tensor)
    classes: list[int]  # class ids (union-find roots), in channel order of the first tensor
    tensors: list[str]  # layers whose output carries them
    sources: list[str]  # layers whose output filters create them
    readers: list[str]  # layers that read them as input channels
    pinned: str | None = None  # why they are never removed


@dataclass
class Dependencies:
    """What :func:`dependencies` found: per tensor, the class of each of its channels."""

    index: dict[str, np.ndarray]  # layer name -> class id of each output channel
    groups: list[Group]
    pinned: dict[str, str] = field(default_factory=dict)  # layer -> why the channels touching it stay
    inputs: dict[str, list[str]] = field(default_factory=dict)  # layer -> the layers it reads
    consumers: dict[str, list[str]] = field(default_factory=dict)  # layer -> the layers reading it

    def kept(self, removed: set[int]) -> dict[str, np.ndarray]:
        """Per tensor, the indices of the channels that survive removing the classes ``removed``."""
        gone = np.fromiter(removed, dtype=np.int64, count=len(removed))
        return {t: np.flatnonzero(~np.isin(ids, gone)) for t, ids in self.index.items()}


class _Classes:
    """Union-find over every channel of every tensor."""

    def __init__(self, sizes: dict[str, int]):
        self.offset, total = {}, 0
        for name, size in sizes.items():
            self.offset[name], total = total, total + size
        self.parent = list(range(total))

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:
            self.parent[i], i = root, self.parent[i]
        return root

    def tie(self, a: str, a_channels, b: str, b_channels) -> None:
        """Tie channel ``a_channels[k]`` of tensor ``a`` to ``b_channels[k]`` of ``b``, for every k."""
        oa, ob = self.offset[a], self.offset[b]
        for i, j in zip(a_channels, b_channels):
            ri, rj = self.find(oa + int(i)), self.find(ob + int(j))
            if ri != rj:
                self.parent[max(ri, rj)] = min(ri, rj)

    def ids(self, name: str, size: int) -> np.ndarray:
        return np.array([self.find(self.offset[name] + c) for c in range(size)], dtype=np.int64)


def is_reader(layer) -> bool:
    """A layer that reads channels in and creates new ones: Conv2D (not depthwise), Dense,
    SeparableConv2D, Conv2DTranspose."""
    return isinstance(layer, READERS) and not isinstance(layer, L.DepthwiseConv2D)


def width(layer: L.Layer) -> int | None:
    """Last-axis size of a layer's single output; None for several outputs."""
    try:
        shape = layer.output_shape
    except (AttributeError, RuntimeError):  # called several times with different shapes
        return None
    if isinstance(shape, list):
        if len(shape) != 1:
            return None
        shape = shape[0]
    return int(shape[-1]) if shape and shape[-1] is not None else None


def dependencies(model: keras.Model) -> Dependencies:
    """The channel classes and groups of a functional (or Sequential) model.

    Args:
        model: A tf_keras model with one output tensor per layer.

    Returns:
        The classes of every tensor's channels, the groups, and the pinned layers with reasons.
    """
    model = functional(model)
    inputs, consumers, calls = wiring(model)
    layers = {layer.name: layer for layer in model.layers}
    sizes = {name: width(layer) or 0 for name, layer in layers.items()}
    classes, pins = _Classes(sizes), {}
    for name, layer in layers.items():
        reason = "called more than once" if calls[name] > 1 else _couple(layer, inputs[name], layers, classes, sizes)
        if reason:
            pins[name] = reason
    index = {name: classes.ids(name, size) for name, size in sizes.items()}
    pinned = _pinned_classes(model, pins, inputs, index)
    groups = _groups(model, index, inputs, consumers, pinned)
    return Dependencies(index, groups, pins, inputs, consumers)


def _couple(layer, srcs: list[str], layers: dict, classes: _Classes, sizes: dict) -> str | None:
    """Tie ``layer``'s output channels to its inputs'; the reason it is not understood, or None."""
    name, out = layer.name, sizes[layer.name]
    if isinstance(layer, L.InputLayer):
        return "the model's input"
    if not out or any(not sizes[s] for s in srcs):
        return "has several outputs or an input with several outputs"
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        return f"data_format {layer.data_format} (channels are not the last axis)"
    if len(srcs) == 1 and isinstance(layer, L.DepthwiseConv2D):
        m = layer.depth_multiplier
        classes.tie(srcs[0], np.repeat(np.arange(sizes[srcs[0]]), m), name, np.arange(out))
        return None
    if is_reader(layer):
        groups = getattr(layer, "groups", 1)
        return f"grouped convolution ({groups} groups)" if groups != 1 else None
    if len(srcs) == 1 and _per_channel(layer) and sizes[srcs[0]] == out:
        classes.tie(srcs[0], range(out), name, range(out))
        return None
    if len(srcs) == 1 and isinstance(layer, L.Flatten):
        c = sizes[srcs[0]]
        classes.tie(srcs[0], np.arange(out) % c, name, np.arange(out))
        return None
    if isinstance(layer, L.Concatenate) and layer.axis in (-1, len(layer.output_shape) - 1):
        start = 0
        for s in srcs:
            classes.tie(s, range(sizes[s]), name, range(start, start + sizes[s]))
            start += sizes[s]
        return None
    if _merge(layer) and all(sizes[s] in (out, 1) for s in srcs):
        for s in srcs:
            if sizes[s] == out:
                classes.tie(s, range(out), name, range(out))
        return None
    return f"{type(layer).__name__} is not known to keep channels apart"


def _per_channel(layer) -> bool:
    if isinstance(layer, L.Activation):
        return layer.get_config()["activation"] not in CROSS_CHANNEL_ACTIVATIONS
    if isinstance(layer, L.Normalization):
        return layer.axis in ((-1,), (len(layer.output_shape) - 1,)) and layer.input_mean is None
    if isinstance(layer, L.Rescaling):
        return np.ndim(layer.scale) == 0 and np.ndim(layer.offset) == 0
    if isinstance(layer, L.BatchNormalization):
        axis = layer.axis[0] if isinstance(layer.axis, (list, tuple)) else layer.axis
        return axis in (-1, len(layer.output_shape) - 1)
    if isinstance(layer, L.Reshape):  # channels innermost: same last axis = same channel at a new position
        return True
    if type(layer).__name__ == "TFOpLambda":
        return _elementwise_op(layer)
    return isinstance(layer, PER_CHANNEL)


def _merge(layer) -> bool:
    if type(layer).__name__ == "TFOpLambda":
        return _elementwise_op(layer)
    return isinstance(layer, MERGE_LAYERS)


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


def _pinned_classes(model, pins: dict, inputs: dict, index: dict) -> dict[int, str]:
    """Class id -> why it stays: it touches the model's output or a pinned layer."""
    pinned = {}
    touching = [(name, f"{name}: {why}") for name, why in pins.items()]
    touching += [(s, f"{name}: {why}") for name, why in pins.items() for s in inputs[name]]
    touching += [(name, f"{name}: the model's output") for name in model.output_names]
    for tensor, why in touching:
        for c in index.get(tensor, ()):
            pinned.setdefault(int(c), why)
    return pinned


def _groups(model, index: dict, inputs: dict, consumers: dict, pinned: dict) -> list[Group]:
    """Classes grouped by the set of tensors they run through, in model order."""
    order = [layer.name for layer in model.layers]
    where: dict[int, list[str]] = {}
    for t in order:
        for c in dict.fromkeys(index[t].tolist()):
            where.setdefault(c, []).append(t)
    by_tensors: dict[tuple, list[int]] = {}
    for c, tensors in where.items():
        by_tensors.setdefault(tuple(tensors), []).append(c)
    groups = []
    for tensors, ids in by_tensors.items():
        layers = [model.get_layer(t) for t in tensors]
        sources = [t for t, layer in zip(tensors, layers) if is_reader(layer)]
        readers = [r for t in tensors for r in consumers.get(t, []) if is_reader(model.get_layer(r))]
        why = next((pinned[c] for c in ids if c in pinned), None)
        if why is None and not sources:
            why = "no layer creates these channels"
        groups.append(Group(sources[0] if sources else tensors[0], ids, list(tensors), sources,
                            list(dict.fromkeys(readers)), why))
    return groups


# --------------------------------------------------------------------------- rebuilding


def slice_model(model: keras.Model, deps: Dependencies, removed: set[int]) -> keras.Model:
    """``model`` rebuilt without the channel classes ``removed`` (from ``deps = dependencies(model)``).

    Every layer whose input or output channels change is cloned from its config with its new
    width (``filters``, ``units``, a reshape's last axis) and its weights sliced on both axes:
    kernels, biases, depthwise and separable kernels, BatchNorm statistics, PReLU slopes.

    Returns:
        An ordinary dense model with the same layer names.
    """
    model = functional(model)
    kept = deps.kept(removed)
    configs, weights = {}, {}
    for layer in model.layers:
        srcs = deps.inputs.get(layer.name, [])
        out_k = kept[layer.name]
        in_k = kept[srcs[0]] if len(srcs) == 1 else None
        if len(out_k) == len(deps.index[layer.name]) and (in_k is None or len(in_k) == len(deps.index[srcs[0]])):
            continue
        change = _sliced(layer, in_k, out_k)
        if change is not None:
            configs[layer.name], weights[layer.name] = change
    return edit(model, configs=configs, weights=weights)


def _sliced(layer, i, o) -> tuple[dict, list] | None:
    """New config entries and weights of ``layer`` keeping input channels ``i`` and output channels ``o``."""
    w = layer.get_weights()
    bias = [w[-1][o]] if getattr(layer, "use_bias", False) else []
    if isinstance(layer, L.DepthwiseConv2D):
        kernel = w[0][:, :, i, :]
        return {}, [kernel] + ([w[1].reshape(-1, kernel.shape[-1])[i].ravel()] if len(w) > 1 else [])
    if isinstance(layer, L.SeparableConv2D):
        m = w[0].shape[-1]
        rows = (i[:, None] * m + np.arange(m)).ravel()
        return {"filters": len(o)}, [w[0][:, :, i, :], w[1][:, :, rows][..., o]] + bias
    if isinstance(layer, L.Conv2DTranspose):  # kernel (kh, kw, out, in)
        return {"filters": len(o)}, [w[0][:, :, o][..., i]] + bias
    if isinstance(layer, L.Conv2D):
        return {"filters": len(o)}, [w[0][:, :, i][..., o]] + bias
    if isinstance(layer, L.Dense):
        return {"units": len(o)}, [w[0][i][:, o]] + bias
    if isinstance(layer, L.Reshape):
        return {"target_shape": (*layer.target_shape[:-1], len(o))}, w
    if isinstance(layer, (L.BatchNormalization, L.PReLU, L.Normalization)):
        full = width(layer)
        return {}, [a[..., o] if np.ndim(a) and a.shape[-1] == full else a for a in w]
    if w:
        raise ValueError(f"cannot slice the weights of {layer.name} ({type(layer).__name__})")
    return None
