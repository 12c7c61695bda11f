"""Stage scripts on bad files: one `error:` line naming the culprit, exit 2, no outputs."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from conftest import TINY, compose, run_stage
from train2infer import data, models


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, digits, trained):
    """tiny params, prepared data and a trained model, as the stages expect them."""
    wd = tmp_path_factory.mktemp("stages")
    (wd / "params.yaml").write_text(OmegaConf.to_yaml(compose(TINY)))
    splits, names = digits
    data.save_prepared(wd / "prepared", splits, names, "digits")
    models.save_for_inference(trained, wd / "trained.keras")
    return wd


def _assert_clean_failure(proc, wd, *needles):
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in last, last
    assert "Traceback" not in proc.stderr
    assert not (wd / "out").exists()
    assert not list(wd.glob(".t2i-staging-*"))


def test_train_on_missing_prepared_data(workdir):
    proc = run_stage("train", ["--data", "nowhere", "--model", "out/m.keras", "--reports", "out/r", "--backup", "out/b"], workdir)
    _assert_clean_failure(proc, workdir, "nowhere")


def test_train_on_corrupt_prepared_data(workdir, tmp_path):
    bad = tmp_path / "prepared"
    bad.mkdir()
    (bad / "meta.json").write_text((workdir / "prepared" / "meta.json").read_text())
    (bad / "train.npz").write_bytes(b"PK\x03\x04 truncated")
    proc = run_stage("train", ["--data", str(bad), "--model", "out/m.keras", "--reports", "out/r", "--backup", "out/b"], workdir)
    _assert_clean_failure(proc, workdir, "corrupt", "train.npz")


def test_convert_on_corrupt_model(workdir):
    (workdir / "bad.keras").write_bytes(b"not a keras file")
    args = ["--data", "prepared", "--trained", "bad.keras", "--shrunk", "trained.keras", "--pruned", "trained.keras",
            "--out", "out/export", "--summary", "out/summary.json"]
    _assert_clean_failure(run_stage("convert", args, workdir), workdir, "bad.keras")


def test_evaluate_on_missing_export(workdir):
    args = ["--data", "prepared", "--trained", "trained.keras", "--shrunk", "trained.keras", "--pruned", "trained.keras",
            "--export", "no_export",
            "--metrics", "out/metrics.json", "--plots", "out/plots"]
    _assert_clean_failure(run_stage("evaluate", args, workdir), workdir, "no_export")


@pytest.mark.slow
def test_prune_with_a_frequency_that_never_updates_masks(workdir, tmp_path):
    (tmp_path / "params.yaml").write_text(OmegaConf.to_yaml(compose(TINY + ["prune.frequency=100"])))
    args = ["--params", str(tmp_path / "params.yaml"), "--data", "prepared", "--model-in", "trained.keras",
            "--shrunk", "out/s.keras", "--model-out", "out/p.keras", "--reports", "out/r"]
    _assert_clean_failure(run_stage("prune", args, workdir), workdir, "prune.frequency=100")


@pytest.mark.slow
def test_prune_stage_meets_its_target_and_writes_reports(workdir):
    args = ["--data", "prepared", "--model-in", "trained.keras", "--shrunk", "ok/s.keras", "--model-out", "ok/p.keras",
            "--reports", "ok/r"]
    proc = run_stage("prune", args, workdir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    pruned = models.load_model(workdir / "ok" / "p.keras")
    from train2infer import pruning

    per_kernel = pruning.kernel_sparsity(pruned)
    assert all(abs(s - 0.8) <= 0.01 for s in per_kernel.values()), per_kernel
    summary = data.read_json(workdir / "ok" / "r" / "metrics.json")
    assert summary["target_sparsity"] == 0.8 and summary["min_kernel_sparsity"] >= 0.79
    assert np.isclose(summary["sparsity"], pruning.overall_sparsity(pruned))
