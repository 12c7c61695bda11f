"""Graph surgery on any functional tf_keras model: config-level edits, BatchNorm folding, float64 copies.

Each rebuilds a new Keras model from the functional model's config (:func:`edit`), so it works
on any graph: residual adds, concatenations, squeeze-excite multiplies. Channel slicing, which
builds on the same edit, lives in :mod:`train2infer.models.groups`.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import tf_keras as keras

from train2infer.models.rules import rule_for

L = keras.layers


def bn_weights(bn: L.BatchNormalization) -> dict[str, np.ndarray]:
    """``gamma`` (if scaled), ``beta`` (if centred), ``moving_mean``, ``moving_variance``."""
    return dict(zip([v.name.split("/")[-1].split(":")[0] for v in bn.weights], bn.get_weights()))


def bn_scale(bn: L.BatchNormalization) -> np.ndarray:
    """What inference-mode BatchNorm multiplies each channel by: ``gamma / sqrt(var + eps)``."""
    w = bn_weights(bn)
    gamma = w.get("gamma", np.ones_like(w["moving_variance"]))
    return gamma / np.sqrt(w["moving_variance"] + bn.epsilon)


# --------------------------------------------------------------------------- any functional graph


def by_length(layers) -> list[str]:
    """The names of ``layers``, longest first, for :func:`owner`."""
    return sorted((layer.name for layer in layers), key=len, reverse=True)


def owner(path: str, names: list[str]) -> str | None:
    """The layer whose name scope ``path`` (an op or tensor name without the model's scope)
    lies in. Layer names may hold ``/`` (``expanded_conv/squeeze_excite/Mul``), so ``names``
    (from :func:`by_length`) is tried longest first."""
    path += "/"
    return next((n for n in names if path.startswith(n + "/")), None)


def functional(model: keras.Model) -> keras.Model:
    """The model as a functional graph (a built ``Sequential`` becomes one over the same layers)."""
    if isinstance(model, keras.Sequential):
        return keras.Model(model.inputs, model.outputs, name=model.name)
    return model


def refs(tree) -> Iterator[list]:
    """Every ``[layer name, node index, tensor index, ...]`` reference in a config's ``inbound_nodes``."""
    if isinstance(tree, dict):
        for value in tree.values():
            yield from refs(value)
    elif isinstance(tree, (list, tuple)):
        if len(tree) >= 3 and isinstance(tree[0], str) and isinstance(tree[1], int) and isinstance(tree[2], int):
            yield tree
        else:
            for item in tree:
                yield from refs(item)


def _rewire(tree, drop: dict[str, str]):
    """``tree`` with references to dropped layers pointing at their replacement's output."""
    if isinstance(tree, dict):
        return {k: _rewire(v, drop) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        if len(tree) >= 3 and isinstance(tree[0], str) and tree[0] in drop and isinstance(tree[1], int):
            target = tree[0]
            while target in drop:
                target = drop[target]
            return [target, 0, 0, *tree[3:]]
        return [_rewire(item, drop) for item in tree]
    return tree


def wiring(model: keras.Model) -> tuple[dict[str, list[str]], dict[str, list[str]], dict[str, int]]:
    """From the model's config: each layer's input layers, consumer layers, and number of calls."""
    inputs, consumers, calls = {}, {}, {}
    for entry in model.get_config()["layers"]:
        name = entry["name"]
        calls[name] = len(entry["inbound_nodes"])
        inputs[name] = [r[0] for r in refs(entry["inbound_nodes"])]
        for src in inputs[name]:
            consumers.setdefault(src, []).append(name)
    return inputs, consumers, calls


def edit(model: keras.Model, drop: dict[str, str] | None = None, configs: dict[str, dict] | None = None,
         weights: dict[str, list] | None = None, dtype: str | None = None, input_shape=None) -> keras.Model:
    """Rebuild a functional model from its config, with changes.

    Args:
        model: A functional (or Sequential) tf_keras model.
        drop: ``{layer: replacement}``: the layer goes, and whatever read its output reads
            the replacement's (a single-call layer) instead.
        configs: ``{layer: config changes}``.
        weights: ``{layer: weights}``; every other layer keeps its own.
        dtype: Compute in this dtype everywhere (weights are cast).
        input_shape: New ``(height, width, channels)`` of the single input.

    Returns:
        A new model; layer names are kept.
    """
    model, drop, configs, weights = functional(model), drop or {}, configs or {}, weights or {}
    cfg = model.get_config()
    kept = []
    for entry in cfg["layers"]:
        if entry["name"] in drop:
            continue
        entry["inbound_nodes"] = _rewire(entry["inbound_nodes"], drop)
        entry.pop("build_config", None)  # each layer is built by its call, on its (maybe new) input shape
        entry["config"].update(configs.get(entry["name"], {}))
        if dtype:
            entry["config"]["dtype"] = dtype
        if input_shape is not None and entry["class_name"] == "InputLayer":
            entry["config"]["batch_input_shape"] = [None, *input_shape]
        kept.append(entry)
    cfg["layers"], cfg["output_layers"] = kept, _rewire(cfg["output_layers"], drop)
    with keras.utils.custom_object_scope({type(layer).__name__: type(layer) for layer in model.layers}):
        new = keras.Model.from_config(cfg)
    for layer in new.layers:
        values = weights.get(layer.name)
        values = model.get_layer(layer.name).get_weights() if values is None else values
        if values:
            layer.set_weights([np.asarray(v, dtype=dtype) if dtype else v for v in values])
    return new


# --------------------------------------------------------------------------- folding


def fold_batchnorm(model: keras.Model) -> keras.Model:
    """Fold every BatchNorm into the convolution feeding it, and a ReLU after it into the conv.

    ``Conv2D(no bias) -> BatchNormalization -> ReLU`` becomes one ``Conv2D(bias,
    activation="relu")`` with ``kernel * s`` and ``bias = beta + (b - mean) * s``, ``s =
    gamma / sqrt(var + eps)`` (inference mode). Depthwise convolutions fold the same way.
    Works on any functional graph: a BatchNorm folds when its input is a linear Conv2D /
    DepthwiseConv2D whose only consumer it is (both called once); every reader of the
    BatchNorm's output then reads the conv's. A ReLU folds too when it is the BatchNorm's
    only consumer.

    Returns:
        A model with fewer layers computing the same function in inference mode.
    """
    model = functional(model)
    inputs, consumers, calls = wiring(model)
    drop, configs, weights = {}, {}, {}
    for bn in model.layers:
        src = _foldable_source(model, bn, inputs, consumers, calls)
        if src is None:
            continue
        drop[bn.name] = src.name
        activation = "linear"
        after = consumers.get(bn.name, [])
        if len(after) == 1 and calls[after[0]] == 1 and _is_plain_relu(model.get_layer(after[0])):
            activation, drop[after[0]] = "relu", src.name
        configs[src.name] = {"use_bias": True, "activation": activation}
        weights[src.name] = _folded_weights(src, bn)
    return edit(model, drop, configs, weights)


def _foldable_source(model, bn, inputs, consumers, calls):
    """The convolution ``bn`` folds into, or None."""
    if not isinstance(bn, L.BatchNormalization) or calls.get(bn.name) != 1 or len(inputs[bn.name]) != 1:
        return None
    axis = bn.axis[0] if isinstance(bn.axis, (list, tuple)) else bn.axis
    src = model.get_layer(inputs[bn.name][0])
    rule = rule_for(src)
    if rule is None or not rule.folds_bn or axis not in (-1, len(src.output_shape) - 1) or calls[src.name] != 1 \
            or consumers.get(src.name) != [bn.name] or src.get_config().get("activation") != "linear":
        return None
    return src


def _folded_weights(conv, bn) -> list[np.ndarray]:
    w = conv.get_weights()
    kernel, bias = w[0], (w[1] if len(w) > 1 else 0.0)
    s = bn_scale(bn)
    if rule_for(conv).channels == "depthwise":  # kernel (kh, kw, C, mult); output channel = c * mult + m
        kernel = kernel * s.reshape(1, 1, kernel.shape[2], kernel.shape[3])
    else:
        kernel = kernel * s
    new_bias = bn_weights(bn).get("beta", 0.0) + (bias - bn_weights(bn)["moving_mean"]) * s
    dtype = w[0].dtype  # float32, or float64 when checking that the fold is exact
    return [kernel.astype(dtype), np.asarray(new_bias).astype(dtype)]


def _is_plain_relu(layer) -> bool:
    if isinstance(layer, L.ReLU):
        cfg = layer.get_config()
        return not cfg.get("max_value") and not cfg.get("negative_slope") and not cfg.get("threshold")
    return isinstance(layer, L.Activation) and layer.get_config().get("activation") == "relu"


def to_float64(model: keras.Model) -> keras.Model:
    """The same model computing in float64 (to check a rewrite is exact, not just close).

    Float32 results of two equivalent models differ by rounding, which grows with the
    magnitude of the outputs; in float64 an exact rewrite agrees to ~1e-12.
    """
    return edit(model, dtype="float64")
