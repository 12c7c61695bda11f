"""Which channels to remove: producers, dead channels, BatchNorm-scaled filter norms.

A channel is *dead* when its value at the end of its producer's chain is never positive on
the given data (a ReLU that never fires): removing only dead channels leaves the model's
outputs unchanged on that data. The classifier is never a producer.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import tf_keras as keras

from train2infer.models.graph import PER_CHANNEL, GraphNotSupported, bn_scale, chain, flat_per_channel, is_producer

L = keras.layers


@dataclass
class Producer:
    """A layer whose output channels can be removed, and what its channels flow through."""

    layer: L.Layer
    follow: list  # per-channel layers up to the next producer
    end: L.Layer  # where deadness is measured: the last of ``follow`` (or the layer itself)


def producers(model: keras.Model, exclude: Sequence[str] = ()) -> list[Producer]:
    """The prunable producers of a chain model, in order (the classifier is never one).

    Args:
        model: A chain model.
        exclude: Layer-name patterns (fnmatch) to leave at full width.

    Raises:
        GraphNotSupported: If the model is not a chain, or a producer's channels reach a layer that mixes positions and
            channels (``Flatten``, ``Reshape``) before the next producer.
    """
    layers = chain(model)
    kinds = [i for i, layer in enumerate(layers) if is_producer(layer)]
    found = []
    for a, b in zip(kinds, kinds[1:]):
        layer, follow = layers[a], layers[a + 1 : b]
        if any(fnmatch.fnmatchcase(layer.name, p) for p in exclude):
            continue
        odd = [f for f in follow if not isinstance(f, PER_CHANNEL) and not flat_per_channel(f)]
        if odd:
            raise GraphNotSupported(
                f"cannot prune channels of {layer.name}: {odd[0].name} ({type(odd[0]).__name__}) "
                "lies between it and the next convolution / dense layer"
            )
        found.append(Producer(layer, follow, follow[-1] if follow else layer))
    return found


def channel_activity(model: keras.Model, prods: Sequence[Producer], x: np.ndarray, batch_size: int = 256):
    """Per producer, the largest value each channel reaches at the end of its chain on ``x``.

    Args:
        model: The model.
        prods: From :func:`producers`.
        x: float32 model inputs.
    """
    probe = keras.Model(model.input, [p.end.output for p in prods])
    peak = [None] * len(prods)
    for i in range(0, len(x), batch_size):
        outs = probe(x[i : i + batch_size], training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for k, o in enumerate(outs):
            o = np.asarray(o)
            m = o.reshape(-1, o.shape[-1]).max(axis=0)
            peak[k] = m if peak[k] is None else np.maximum(peak[k], m)
    return {p.layer.name: peak[k] for k, p in enumerate(prods)}


def channel_norms(prod: Producer, order: int) -> np.ndarray:
    """L1 (``order=1``) or L2 norm of each output filter, scaled by the BatchNorm that follows.

    A BatchNorm right after the producer multiplies channel ``j`` by ``gamma_j /
    sqrt(var_j + eps)``; the norm of the folded filter is what the next layer sees.
    """
    kernel = prod.layer.get_weights()[0]
    flat = kernel.reshape(-1, kernel.shape[-1])
    scale = np.ones(kernel.shape[-1], np.float32)
    if prod.follow and isinstance(prod.follow[0], L.BatchNormalization):
        scale = np.abs(bn_scale(prod.follow[0]))
    return np.linalg.norm(flat * scale, ord=order, axis=0)


def plan(
    model: keras.Model,
    x: np.ndarray,
    criterion: str,
    keep: float,
    min_channels: int = 1,
    exclude: Sequence[str] = (),
) -> dict[str, dict]:
    """Which channels of each producer to keep.

    Dead channels (never positive on ``x``) are always removed. ``dead`` removes only
    those; ``l1`` / ``l2`` then keep the ``round(keep x width)`` live channels with the
    largest (BatchNorm-scaled) filter norms.

    Args:
        model: A trained chain model.
        x: float32 inputs (training data) to find dead channels on.
        criterion: ``dead``, ``l1`` or ``l2``.
        keep: Fraction of each producer's channels to keep (``l1``/``l2``).
        min_channels: Never fewer channels than this per producer.
        exclude: Layer-name patterns to leave at full width.

    Returns:
        ``{layer name: {"keep": sorted index array, "width": original width, "dead": count}}``.
    """
    prods = producers(model, exclude)
    peaks = channel_activity(model, prods, x)
    result = {}
    for p in prods:
        width = p.layer.get_weights()[0].shape[-1]
        alive = np.flatnonzero(peaks[p.layer.name] > 0)
        if criterion == "dead":
            kept = alive
        elif criterion in ("l1", "l2"):
            target = max(min_channels, int(round(keep * width)))
            norms = channel_norms(p, 1 if criterion == "l1" else 2)
            kept = np.sort(alive[np.argsort(-norms[alive], kind="stable")][:target])
        else:
            raise ValueError(f"unknown channel criterion {criterion!r}")
        if len(kept) < min_channels:  # everything dead: keep the strongest anyway
            kept = np.sort(np.argsort(-channel_norms(p, 2), kind="stable")[:min_channels])
        result[p.layer.name] = {"keep": kept, "width": int(width), "dead": int(width - len(alive))}
    return result


