"""Stage scripts on bad files: one `error:` line naming the culprit, exit 2, no outputs."""

from __future__ import annotations

import pytest

from helpers import TINY, assert_clean_failure, run_stage, write_params


def test_train_on_missing_prepared_data(workdir):
    args = ["--data", "nowhere", "--model", "out/m.keras", "--reports", "out/r", "--backup", "out/b"]
    proc = run_stage("train", args, workdir)
    assert_clean_failure(proc, workdir, "nowhere")


def test_train_on_corrupt_prepared_data(workdir, tmp_path):
    bad = tmp_path / "prepared"
    bad.mkdir()
    (bad / "meta.json").write_text((workdir / "prepared" / "meta.json").read_text())
    (bad / "train.npz").write_bytes(b"PK\x03\x04 truncated")
    proc = run_stage("train", ["--data", str(bad), "--model", "out/m.keras", "--reports", "out/r", "--backup", "out/b"],
                     workdir)
    assert_clean_failure(proc, workdir, "corrupt", "train.npz")


def test_shrink_on_missing_model(workdir):
    proc = run_stage("shrink", ["--data", "prepared", "--model-in", "gone.keras", "--model-out", "out/s.keras",
                                "--reports", "out/r"], workdir)
    assert_clean_failure(proc, workdir, "model not found", "gone.keras")


def test_convert_on_corrupt_model(workdir):
    (workdir / "bad.keras").write_bytes(b"not a keras file")
    args = ["--data", "prepared", "--trained", "bad.keras", "--shrunk", "trained.keras", "--pruned", "trained.keras",
            "--scratch", "trained.keras", "--out", "out/export", "--summary", "out/summary.json"]
    assert_clean_failure(run_stage("convert", args, workdir), workdir, "bad.keras")


def test_evaluate_on_missing_export(workdir):
    args = ["--data", "prepared", "--baseline", "trained.keras", "--export", "no_export", "--out", "out/eval"]
    assert_clean_failure(run_stage("evaluate", args, workdir), workdir, "export manifest not found", "no_export")


def test_report_on_missing_reports(workdir):
    proc = run_stage("report", ["--reports", "no_reports", "--out", "out/report"], workdir)
    assert_clean_failure(proc, workdir, "not found", "no_reports")


@pytest.mark.slow
def test_prune_with_a_frequency_that_never_updates_masks(workdir, tmp_path):
    """A library error on a parameter is reported with the stage's params section."""
    write_params(tmp_path / "params.yaml", TINY + ["prune.frequency=100"])
    args = ["--params", str(tmp_path / "params.yaml"), "--data", "prepared", "--model-in", "trained.keras",
            "--teacher", "trained.keras", "--model-out", "out/p.keras", "--reports", "out/r"]
    assert_clean_failure(run_stage("prune", args, workdir), workdir, "params: prune.frequency=100 never updates")


def test_multi_worker_without_tf_config_names_the_train_key(workdir):
    write_params(workdir / "mw.yaml", TINY + ["train.strategy=multi_worker"])
    args = ["--params", "mw.yaml", "--data", "prepared", "--model-in", "trained.keras", "--model-out", "out/s.keras",
            "--reports", "out/r"]
    assert_clean_failure(run_stage("shrink", args, workdir, env={"TF_CONFIG": ""}), workdir,
                         "params: train.strategy='multi_worker' needs the TF_CONFIG")


@pytest.mark.slow
def test_convert_tolerance_exceeded_is_a_failed_check_not_a_bad_parameter(workdir, tmp_path):
    """Nothing the user typed is wrong: a distinct kind (exit 3) naming the variant and the tolerance."""
    write_params(tmp_path / "params.yaml", TINY + ["convert.float_atol=1e-12"])
    args = ["--params", str(tmp_path / "params.yaml"), "--data", "prepared", "--trained", "trained.keras",
            "--shrunk", "trained.keras", "--pruned", "trained.keras", "--scratch", "trained.keras",
            "--out", "out/export", "--summary", "out/summary.json"]
    assert_clean_failure(run_stage("convert", args, workdir), workdir,
                         "check failed: trained_tflite_float logits differ from the Keras model's by", code=3)


def test_train_on_a_users_model_the_data_cannot_feed(workdir):
    """model=file whose input is 28x28x3 while the prepared images are 16x16x1: one line
    naming the file and both shapes, exit 2, nothing written."""
    import tf_keras as keras

    x = keras.Input((28, 28, 3))
    keras.Model(x, keras.layers.Dense(10)(keras.layers.Flatten()(x))).save(workdir / "mine.keras")
    tiny_but_model = [o for o in TINY if not o.startswith("model.")]
    write_params(workdir / "file.yaml", tiny_but_model + ["model=file", f"model.path={workdir / 'mine.keras'}",
                                                          "train.epochs=0"])
    proc = run_stage("train", ["--params", "file.yaml", "--data", "prepared", "--model", "out/m.keras",
                               "--reports", "out/r", "--backup", "out/b"], workdir)
    assert_clean_failure(proc, workdir, "mine.keras", "(28, 28, 3)", "(16, 16, 1)", "prepare.image_size")


def test_an_image_size_too_small_for_the_architecture_stops_the_first_stage(workdir):
    """A rule between sections (model=application needs 32x32) fails whichever stage runs first,
    here prepare, before it writes anything."""
    write_params(workdir / "small.yaml", TINY[:1] + ["model=application"])
    proc = run_stage("prepare", ["--params", "small.yaml", "--out", "out/prepared", "--summary", "out/s.json",
                                 "--timing", "out/t.json"], workdir)
    assert_clean_failure(proc, workdir, "model.name='application' needs prepare.image_size >= 32", "got 16")


@pytest.mark.parametrize("stage, key", [("prune", "exclude"), ("prune", "include"), ("shrink", "exclude")])
def test_a_layer_pattern_with_a_typo_is_named_not_ignored(workdir, tmp_path, stage, key):
    """Issue: prune.exclude=[logitz] and shrink.exclude with a typo were silently ignored."""
    write_params(tmp_path / "params.yaml", TINY + [f"{stage}.{key}=[logitz]"])
    args = ["--params", str(tmp_path / "params.yaml"), "--data", "prepared", "--model-in", "trained.keras",
            "--model-out", "out/m.keras", "--reports", "out/r"]
    args += ["--teacher", "trained.keras"] if stage == "prune" else []
    assert_clean_failure(run_stage(stage, args, workdir), workdir, f"params: {stage}.{key}=['logitz'] 'logitz' "
                         "matches no layer of the model (its layers: ")
