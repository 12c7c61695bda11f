"""TF-MOT magnitude pruning: the schedule, which layers are wrapped, and stripping the wrappers."""

from __future__ import annotations

import fnmatch
from typing import Sequence

import tensorflow_model_optimization as tfmot
import tf_keras as keras

from train2infer.core.params import ParamError, check_patterns

# Layers whose kernel TF-MOT prunes (SeparableConv2D: the pointwise kernel; Conv2DTranspose is a Conv2D);
# its registry lists DepthwiseConv2D with no prunable weights.
PRUNABLE_KERNELS = (keras.layers.Conv2D, keras.layers.SeparableConv2D, keras.layers.Dense)
NORMALISATION = (keras.layers.BatchNormalization, keras.layers.LayerNormalization, keras.layers.Normalization)


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


def selected(layer, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> bool:
    """Whether ``layer`` is a prunable kernel layer named by ``include`` and not by ``exclude``.

    Patterns are fnmatch-style layer names (``s0*``, ``logits``); an empty ``include``
    selects every prunable layer.
    """
    if not isinstance(layer, PRUNABLE_KERNELS):
        return False
    if include and not any(fnmatch.fnmatchcase(layer.name, p) for p in include):
        return False
    return not any(fnmatch.fnmatchcase(layer.name, p) for p in exclude)


def wrap(
    model: keras.Model,
    schedule,
    pattern: str = "unstructured",
    m_by_n: Sequence[int] = (2, 4),
    block_size: Sequence[int] = (1, 4),
    policy: str = "none",
    include: Sequence[str] = (), exclude: Sequence[str] = (),
) -> keras.Model:
    """Wrap the selected prunable layers of ``model`` with TF-MOT's ``PruneLowMagnitude``
    (a layer TF-MOT cannot wrap stays as it is; :func:`not_pruned` lists it). The wrapped
    model shares layers with ``model``: pass a fresh load or a copy, never one you still use.

    Args:
        model: A functional model.
        schedule: From :func:`make_schedule`.
        pattern: ``unstructured``; ``m_by_n`` (``m`` zeros in every ``n`` consecutive
            input-channel weights, TF-MOT's ``sparsity_m_by_n``; the schedule's sparsity
            is then ``m / n``); ``block`` (``block_size`` blocks zeroed together; TF-MOT
            supports it for Dense kernels only, so convolutions stay dense).
        m_by_n: ``(m, n)`` for ``m_by_n``.
        block_size: ``(rows, cols)`` of the kernel reshaped to 2-D, for ``block``.
        policy: ``none``, or ``xnnpack``: TF-MOT's ``PruneForLatencyOnXNNPack`` (only
            1x1 convolutions of a subgraph XNNPACK's sparse kernels accept).
        include: Layer-name patterns to prune (empty: all prunable layers).
        exclude: Layer-name patterns to leave dense.

    Raises:
        ParamError: If the policy rejects the model, nothing is selected, or a pattern matches no layer.
    """
    params = {"pruning_schedule": schedule}
    if pattern == "m_by_n":
        params["sparsity_m_by_n"] = tuple(int(v) for v in m_by_n)
    elif pattern == "block":
        params["block_size"] = tuple(int(v) for v in block_size)
    chooser, names = policy_chooser(policy, model), [layer.name for layer in model.layers]
    check_patterns("include", include, names), check_patterns("exclude", exclude, names)  # typos are errors

    def choose(layer):
        if pattern == "block" and not isinstance(layer, keras.layers.Dense):
            return False  # TF-MOT's block sparsity takes 2-D kernels only
        return selected(layer, include, exclude) and (chooser is None or chooser.allow_pruning(layer))

    chosen = [layer.name for layer in model.layers if choose(layer)]
    if not chosen:
        raise ParamError("include", list(include), f"with exclude={list(exclude)} selects no prunable "
                         f"layer of {model.name!r}")

    def clone_function(layer):
        if not choose(layer):
            return layer
        try:
            return tfmot.sparsity.keras.prune_low_magnitude(layer, **params)
        except ValueError as exc:
            if pattern == "m_by_n":
                raise ParamError("pattern", pattern, f"cannot prune layer {layer.name}: "
                                 f"{str(exc).splitlines()[0]} (leave it out with exclude)") from None
            return layer  # listed by not_pruned()

    return keras.models.clone_model(model, clone_function=clone_function)


def not_pruned(model: keras.Model, wrapped: keras.Model, include: Sequence[str] = (),
               exclude: Sequence[str] = ()) -> dict[str, str]:
    """Every layer of ``model`` with a kernel that ``wrapped`` does not prune, and why.

    Args:
        model: The model before wrapping.
        wrapped: The result of :func:`wrap`.
        include: As given to :func:`wrap`.
        exclude: As given to :func:`wrap`.
    """
    done = {layer.layer.name for layer in wrapped.layers if is_wrapper(layer)}
    why = {}
    for layer in model.layers:
        if layer.name in done or not layer.weights or isinstance(layer, NORMALISATION):
            continue
        if not isinstance(layer, PRUNABLE_KERNELS):
            why[layer.name] = f"TF-MOT prunes no weights of {type(layer).__name__}"
        elif not selected(layer, include, exclude):
            why[layer.name] = "left out by prune.include / prune.exclude"
        else:
            why[layer.name] = "not chosen by the pattern or policy, or TF-MOT cannot wrap it"
    return why


def policy_chooser(policy: str, model: keras.Model):
    """TF-MOT's ``PruneForLatencyOnXNNPack`` for ``policy=xnnpack`` (checked against the
    model), or None.

    Raises:
        ParamError: If the model does not have the structure the policy needs.
    """
    if policy != "xnnpack":
        return None
    chooser = tfmot.sparsity.keras.PruneForLatencyOnXNNPack()
    try:
        chooser.ensure_model_supports_pruning(model)
    except ValueError as exc:
        raise ParamError("policy", policy, f"does not fit model {model.name!r}: {exc} "
                         "(use model=mobilenet with prepare.channels=3)") from None
    return chooser


def is_wrapper(layer) -> bool:
    """Whether ``layer`` is TF-MOT's pruning wrapper."""
    from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import PruneLowMagnitude

    return isinstance(layer, PruneLowMagnitude)


def callbacks() -> list[keras.callbacks.Callback]:
    """Callbacks fine-tuning needs (``UpdatePruningStep``; no TensorBoard summaries)."""
    return [tfmot.sparsity.keras.UpdatePruningStep()]


def strip(model: keras.Model) -> keras.Model:
    """Remove the pruning wrappers, keeping the masked (zeroed) weights."""
    return tfmot.sparsity.keras.strip_pruning(model)
