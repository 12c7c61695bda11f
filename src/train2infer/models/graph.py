"""Graph surgery on chain models: slicing channels out, folding BatchNorm, float64 copies.

Each rebuilds a new, physically smaller dense Keras model from an existing one, layer by
layer, copying (sliced or folded) weights. They work on *chain* models: every layer has
one input and one output, as :func:`train2infer.models.build_cnn` and
:func:`~train2infer.models.build_mobilenet` produce.

Slicing (what channel pruning in :mod:`train2infer.shrink` asks for): a *producer* is a
``Conv2D`` or a ``Dense``; its output channels flow through per-channel layers
(BatchNormalization, ReLU, pooling, dropout, padding, depthwise convolutions) to the next
producer. Removing channel ``j`` of a producer removes its filter, the matching
BatchNorm / depthwise entries, and input channel ``j`` of the next producer.
"""

from __future__ import annotations

from typing import Callable

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


def copy_layer(layer: L.Layer, **changes) -> L.Layer:
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


def flat_per_channel(layer) -> bool:
    """A Flatten of a 1x1xC tensor (after pooling with keepdims) keeps channels as features."""
    return isinstance(layer, L.Flatten) and all(d == 1 for d in layer.input_shape[1:-1])


def is_producer(layer) -> bool:
    """A layer whose output channels can be removed: a Dense, or an ungrouped Conv2D."""
    return isinstance(layer, L.Dense) or (type(layer) is L.Conv2D and layer.groups == 1)


def bn_weights(bn: L.BatchNormalization) -> dict[str, np.ndarray]:
    """``gamma`` (if scaled), ``beta`` (if centred), ``moving_mean``, ``moving_variance``."""
    return dict(zip([v.name.split("/")[-1].split(":")[0] for v in bn.weights], bn.get_weights()))


def bn_scale(bn: L.BatchNormalization) -> np.ndarray:
    w = bn_weights(bn)
    gamma = w.get("gamma", np.ones_like(w["moving_variance"]))
    return gamma / np.sqrt(w["moving_variance"] + bn.epsilon)


def slice_channels(model: keras.Model, keep: dict[str, np.ndarray]) -> keras.Model:
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
            return [(copy_layer(layer, **size), new_w)], out
        if isinstance(layer, L.DepthwiseConv2D):
            new_w = w if idx is None else [np.take(w[0], idx, axis=2)] + ([w[1][idx]] if len(w) > 1 else [])
            return [(copy_layer(layer), new_w)], idx
        if isinstance(layer, L.BatchNormalization):
            return [(copy_layer(layer), w if idx is None else [a[idx] for a in w])], idx
        if w:
            raise Train2InferError(f"cannot shrink through {layer.name} ({type(layer).__name__})")
        return [(copy_layer(layer), None)], idx

    return rebuild(model, step)


def widths(model: keras.Model) -> dict[str, int]:
    """Output width (filters / units) of every Conv2D and Dense layer."""
    return {layer.name: int(layer.get_weights()[0].shape[-1]) for layer in model.layers if is_producer(layer)}


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
            b = bn_weights(bn)
            s = bn_scale(bn)
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
            new = copy_layer(layer, use_bias=True, activation=activation)
            dtype = w[0].dtype  # float32, or float64 when checking that the fold is exact
            return [(new, [kernel.astype(dtype), np.asarray(new_bias).astype(dtype)])], idx
        return [(copy_layer(layer), layer.get_weights() or None)], idx

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
        return [(copy_layer(layer, dtype="float64"), weights or None)], idx

    return rebuild(model, step, dtype="float64")
