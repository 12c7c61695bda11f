"""Loading and saving tf_keras models: one clear error for a missing or corrupt file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tf_keras as keras

from train2infer import Train2InferError


def load_model(path) -> keras.Model:
    """Load a saved ``.keras`` model, turning a missing or corrupt file into one clear error."""
    p = Path(path)
    if not p.is_file():
        raise Train2InferError(f"model not found: {p}")
    try:
        return keras.models.load_model(p, compile=False)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise Train2InferError(f"cannot load model {p}: {first}") from None


def clone(model: keras.Model) -> keras.Model:
    """An independent copy (new layers, same weights): never wrap a model you still use."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def save_for_inference(model: keras.Model, path) -> None:
    """Save weights and architecture only (no optimizer state) as a ``.keras`` file.

    The native format has no ``include_optimizer`` switch, so an uncompiled clone is
    saved; sizes reported for the Keras baseline are therefore weights, not Adam slots.
    """
    clone(model).save(path)


def same_weights(a: keras.Model, b: keras.Model) -> bool:
    """Whether two models have the same weight shapes and values."""
    wa, wb = a.get_weights(), b.get_weights()
    return len(wa) == len(wb) and all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(wa, wb))
