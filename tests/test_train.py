"""train: model structure, strategy choice, real training (also mirrored), DVCLive logs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from train2infer import distribute, fit
from train2infer.models import builders, config as model_config


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
def test_training_learns_on_one_or_two_replicas(digits, tiny, kind):
    import tf_keras as keras

    splits, names = digits
    options = model_config.options(tiny.model)
    keras.utils.set_random_seed(1)
    strategy = distribute.select_strategy(kind)
    model, info = fit.fit_classifier(
        lambda: builders.build_model("cnn", splits["train"][0].shape[1:], len(names), 1, **options),
        strategy, splits["train"], splits["val"],
        epochs=12, batch_size=16, learning_rate=0.003, scale_learning_rate=True, seed=1, verbose=0,
    )
    assert info["replicas"] == strategy.num_replicas_in_sync
    assert info["global_batch_size"] == 16 * info["replicas"]
    assert info["learning_rate"] == pytest.approx(0.003 * info["replicas"])
    acc = fit.accuracy(model, *splits["test"])
    # chance is 0.1; 12 epochs end between 0.80 and 0.95 depending on the CPU's float rounding (CI
    # once gave 0.799), so the bar says "learns", not "reaches a given score"
    assert acc > 0.6, acc


def test_live_logger_writes_one_row_per_epoch(tmp_path, digits):
    from dvclive import Live

    splits, names = digits
    with Live(dir=str(tmp_path / "live"), dvcyaml=None, save_dvc_exp=False) as live:
        fit.fit_classifier(
            lambda: builders.build_cnn(splits["train"][0].shape[1:], 10, filters=(4,), dense_units=0),
            distribute.select_strategy("default"), splits["train"], splits["val"],
            epochs=2, batch_size=64, learning_rate=0.01, scale_learning_rate=False, seed=0,
            callbacks=[fit.LiveLogger(live)], verbose=0,
        )
    rows = (tmp_path / "live" / "plots" / "metrics" / "val" / "accuracy.tsv").read_text().splitlines()
    assert rows[0].split("\t")[:2] == ["step", "accuracy"] or "step" in rows[0]
    assert len(rows) == 1 + 2
    summary = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert {"train", "val"} <= set(summary)
    assert not (tmp_path / "dvc.yaml").exists()


@pytest.mark.slow
def test_xla_jit_compiled_training_learns_like_the_default(digits, tiny):
    import tf_keras as keras
    from tensorflow.python.framework import config as tf_config

    splits, names = digits
    options = model_config.options(tiny.model)
    acc = {}
    tf_config.disable_op_determinism()  # XLA has no deterministic MaxPool gradient (see config)
    try:
        for jit in (False, True):  # 10 epochs: both converged, so seeds and thread counts matter little
            keras.utils.set_random_seed(3)
            model, _ = fit.fit_classifier(
                lambda: builders.build_model("cnn", splits["train"][0].shape[1:], len(names), 3, **options),
                distribute.select_strategy("default"), splits["train"], splits["val"],
                epochs=10, batch_size=16, learning_rate=0.003, scale_learning_rate=False, seed=3,
                jit_compile=jit, verbose=0,
            )
            assert model._jit_compile is jit
            acc[jit] = fit.accuracy(model, *splits["test"])
    finally:
        tf_config.enable_op_determinism()  # process-wide: later tests in this process expect it
    assert acc[True] > 0.8 and abs(acc[True] - acc[False]) < 0.08, acc


def test_mixed_precision_model_is_exported_as_float32(digits):
    """The GPU path: a mixed_float16 model is rebuilt in float32 with the same weights."""
    import tf_keras as keras

    splits, _ = digits
    shape = splits["train"][0].shape[1:]
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        mixed = builders.build_cnn(shape, 10, filters=(8,), convs_per_stage=1, dense_units=8)
        assert mixed.layers[1].compute_dtype == "float16" and mixed.output.dtype == "float32"
        exported = fit.as_float32(
            mixed, lambda: builders.build_cnn(shape, 10, filters=(8,), convs_per_stage=1, dense_units=8))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert all(layer.compute_dtype == "float32" for layer in exported.layers if hasattr(layer, "compute_dtype"))
    assert all(np.array_equal(a, b) for a, b in zip(mixed.get_weights(), exported.get_weights()))
    x = splits["test"][0][:16].astype(np.float32) / 255
    np.testing.assert_allclose(exported.predict(x, verbose=0), mixed.predict(x, verbose=0), atol=5e-2)


def test_make_dataset_scales_and_batches():
    x = np.full((10, 4, 4, 1), 255, np.uint8)
    batches = list(fit.make_dataset(x, np.arange(10), 4, shuffle=True, seed=0))
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    assert float(batches[0][0].numpy().max()) == 1.0
    assert sorted(np.concatenate([b[1].numpy() for b in batches]).tolist()) == list(range(10))


@pytest.mark.slow
def test_train_run_writes_the_model_and_every_declared_report(tmp_path, tiny, prepared):
    """train.run: model, DVCLive curves and throughput.json (all three declared in dvc.yaml)."""
    from train2infer.models.io import load_model
    from train2infer.train.run import run

    result = run(tiny.model, tiny.train, tiny.seed, prepared, tmp_path / "m.keras", tmp_path / "r", tmp_path / "b")
    assert result["chief"] and result["epochs"] == 3 and result["replicas"] == 1
    model = load_model(tmp_path / "m.keras")
    assert fit.accuracy(model, *__import__("train2infer.prepared", fromlist=["x"]).load_prepared(prepared, "val")) \
        == pytest.approx(result["val_accuracy"])
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["step"] == 2 and metrics["val_accuracy_inference"] == pytest.approx(result["val_accuracy"])
    speed = json.loads((tmp_path / "r" / "throughput.json").read_text())
    assert speed["images_per_second"] > 0 and speed["input_images_per_second"] > speed["images_per_second"]
    assert speed["train_seconds"] > 0
    assert not [k for k in metrics if "second" in k]  # timings live in throughput.json only
    rows = (tmp_path / "r" / "plots" / "metrics" / "train" / "accuracy.tsv").read_text().splitlines()
    assert len(rows) == 1 + 3
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())  # backup removed on success


@pytest.mark.slow
def test_early_stopping_restores_the_epoch_with_the_lowest_validation_loss(tmp_path, tiny, prepared):
    """train.patience=1 with a learning rate high enough to overshoot: training stops before
    train.epochs, and the saved model is the best epoch's (its validation loss is the lowest logged)."""
    import dataclasses

    import tf_keras as keras

    from train2infer.core import live
    from train2infer.models.io import load_model
    from train2infer.prepared import load_prepared, to_float
    from train2infer.train.run import run

    cfg = dataclasses.replace(tiny.train, epochs=30, patience=1, learning_rate=0.02)
    result = run(tiny.model, cfg, tiny.seed, prepared, tmp_path / "m.keras", tmp_path / "r", tmp_path / "b")
    losses = [v for _, v in live.series(tmp_path / "r", "val", "loss")]
    assert result["epochs_run"] == len(losses) < 30
    assert result["best_epoch"] == int(np.argmin(losses)) and result["best_epoch"] < len(losses) - 1
    x, y = load_prepared(prepared, "val")
    logits = load_model(tmp_path / "m.keras")(to_float(x))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits)
    assert float(loss) == pytest.approx(min(losses), rel=1e-3)
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["best_epoch"] == result["best_epoch"]


@pytest.mark.slow
def test_a_users_model_file_is_fine_tuned_with_epochs(tmp_path, tiny, prepared, trained_file):
    """model=file with train.epochs > 0: the same graph, trained further from the file's weights."""
    import dataclasses

    from helpers import TINY, params
    from train2infer.models.io import load_model
    from train2infer.train.run import run

    p = params([o for o in TINY if not o.startswith("model.")] + ["model=file", f"model.path={trained_file}"])
    cfg = dataclasses.replace(p.train, epochs=1, learning_rate=1e-4)
    result = run(p.model, cfg, p.seed, prepared, tmp_path / "m.keras", tmp_path / "r", tmp_path / "b")
    before, after = load_model(trained_file), load_model(tmp_path / "m.keras")
    assert [layer.name for layer in after.layers] == [layer.name for layer in before.layers]
    assert result["epochs_run"] == 1 and result["notes"] == []
    changed = [not np.array_equal(a, b) for a, b in zip(before.get_weights(), after.get_weights())]
    assert any(changed)
    assert result["val_accuracy"] > 0.8  # started from the trained weights, not from scratch (1 epoch)
