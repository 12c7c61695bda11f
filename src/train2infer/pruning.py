"""Magnitude pruning with TF-MOT, and measuring what it achieved."""

from __future__ import annotations

import numpy as np
import tensorflow_model_optimization as tfmot
import tf_keras as keras

from train2infer import Train2InferError
from train2infer.config import ConfigError

PRUNABLE_KERNELS = (keras.layers.Conv2D, keras.layers.Dense, keras.layers.DepthwiseConv2D)


def schedule_steps(
    total_steps: int, begin_fraction: float, end_fraction: float, frequency: int
) -> tuple[int, int]:
    """Begin and end steps of a pruning schedule, with the end on a mask-update step.

    TF-MOT updates masks only on steps where ``(step - begin) % frequency == 0``; an end
    step between two updates means the final sparsity is never applied, and a frequency
    larger than the schedule means masks are never updated at all.

    Args:
        total_steps: Fine-tuning steps (epochs x steps per epoch).
        begin_fraction: Start of the schedule as a fraction of ``total_steps``.
        end_fraction: End of the schedule as a fraction of ``total_steps``.
        frequency: Steps between mask updates.

    Returns:
        ``(begin_step, end_step)`` with ``end_step - begin_step`` a positive multiple of
        ``frequency`` and ``end_step < total_steps``.

    Raises:
        ConfigError: If no mask update fits between begin and end.
    """
    begin = int(round(begin_fraction * total_steps))
    end_target = min(int(round(end_fraction * total_steps)), total_steps - 1)
    updates = (end_target - begin) // frequency
    if updates < 1:
        raise ConfigError(
            f"params: prune.frequency={frequency} never updates the pruning masks: the schedule "
            f"spans only {max(end_target - begin, 0)} of {total_steps} fine-tuning steps "
            "(lower prune.frequency or raise prune.epochs / prune.end_fraction)"
        )
    return begin, begin + updates * frequency


def make_schedule(
    kind: str, initial_sparsity: float, final_sparsity: float, begin_step: int, end_step: int, frequency: int
) -> tfmot.sparsity.keras.PruningSchedule:
    """A TF-MOT pruning schedule: ``polynomial_decay`` or ``constant_sparsity``."""
    if kind == "polynomial_decay":
        return tfmot.sparsity.keras.PolynomialDecay(
            initial_sparsity=initial_sparsity,
            final_sparsity=final_sparsity,
            begin_step=begin_step,
            end_step=end_step,
            frequency=frequency,
        )
    if kind == "constant_sparsity":
        return tfmot.sparsity.keras.ConstantSparsity(
            final_sparsity, begin_step=begin_step, end_step=end_step, frequency=frequency
        )
    raise ValueError(f"unknown pruning schedule {kind!r}")


def wrap(model: keras.Model, schedule) -> keras.Model:
    """Wrap every prunable layer of ``model`` with ``prune_low_magnitude``.

    The wrapped model shares layers with ``model``: pass a model loaded from disk or a
    :func:`train2infer.models.clone`, never one you still use.
    """
    return tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)


def callbacks() -> list[keras.callbacks.Callback]:
    """Callbacks fine-tuning needs (``UpdatePruningStep``; no TensorBoard summaries)."""
    return [tfmot.sparsity.keras.UpdatePruningStep()]


def strip(model: keras.Model) -> keras.Model:
    """Remove the pruning wrappers, keeping the masked (zeroed) weights."""
    return tfmot.sparsity.keras.strip_pruning(model)


def kernel_sparsity(model: keras.Model) -> dict[str, float]:
    """Fraction of exact zeros in each Conv2D / Dense / DepthwiseConv2D kernel.

    Works on stripped and unpruned models (wrapped layers are measured through their
    inner layer).
    """
    result = {}
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        if isinstance(inner, PRUNABLE_KERNELS):
            kernel = inner.depthwise_kernel if isinstance(inner, keras.layers.DepthwiseConv2D) else inner.kernel
            k = np.asarray(kernel.numpy() if hasattr(kernel, "numpy") else kernel)
            result[inner.name] = float(np.mean(k == 0))
    return result


def overall_sparsity(model: keras.Model) -> float:
    """Zeros over all Conv2D / Dense / DepthwiseConv2D kernel weights, weighted by size."""
    zeros = total = 0
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        if isinstance(inner, PRUNABLE_KERNELS):
            kernel = inner.depthwise_kernel if isinstance(inner, keras.layers.DepthwiseConv2D) else inner.kernel
            k = np.asarray(kernel.numpy())
            zeros += int(np.sum(k == 0))
            total += k.size
    return zeros / total if total else 0.0


def check_sparsity(per_kernel: dict[str, float], target: float, tolerance: float) -> None:
    """Fail if any pruned kernel is more than ``tolerance`` below ``target``.

    Raises:
        Train2InferError: Naming every kernel that missed, with its sparsity.
    """
    if not per_kernel:
        raise Train2InferError("pruning found no prunable kernels in the model")
    missed = {name: s for name, s in per_kernel.items() if s < target - tolerance}
    if missed:
        detail = ", ".join(f"{n}={s:.3f}" for n, s in missed.items())
        raise Train2InferError(
            f"pruning missed prune.final_sparsity={target} by more than {tolerance}: {detail}"
        )
