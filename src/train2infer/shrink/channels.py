"""Which channels to remove: dead channel classes, BatchNorm-scaled filter norms, per group or global.

The coupling comes from :func:`train2infer.models.groups.dependencies`: every channel *class*
(channels that must go together through residual adds, concatenations, squeeze-excite
multiplies) belongs to one *group*. A class is *dead* when its value is exactly 0 wherever a
layer reads it (a ReLU that never fires, on the given data): removing only dead classes leaves
the model's outputs unchanged on that data. A class's importance is the norm of the output
filters that create it, each scaled by the BatchNorm that follows, normalised by that filter
bank's mean norm, averaged over its creators.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import tf_keras as keras

from train2infer.core.params import check_patterns
from train2infer.models.cost import Cost
from train2infer.models.graph import bn_scale, functional
from train2infer.models.groups import Dependencies, Group, dependencies
from train2infer.models.rules import rule_for
from train2infer.shrink.budget import Option, greedy

L = keras.layers


def filter_norms(layer: L.Layer, order: int, scale: np.ndarray | None = None) -> np.ndarray:
    """L1 (``order=1``) or L2 norm of each output filter of a reader layer (its rule's ``filters``:
    Conv2D, Dense, SeparableConv2D's pointwise kernel, Conv2DTranspose), times ``scale`` per channel."""
    rule = rule_for(layer)
    if rule is None or rule.filters is None:
        raise ValueError(f"{layer.name} ({type(layer).__name__}) creates channels but its rule has no filters")
    kernel = np.asarray(rule.filters(layer))
    norms = np.linalg.norm(kernel.reshape(-1, kernel.shape[-1]), ord=order, axis=0)
    return norms * (np.abs(scale) if scale is not None else 1.0)


def importance(model: keras.Model, deps: Dependencies, group: Group, order: int) -> np.ndarray:
    """Per class of ``group``, the mean over its creators of the (BatchNorm-scaled) filter norm
    divided by that creator's mean norm (so a large-magnitude branch does not decide alone)."""
    consumers = deps.consumers
    position = {c: k for k, c in enumerate(group.classes)}
    total = np.zeros(len(group.classes))
    for name in group.sources:
        layer, after = model.get_layer(name), consumers.get(name, [])
        bn = model.get_layer(after[0]) if len(after) == 1 else None
        norms = filter_norms(layer, order, bn_scale(bn) if isinstance(bn, L.BatchNormalization) else None)
        norms = norms / max(float(norms.mean()), 1e-12)
        at = np.array([position.get(int(c), -1) for c in deps.index[name]])
        total += np.bincount(at[at >= 0], weights=norms[at >= 0], minlength=len(total))
    return total / max(len(group.sources), 1)


def alive_classes(model: keras.Model, deps: Dependencies, x: np.ndarray, batch_size: int = 64) -> set[int]:
    """Classes whose value is not 0 everywhere a reader layer reads them, on inputs ``x``.

    A class that no reader reads (it only reaches pinned layers or the output) counts as alive.
    """
    free = {c for g in deps.groups if not g.pinned for c in g.classes}
    tensors = list(dict.fromkeys(deps.inputs[r][0] for g in deps.groups if not g.pinned for r in g.readers))
    read = {c for t in tensors for c in deps.index[t].tolist()}
    alive = {c for c in free if c not in read}
    if not tensors:
        return alive
    model = functional(model)
    probe = keras.Model(model.inputs, [model.get_layer(t).output for t in tensors])
    peaks = [np.zeros(len(deps.index[t])) for t in tensors]
    for i in range(0, len(x), batch_size):
        outs = probe(x[i : i + batch_size], training=False)
        for k, o in enumerate(outs if isinstance(outs, (list, tuple)) else [outs]):
            o = np.abs(np.asarray(o))
            peaks[k] = np.maximum(peaks[k], o.reshape(-1, o.shape[-1]).max(axis=0))
    for t, peak in zip(tensors, peaks):
        alive.update(deps.index[t][peak > 0].tolist())
    return alive & free


@dataclass
class Plan:
    """What :func:`plan` chose: the model's channel dependencies, the classes to remove, and one
    report row per group (``name``, ``width``, ``kept``, ``dead``, ``tensors``, ``sources``,
    ``readers``, ``pinned``)."""

    deps: Dependencies
    removed: set[int]
    groups: list[dict]


def plan(model: keras.Model, x: np.ndarray, criterion: str, keep: float, min_channels: int = 1,
         exclude: Sequence[str] = (), round_to: int = 1, ranking: str = "group") -> Plan:
    """Which channel classes to remove.

    Dead classes always go. ``dead`` removes only those; ``l1`` / ``l2`` keep, per group,
    ``round(keep x width)`` live classes with the largest importance (``ranking: group``), or
    every live class above one importance threshold across groups chosen so that ``keep`` of
    all classes stay (``ranking: global``). Either way at least ``min_channels`` per group, and
    the kept count rounded up to a multiple of ``round_to`` (never above the group's width).

    Args:
        model: A trained functional model.
        x: float32 inputs (training data) to find dead classes on.
        criterion: ``dead``, ``l1`` or ``l2``.
        keep: Fraction of each group's (or all groups') classes to keep.
        min_channels: Never fewer classes than this per group.
        exclude: Layer-name patterns (fnmatch): a group with a matching member stays whole.
        round_to: Kept counts are multiples of this.
        ranking: ``group`` or ``global``.

    Returns:
        The :class:`Plan`.
    """
    deps, alive, free, scores = _scored(model, x, criterion, exclude)
    quota = iter(zip(scores, _quota(free, scores, alive, criterion, keep, ranking)))  # in the order of free
    removed = set()
    for g in free:
        removed.update(set(g.classes) - set(_choose(g, *next(quota), alive, min_channels, round_to)))
    return Plan(deps, removed, _rows(deps, removed, alive))


def _scored(model: keras.Model, x: np.ndarray, criterion: str, exclude: Sequence[str]):
    """The dependencies (``exclude`` pinned), the live classes, the free groups and their scores."""
    check_patterns("exclude", exclude, [layer.name for layer in model.layers])  # a typo must not pass
    deps = dependencies(model)
    for g in deps.groups:
        hit = next((p for p in exclude for n in g.tensors + g.sources if fnmatch.fnmatchcase(n, p)), None)
        if hit and not g.pinned:
            g.pinned = f"shrink.exclude matches {hit!r}"
    alive = alive_classes(model, deps, x)
    free = [g for g in deps.groups if not g.pinned]
    return deps, alive, free, [importance(model, deps, g, 2 if criterion == "l2" else 1) for g in free]


def _rows(deps: Dependencies, removed: set[int], alive: set[int]) -> list[dict]:
    """One report row per group."""
    return [{"name": g.name, "width": len(g.classes), "kept": sum(c not in removed for c in g.classes),
             "dead": 0 if g.pinned else sum(c not in alive for c in g.classes),
             "tensors": g.tensors, "sources": g.sources, "readers": g.readers, "pinned": g.pinned}
            for g in deps.groups]


def plan_budget(model: keras.Model, x: np.ndarray, criterion: str, cost_of: Callable[[Dependencies], Cost],
                budget: float, min_channels: int = 1, exclude: Sequence[str] = (),
                round_to: int = 1) -> tuple[Plan, dict]:
    """Which channel classes to remove so that the predicted cost is within ``budget``.

    The classes of each free group are ranked as in :func:`plan` (live first, by importance);
    :func:`train2infer.shrink.budget.greedy` then cuts, one ``round_to`` step of one group at a
    time, where the importance lost per unit of cost saved is least. Importance is each creator's
    filter norm over its mean (:func:`importance`), so it compares across groups.

    Args:
        model, x, criterion, min_channels, exclude, round_to: As :func:`plan`.
        cost_of: The :class:`Cost` of the model's widths, given its dependencies.
        budget: The largest predicted cost allowed.

    Returns:
        The :class:`Plan` and the chooser's trace (costs before and after, reached, steps).
    """
    deps, alive, free, scores = _scored(model, x, criterion, exclude)
    options = []
    for g, score in zip(free, scores):
        live = np.array([c in alive for c in g.classes])
        order = np.lexsort((-score, ~live))
        floor = min(len(g.classes), math.ceil(min_channels / round_to) * round_to)
        options.append(Option(g.name, [g.classes[k] for k in order], np.where(live, score, 0.0)[order], floor))
    removed, trace = greedy(options, cost_of(deps), budget, round_to)
    return Plan(deps, removed, _rows(deps, removed, alive)), trace


def _quota(free: list[Group], scores: list, alive: set, criterion: str, keep: float, ranking: str) -> list[int]:
    """Per free group, how many live classes to keep before the minimum and the rounding."""
    live = [np.array([c in alive for c in g.classes]) for g in free]
    if criterion == "dead":
        return [int(m.sum()) for m in live]
    if criterion not in ("l1", "l2"):
        raise ValueError(f"unknown channel criterion {criterion!r}")
    if ranking == "group":
        return [min(int(m.sum()), int(round(keep * len(g.classes)))) for g, m in zip(free, live)]
    pooled = np.concatenate([s[m] for s, m in zip(scores, live)] or [np.zeros(0)])
    total = sum(len(g.classes) for g in free)
    n = min(len(pooled), int(round(keep * total)))
    threshold = np.sort(pooled)[::-1][n - 1] if n else np.inf
    return [int(np.sum(s[m] >= threshold)) for s, m in zip(scores, live)]


def _choose(g: Group, score: np.ndarray, quota: int, alive: set, min_channels: int, round_to: int) -> list[int]:
    """The classes of ``g`` kept: live ones by importance, then (to reach the minimum or the
    rounding) the strongest dead ones."""
    n = min(len(g.classes), max(quota, min_channels))
    n = min(len(g.classes), math.ceil(n / round_to) * round_to)
    live = np.array([c in alive for c in g.classes])
    order = np.lexsort((-score, ~live))  # live first, each by importance, highest first
    return [g.classes[k] for k in sorted(order[:n])]
