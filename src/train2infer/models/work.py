"""What a model computes: its kernels, their sparsity, and multiply-adds per layer.

One walk over the kernel layers (:func:`kernels`) serves every count here. Wrapped layers
(TF-MOT's pruning wrapper) are seen through to their inner layer.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import tf_keras as keras

L = keras.layers
KERNEL_LAYERS = (L.Conv2D, L.Dense, L.DepthwiseConv2D)  # SeparableConv2D and Conv2DTranspose are Conv2D subclasses


def kernels(model: keras.Model) -> Iterator[tuple[L.Layer, L.Layer, np.ndarray]]:
    """``(layer in the model, inner layer, kernel)`` for every Conv2D, DepthwiseConv2D and Dense."""
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        if isinstance(inner, KERNEL_LAYERS):
            kernel = inner.depthwise_kernel if isinstance(inner, L.DepthwiseConv2D) else inner.kernel
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


def layer_macs(model: keras.Model) -> list[dict]:
    """Multiply-adds per kernel layer for one input image.

    Returns:
        One dict per layer: ``layer``, ``type``, ``macs`` (dense count) and ``nonzero``
        (fraction of non-zero kernel weights, so ``macs * nonzero`` is the work a sparse
        kernel would have to do).
    """
    rows = []
    for layer, inner, k in kernels(model):
        out_shape = layer.output_shape
        if isinstance(inner, L.DepthwiseConv2D):
            _, h, w, c_out = out_shape
            macs = h * w * c_out * k.shape[0] * k.shape[1]
        elif isinstance(inner, L.Conv2D):
            _, h, w, c_out = out_shape
            macs = h * w * c_out * k.shape[0] * k.shape[1] * k.shape[2] // getattr(inner, "groups", 1)
        else:  # Dense
            positions = int(np.prod(out_shape[1:-1])) if len(out_shape) > 2 else 1
            macs = positions * k.shape[0] * k.shape[1]
        rows.append({"layer": inner.name, "type": type(inner).__name__, "macs": int(macs),
                     "nonzero": float(np.count_nonzero(k) / k.size)})
    return rows


def total_macs(rows: list[dict], nonzero: bool = False) -> float:
    """Sum of :func:`layer_macs` rows: dense multiply-adds, or with ``nonzero`` those on
    non-zero weights (the work a sparse kernel would do)."""
    return sum(r["macs"] * (r["nonzero"] if nonzero else 1) for r in rows)


def summary(model: keras.Model) -> dict:
    """Work and sparsity of a model, as the export manifest records them per source."""
    rows = layer_macs(model)
    return {"macs": int(total_macs(rows)), "macs_nonzero": round(total_macs(rows, nonzero=True)),
            "sparsity": overall_sparsity(model), "params": int(model.count_params())}
