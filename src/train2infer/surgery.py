"""Model surgery on chain models: channel pruning that shrinks the network, BatchNorm folding.

Both rebuild a new, physically smaller dense Keras model from an existing one, layer by
layer, copying (sliced or folded) weights. They work on *chain* models: every layer has
one input and one output, as :func:`train2infer.models.build_cnn` and
:func:`~train2infer.models.build_mobilenet` produce.

Channel pruning (what TF-MOT does not do): a *producer* is a ``Conv2D`` or a ``Dense``
that is not the classifier; its output channels flow through per-channel layers
(BatchNormalization, ReLU, pooling, dropout, padding, depthwise convolutions) to the next
producer. Removing channel ``j`` of a producer removes its filter, the matching
BatchNorm / depthwise entries, and input channel ``j`` of the next producer. A channel
is *dead* when its value at the end of that chain is never positive on the given data (a
ReLU that never fires): removing only dead channels leaves the model's outputs unchanged
on that data.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import tf_keras as keras

from train2infer import Train2InferError

L = keras.layers
PER_CHANNEL = (L.BatchNormalization, L.ReLU, L.Activation, L.MaxPooling2D, L.AveragePooling2D,
               L.GlobalAveragePooling2D, L.GlobalMaxPooling2D, L.Dropout, L.ZeroPadding2D,
               L.DepthwiseConv2D)


def chain(model: keras.Model) -> list[L.Layer]:
    """The layers of a single-input, single-output chain model, input layer excluded.

    Only the model's own graph is looked at (a layer may also be used by other models).

    Raises:
        Train2InferError: If a layer has several inputs, or does not follow the previous one.
    """
    own = getattr(model, "_network_nodes", set())
    layers = [layer for layer in model.layers if not isinstance(layer, L.InputLayer)]
    prev = model.layers[0]
    for layer in layers:
        nodes = [n for i, n in enumerate(layer._inbound_nodes) if f"{layer.name}_ib-{i}" in own]
        if len(nodes) != 1:
            raise Train2InferError(f"model surgery needs a chain model; {layer.name} is used {len(nodes)} times")
        inbound = nodes[0].inbound_layers
        inbound = inbound if isinstance(inbound, (list, tuple)) else [inbound]
        if len(inbound) != 1 or inbound[0] is not prev:
            raise Train2InferError(f"model surgery needs a chain model; {layer.name} does not take "
                                   f"(only) the output of {prev.name}")
        prev = layer
    return layers


def _copy(layer: L.Layer, **changes) -> L.Layer:
    cfg = layer.get_config()
    cfg.update(changes)
    return layer.__class__.from_config(cfg)


def rebuild(model: keras.Model, step: Callable[[L.Layer, np.ndarray | None], list], dtype=None) -> keras.Model:
    """Rebuild a chain model; ``step(layer, in_idx)`` returns ``[(new_layer, weights), ...], out_idx``.

    ``in_idx`` is the index array of the input channels that survive (None: all).
    """
    inputs = keras.Input(shape=model.input_shape[1:], name=model.layers[0].name, dtype=dtype)
    x, idx = inputs, None
    for layer in chain(model):
        new_layers, idx = step(layer, idx)
        for new, weights in new_layers:
            x = new(x)
            if weights is not None:
                new.set_weights(weights)
    return keras.Model(inputs, x, name=model.name)


# --------------------------------------------------------------------------- channels


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
        Train2InferError: If a producer's channels reach a layer that mixes positions and
            channels (``Flatten``, ``Reshape``) before the next producer.
    """
    layers = chain(model)
    kinds = [i for i, layer in enumerate(layers) if _is_producer(layer)]
    found = []
    for a, b in zip(kinds, kinds[1:]):
        layer, follow = layers[a], layers[a + 1 : b]
        if any(fnmatch.fnmatchcase(layer.name, p) for p in exclude):
            continue
        odd = [f for f in follow if not isinstance(f, PER_CHANNEL) and not _flat_per_channel(f)]
        if odd:
            raise Train2InferError(
                f"cannot prune channels of {layer.name}: {odd[0].name} ({type(odd[0]).__name__}) "
                "lies between it and the next convolution / dense layer"
            )
        found.append(Producer(layer, follow, follow[-1] if follow else layer))
    return found


def _flat_per_channel(layer) -> bool:
    """A Flatten of a 1x1xC tensor (after pooling with keepdims) keeps channels as features."""
    return isinstance(layer, L.Flatten) and all(d == 1 for d in layer.input_shape[1:-1])


def _is_producer(layer) -> bool:
    return isinstance(layer, L.Dense) or (type(layer) is L.Conv2D and layer.groups == 1)


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
        scale = np.abs(_bn_scale(prod.follow[0]))
    return np.linalg.norm(flat * scale, ord=order, axis=0)


def _bn_weights(bn: L.BatchNormalization) -> dict[str, np.ndarray]:
    """``gamma`` (if scaled), ``beta`` (if centred), ``moving_mean``, ``moving_variance``."""
    return dict(zip([v.name.split("/")[-1].split(":")[0] for v in bn.weights], bn.get_weights()))


