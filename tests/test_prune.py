"""prune: TF-MOT reaches its target per kernel; strip keeps predictions; bad schedules fail."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import random_images
from train2infer import Train2InferError, fit
from train2infer.core.params import ParamError
from train2infer.models import builders, io, work
from train2infer.prune import checks, tfmot
from train2infer.prune.config import schedule_steps


def test_schedule_end_lands_on_a_mask_update():
    begin, end = schedule_steps(100, 0.1, 0.65, 7)
    assert begin == 10 and (end - begin) % 7 == 0 and end <= 65 and end > 65 - 7


def test_tf_mot_default_frequency_is_refused_on_small_data():
    # TF-MOT's default frequency=100 would never update masks in 6 epochs x 40 steps x 0.6.
    with pytest.raises(ParamError, match="frequency=100 never updates"):
        schedule_steps(240, 0.0, 0.3, 100)


def _prune(model, x, y, target, frequency=4, epochs=3, batch=16, kind="polynomial_decay", **wrap_options):
    import tf_keras as keras

    from train2infer import distribute

    steps = epochs * int(np.ceil(len(x) / batch))
    begin, end = schedule_steps(steps, 0.0, 0.7, frequency)
    schedule = tfmot.make_schedule(kind, 0.0 if kind == "polynomial_decay" else target, target, begin, end, frequency)
    keras.utils.set_random_seed(0)
    wrapped, _ = fit.fit_classifier(
        lambda: tfmot.wrap(io.clone(model), schedule, **wrap_options),
        distribute.select_strategy("default"), (x, y), (x[:32], y[:32]),
        epochs=epochs, batch_size=batch, learning_rate=1e-3, scale_learning_rate=False, seed=0,
        callbacks=tfmot.callbacks(), verbose=0,
    )
    return wrapped


@pytest.mark.parametrize("target, kind", [(0.5, "polynomial_decay"), (0.85, "polynomial_decay"),
                                          (0.7, "constant_sparsity")])
def test_pruning_reaches_target_on_random_data(target, kind):
    x = random_images(160, 12)
    y = np.random.default_rng(0).integers(0, 4, 160)
    base = builders.build_cnn((12, 12, 1), 4, filters=(8, 16), convs_per_stage=1, dense_units=16)
    before = [w.copy() for w in base.get_weights()]
    stripped = tfmot.strip(_prune(base, x, y, target, kind=kind))
    per_kernel = work.kernel_sparsity(stripped)
    assert set(per_kernel) == {"s0c0_conv", "s1c0_conv", "hidden", "logits"}
    for name, s in per_kernel.items():
        assert abs(s - target) <= 0.01, (name, s)
    checks.check_sparsity(per_kernel, target, 0.01)
    # the wrapped copy never touched the original model's weights
    assert all(np.array_equal(a, b) for a, b in zip(before, base.get_weights()))


def test_stripped_model_predicts_like_the_pruned_one():
    x = random_images(96, 12, seed=1)
    y = np.random.default_rng(1).integers(0, 3, 96)
    base = builders.build_cnn((12, 12, 1), 3, filters=(8,), convs_per_stage=1, dense_units=8)
    wrapped = _prune(base, x, y, 0.6, epochs=2)
    stripped = tfmot.strip(wrapped)
    xf = x.astype(np.float32) / 255
    np.testing.assert_allclose(stripped.predict(xf, verbose=0), wrapped.predict(xf, verbose=0), atol=1e-5)
    assert len(stripped.layers) == len(base.layers)
    assert not any("prune_low_magnitude" in layer.name for layer in stripped.layers)


def test_check_sparsity_names_every_kernel_that_missed():
    with pytest.raises(Train2InferError, match=r"conv_a=0\.500.*dense_b=0\.700"):
        checks.check_sparsity({"conv_a": 0.5, "ok": 0.795, "dense_b": 0.7}, 0.8, 0.01)
    checks.check_sparsity({"ok": 0.79}, 0.8, 0.01)


# ---------------------------------------------------------------- patterns, policy, layer lists


def _tiny_cnn(classes=4, channels=1):
    return builders.build_cnn((12, 12, channels), classes, filters=(8, 16), convs_per_stage=1, dense_units=16)


def _data(n=160, classes=4, channels=1, seed=0):
    return random_images(n, 12, channels, seed=seed), np.random.default_rng(seed).integers(0, classes, n)


def test_m_by_n_pattern_holds_in_every_pruned_kernel():
    import tensorflow as tf
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_utils

    x, y = _data()
    stripped = tfmot.strip(_prune(_tiny_cnn(), x, y, 0.5, pattern="m_by_n", m_by_n=(2, 4), exclude=["s0c0_conv"]))
    per_kernel = work.kernel_sparsity(stripped)
    assert per_kernel["s0c0_conv"] < 0.1  # excluded: dense
    for name in ("s1c0_conv", "hidden", "logits"):
        kernel = stripped.get_layer(name).get_weights()[0]
        assert checks.m_by_n_violations(kernel, (2, 4)) == 0, name  # our own check, group by group
        assert pruning_utils.is_pruned_m_by_n(tf.constant(kernel), (2, 4)), name  # and TF-MOT's
        assert abs(per_kernel[name] - 0.5) <= 0.01, (name, per_kernel[name])
    dense = np.random.default_rng(0).normal(size=(3, 3, 8, 4)).astype(np.float32)
    assert checks.m_by_n_violations(dense, (2, 4)) == 3 * 3 * 4 * 2  # every group breaks it
    dense[..., 0:2, :] = 0  # two zeros in the first group of 4 input channels of every filter tap
    assert checks.m_by_n_violations(dense, (2, 4)) == 3 * 3 * 4


def test_block_pattern_zeroes_whole_blocks():
    x, y = _data()
    stripped = tfmot.strip(_prune(_tiny_cnn(), x, y, 0.5, pattern="block", block_size=(1, 4), exclude=["logits"]))
    for name in ("hidden",):
        k = stripped.get_layer(name).get_weights()[0]
        blocks = (k.reshape(-1, k.shape[-1]) == 0).reshape(-1, k.shape[-1] // 4, 4).sum(-1)
        assert set(np.unique(blocks)) <= {0, 4}, name  # a 1x4 block is all zero or all kept
        assert abs(np.mean(blocks == 4) - 0.5) <= 0.05, name
    sparsity = work.kernel_sparsity(stripped)
    assert sparsity["logits"] == 0.0  # excluded
    assert sparsity["s0c0_conv"] == sparsity["s1c0_conv"] == 0.0  # TF-MOT blocks: Dense kernels only


def test_include_exclude_and_policy_choose_the_wrapped_layers():
    schedule = tfmot.make_schedule("constant_sparsity", 0.5, 0.5, 0, 10, 1)

    def wrapped(model, **kw):
        return [layer.layer.name for layer in tfmot.wrap(io.clone(model), schedule, **kw).layers
                if tfmot.is_wrapper(layer)]

    cnn = _tiny_cnn()
    assert wrapped(cnn) == ["s0c0_conv", "s1c0_conv", "hidden", "logits"]
    assert wrapped(cnn, exclude=["s0c0_conv", "logits"]) == ["s1c0_conv", "hidden"]
    assert wrapped(cnn, include=["s*"]) == ["s0c0_conv", "s1c0_conv"]
    with pytest.raises(ParamError, match="'nothing\\*' matches no layer of the model"):
        wrapped(cnn, include=["nothing*"])  # a typo
    with pytest.raises(ParamError, match="'nothing' matches no layer of the model"):
        wrapped(cnn, exclude=["logits", "nothing"])
    with pytest.raises(ParamError, match="selects no prunable layer"):
        wrapped(cnn, include=["*_bn"])  # layers, but none TF-MOT prunes
    with pytest.raises(ParamError, match="policy=.xnnpack. does not fit model .cnn."):
        wrapped(cnn, policy="xnnpack")
    mobile = builders.build_mobilenet((16, 16, 3), 4, stem_filters=8, filters=(8, 16), blocks_per_stage=1)
    assert wrapped(mobile, policy="xnnpack") == ["s0b0_pw", "s1b0_pw"]  # only the 1x1 convolutions


def test_layers_left_dense_are_listed_with_the_reason():
    """Depthwise kernels (TF-MOT prunes none), excluded layers and the policy's choice are listed;
    BatchNorm is not (it has weights, but nothing to prune)."""
    schedule = tfmot.make_schedule("constant_sparsity", 0.5, 0.5, 0, 10, 1)
    mobile = builders.build_mobilenet((16, 16, 3), 4, stem_filters=8, filters=(8, 16), blocks_per_stage=1)
    wrapped = tfmot.wrap(io.clone(mobile), schedule, exclude=["logits"])
    assert tfmot.not_pruned(mobile, wrapped, exclude=["logits"]) == {
        "s0b0_dw": "TF-MOT prunes no weights of DepthwiseConv2D",
        "s1b0_dw": "TF-MOT prunes no weights of DepthwiseConv2D",
        "logits": "left out by prune.include / prune.exclude"}
    wrapped = tfmot.wrap(io.clone(mobile), schedule, policy="xnnpack")
    why = tfmot.not_pruned(mobile, wrapped)["stem_conv"]
    assert why == "not chosen by the pattern or policy, or TF-MOT cannot wrap it"


@pytest.mark.slow
def test_prune_run_meets_its_target_and_writes_its_reports(tmp_path, tiny, prepared, trained_file):
    import json

    from train2infer.prune.run import run

    result = run(tiny.prune, tiny.train, tiny.seed, prepared, trained_file, tmp_path / "p.keras", tmp_path / "r")
    pruned = io.load_model(tmp_path / "p.keras")
    per_kernel = work.kernel_sparsity(pruned)
    assert result["per_kernel"] == {n: s for n, s in per_kernel.items() if n in result["per_kernel"]}
    assert all(abs(s - 0.8) <= 0.01 for s in result["per_kernel"].values()), result["per_kernel"]
    summary = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert summary["target_sparsity"] == 0.8 and summary["min_kernel_sparsity"] >= 0.79
    assert np.isclose(summary["sparsity"], work.overall_sparsity(pruned))
    assert summary["macs_nonzero"] < 0.3 * summary["macs_dense"]
    rows = json.loads((tmp_path / "r" / "sparsity.json").read_text())
    assert [r["layer"] for r in rows["pruned"]] == list(result["per_kernel"])
