"""train: model structure, strategy choice, real training (also mirrored), DVCLive logs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from train2infer import config, distribute, models, training


def test_cnn_is_made_of_conv_bn_relu_blocks():
    import tf_keras as keras

    m = models.build_cnn((16, 16, 1), 10, filters=(8, 16), convs_per_stage=2, dense_units=0, dropout=0)
    kinds = [type(layer).__name__ for layer in m.layers]
    for i, kind in enumerate(kinds):
        if kind == "Conv2D":
            assert kinds[i + 1 : i + 3] == ["BatchNormalization", "ReLU"]
    assert kinds.count("Conv2D") == 4
    assert m.output_shape == (None, 10)
    assert all(layer.momentum == 0.9 for layer in m.layers if isinstance(layer, keras.layers.BatchNormalization))


def test_strategy_follows_the_visible_devices():
    import tensorflow as tf

    auto = distribute.select_strategy("auto")
    if tf.config.list_logical_devices("GPU"):
        assert auto.num_replicas_in_sync >= 1 and type(auto).__name__ != "_DefaultDistributionStrategy"
    else:
        assert auto.num_replicas_in_sync == 1
        assert distribute.describe(auto)["gpus_visible"] == 0
    mirrored = distribute.select_strategy("mirrored")
    assert mirrored.num_replicas_in_sync == 2  # two logical CPUs (conftest)


def test_mixed_precision_is_ignored_without_gpu():
    import tensorflow as tf
    import tf_keras as keras

    if tf.config.list_logical_devices("GPU"):
        pytest.skip("a GPU is visible: mixed precision applies")
    assert distribute.use_mixed_precision(True) is False
    assert keras.mixed_precision.global_policy().name == "float32"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["default", "mirrored"])
def test_training_learns_on_one_or_two_replicas(digits, tiny_cfg, kind):
    import tf_keras as keras

    splits, names = digits
    mcfg = config.section(tiny_cfg, "model")
    options = {k: v for k, v in config.as_dict(mcfg).items() if k != "name"}
    keras.utils.set_random_seed(1)
    strategy = distribute.select_strategy(kind)
    model, info = training.fit_classifier(
        lambda: models.build_model("cnn", splits["train"][0].shape[1:], len(names), 1, **options),
        strategy, splits["train"], splits["val"],
        epochs=12, batch_size=16, learning_rate=0.003, scale_learning_rate=True, seed=1, verbose=0,
    )
    assert info["replicas"] == strategy.num_replicas_in_sync
    assert info["global_batch_size"] == 16 * info["replicas"]
    assert info["learning_rate"] == pytest.approx(0.003 * info["replicas"])
    acc = training.accuracy(model, *splits["test"])
    assert acc > 0.8, acc  # chance is 0.1


def test_live_logger_writes_one_row_per_epoch(tmp_path, digits):
    from dvclive import Live

    splits, names = digits
    with Live(dir=str(tmp_path / "live"), dvcyaml=None, save_dvc_exp=False) as live:
        training.fit_classifier(
            lambda: models.build_cnn(splits["train"][0].shape[1:], 10, filters=(4,), dense_units=0),
            distribute.select_strategy("default"), splits["train"], splits["val"],
            epochs=2, batch_size=64, learning_rate=0.01, scale_learning_rate=False, seed=0,
            callbacks=[training.LiveLogger(live)], verbose=0,
        )
    rows = (tmp_path / "live" / "plots" / "metrics" / "val" / "accuracy.tsv").read_text().splitlines()
    assert rows[0].split("\t")[:2] == ["step", "accuracy"] or "step" in rows[0]
    assert len(rows) == 1 + 2
    summary = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert {"train", "val"} <= set(summary)
    assert not (tmp_path / "dvc.yaml").exists()


@pytest.mark.slow
def test_xla_jit_compiled_training_learns_like_the_default(digits, tiny_cfg):
    import tf_keras as keras

    splits, names = digits
    mcfg = config.section(tiny_cfg, "model")
    options = {k: v for k, v in config.as_dict(mcfg).items() if k != "name"}
    acc = {}
    for jit in (False, True):
        keras.utils.set_random_seed(3)
        model, _ = training.fit_classifier(
            lambda: models.build_model("cnn", splits["train"][0].shape[1:], len(names), 3, **options),
            distribute.select_strategy("default"), splits["train"], splits["val"],
            epochs=6, batch_size=16, learning_rate=0.003, scale_learning_rate=False, seed=3,
            jit_compile=jit, verbose=0,
        )
        assert model._jit_compile is jit
        acc[jit] = training.accuracy(model, *splits["test"])
    assert acc[True] > 0.8 and abs(acc[True] - acc[False]) < 0.08, acc


def test_mixed_precision_model_is_exported_as_float32(digits):
    """The GPU path: a mixed_float16 model is rebuilt in float32 with the same weights."""
    import tf_keras as keras

    splits, _ = digits
    shape = splits["train"][0].shape[1:]
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        mixed = models.build_cnn(shape, 10, filters=(8,), convs_per_stage=1, dense_units=8)
        assert mixed.layers[1].compute_dtype == "float16" and mixed.output.dtype == "float32"
        exported = training.as_float32(
            mixed, lambda: models.build_cnn(shape, 10, filters=(8,), convs_per_stage=1, dense_units=8))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert all(layer.compute_dtype == "float32" for layer in exported.layers if hasattr(layer, "compute_dtype"))
    assert all(np.array_equal(a, b) for a, b in zip(mixed.get_weights(), exported.get_weights()))
    x = splits["test"][0][:16].astype(np.float32) / 255
    np.testing.assert_allclose(exported.predict(x, verbose=0), mixed.predict(x, verbose=0), atol=5e-2)