def _bn_scale(bn: L.BatchNormalization) -> np.ndarray:
    w = _bn_weights(bn)
    gamma = w.get("gamma", np.ones_like(w["moving_variance"]))
    return gamma / np.sqrt(w["moving_variance"] + bn.epsilon)


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


def shrink(model: keras.Model, keep: dict[str, np.ndarray]) -> keras.Model:
    """Rebuild ``model`` with only the kept output channels of the named producers.

    Args:
        model: A chain model.
        keep: ``{producer name: indices of output channels to keep}``; others keep all.

    Returns:
        A new, smaller dense model (same layer names) with the surviving weights.
    """

    def step(layer, idx):
        w = layer.get_weights()
        if type(layer) is L.Conv2D or isinstance(layer, L.Dense):
            kernel = w[0] if idx is None else np.take(w[0], idx, axis=-2)
            out = keep.get(layer.name)
            if out is not None:
                kernel = kernel[..., out]
            new_w = [kernel] + ([w[1] if out is None else w[1][out]] if len(w) > 1 else [])
            size = {"filters": kernel.shape[-1]} if isinstance(layer, L.Conv2D) else {"units": kernel.shape[-1]}
            return [(_copy(layer, **size), new_w)], out
        if isinstance(layer, L.DepthwiseConv2D):
            new_w = w if idx is None else [np.take(w[0], idx, axis=2)] + ([w[1][idx]] if len(w) > 1 else [])
            return [(_copy(layer), new_w)], idx
        if isinstance(layer, L.BatchNormalization):
            return [(_copy(layer), w if idx is None else [a[idx] for a in w])], idx
        if w:
            raise Train2InferError(f"cannot shrink through {layer.name} ({type(layer).__name__})")
        return [(_copy(layer), None)], idx

    return rebuild(model, step)


def widths(model: keras.Model) -> dict[str, int]:
    """Output width (filters / units) of every Conv2D and Dense layer."""
    return {layer.name: int(layer.get_weights()[0].shape[-1]) for layer in model.layers if _is_producer(layer)}


# --------------------------------------------------------------------------- folding


def fold_batchnorm(model: keras.Model) -> keras.Model:
    """Fold every BatchNorm into the convolution before it, and a ReLU after it into the conv.

    ``Conv2D(no bias) -> BatchNormalization -> ReLU`` becomes one ``Conv2D(bias,
    activation="relu")`` with ``kernel * s`` and ``bias = beta + (b - mean) * s``, ``s =
    gamma / sqrt(var + eps)`` (inference mode). Depthwise convolutions fold the same way.

    Returns:
        A model with fewer layers computing the same function in inference mode.
    """
    layers = chain(model)
    pending: dict = {}

    def step(layer, idx):
        if layer.name in pending.get("skip", ()):
            return [], idx
        nxt = layers.index(layer) + 1
        if isinstance(layer, (L.Conv2D, L.DepthwiseConv2D)) and nxt < len(layers) and \
                isinstance(layers[nxt], L.BatchNormalization) and layer.get_config().get("activation") == "linear":
            bn = layers[nxt]
            w = layer.get_weights()
            kernel, bias = w[0], (w[1] if len(w) > 1 else 0.0)
            b = _bn_weights(bn)
            s = _bn_scale(bn)
            if isinstance(layer, L.DepthwiseConv2D):  # kernel (kh, kw, C, mult); output channel = c * mult + m
                kernel = kernel * s.reshape(1, 1, kernel.shape[2], kernel.shape[3])
            else:
                kernel = kernel * s
            new_bias = b.get("beta", 0.0) + (bias - b["moving_mean"]) * s
            skip = [bn.name]
            activation = "linear"
            if nxt + 1 < len(layers) and _is_plain_relu(layers[nxt + 1]):
                activation = "relu"
                skip.append(layers[nxt + 1].name)
            pending.setdefault("skip", set()).update(skip)
            new = _copy(layer, use_bias=True, activation=activation)
            dtype = w[0].dtype  # float32, or float64 when checking that the fold is exact
            return [(new, [kernel.astype(dtype), np.asarray(new_bias).astype(dtype)])], idx
        return [(_copy(layer), layer.get_weights() or None)], idx

    return rebuild(model, step)


def _is_plain_relu(layer) -> bool:
    if isinstance(layer, L.ReLU):
        cfg = layer.get_config()
        return not cfg.get("max_value") and not cfg.get("negative_slope") and not cfg.get("threshold")
    return isinstance(layer, L.Activation) and layer.get_config().get("activation") == "relu"


def to_float64(model: keras.Model) -> keras.Model:
    """The same chain model computing in float64 (to check a rewrite is exact, not just close).

    Float32 results of two equivalent models differ by rounding, which grows with the
    magnitude of the outputs; in float64 an exact rewrite agrees to ~1e-12.
    """

    def step(layer, idx):
        weights = [w.astype(np.float64) for w in layer.get_weights()]
        return [(_copy(layer, dtype="float64"), weights or None)], idx

    return rebuild(model, step, dtype="float64")
