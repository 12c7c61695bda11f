"""Channel dependency groups of any functional tf_keras model, and the model rebuilt without some.

Removing output channel ``j`` of a convolution removes channel ``j`` of every tensor it flows
into until a layer that mixes channels reads it. :func:`dependencies` finds these couplings on
the model's config, one *channel class* per set of channels that must go together, by each
layer's rule in :mod:`train2infer.models.rules` (per-channel layers tie output ``c`` to input
``c``; merges tie channel ``c`` of all inputs; a concatenation maps slices; Flatten ties ``c`` to
every ``p * C + c``; a depthwise multiplier ``m`` ties input ``c`` to outputs ``c*m .. c*m+m-1``;
*readers* such as Conv2D and Dense end a class and their outputs start new ones).

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
from train2infer.models.rules import channels_of, is_reader, rule_for

L = keras.layers
__all__ = ["Dependencies", "Group", "dependencies", "is_reader", "slice_model"]


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
    """Tie ``layer``'s output channels to its inputs' by its rule (:mod:`train2infer.models.rules`);
    the reason it is not understood, or None."""
    name, out = layer.name, sizes[layer.name]
    if isinstance(layer, L.InputLayer):
        return "the model's input"
    if not out or any(not sizes[s] for s in srcs):
        return "has several outputs or an input with several outputs"
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        return f"data_format {layer.data_format} (channels are not the last axis)"
    rule, kind = rule_for(layer), channels_of(layer)
    if kind == "reader":
        return None
    if kind == "depthwise" and len(srcs) == 1:
        m = out // sizes[srcs[0]]
        classes.tie(srcs[0], np.repeat(np.arange(sizes[srcs[0]]), m), name, np.arange(out))
    elif kind == "per_channel" and len(srcs) == 1 and sizes[srcs[0]] == out:
        classes.tie(srcs[0], range(out), name, range(out))
    elif kind == "flatten" and len(srcs) == 1:
        classes.tie(srcs[0], np.arange(out) % sizes[srcs[0]], name, np.arange(out))
    elif kind == "concat":
        start = 0
        for s in srcs:
            classes.tie(s, range(sizes[s]), name, range(start, start + sizes[s]))
            start += sizes[s]
    elif kind == "merge" and all(sizes[s] in (out, 1) for s in srcs):
        for s in srcs:
            if sizes[s] == out:
                classes.tie(s, range(out), name, range(out))
    elif rule is not None and not rule.applies(layer):
        return rule.why(layer)
    else:
        return f"{type(layer).__name__} is not known to keep channels apart"
    return None


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
    """New config entries and weights of ``layer`` keeping input channels ``i`` and output channels
    ``o``, by its rule's ``slice``; None for a layer without weights that needs no change."""
    rule = rule_for(layer)
    if rule is not None and rule.slice is not None:
        return rule.slice(layer, i, o)
    if layer.get_weights():
        raise ValueError(f"cannot slice the weights of {layer.name} ({type(layer).__name__}): its rule has no "
                         "slice (train2infer.models.rules.register)")
    return None
