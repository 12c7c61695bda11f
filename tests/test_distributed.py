"""Training at scale: multi-worker over loopback, resume after SIGKILL, determinism."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from omegaconf import OmegaConf

from helpers import ROOT, TINY, compose, dvc, make_project, run_stage, tool_env
from train2infer import distribute, fit
from train2infer.core.params import ParamError
from train2infer.models.io import load_model
from train2infer.prepared import load_prepared


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_args(prepared, out):
    return ["--data", str(prepared), "--model", f"{out}/m.keras", "--reports", f"{out}/r", "--backup", f"{out}/b"]


def test_helpers_on_one_process(tmp_path):
    assert distribute.is_chief(distribute.select_strategy("default")) is True
    assert fit.run_key({"a": 1, "b": [2]}) == fit.run_key({"b": [2], "a": 1})
    assert fit.run_key({"a": 1}) != fit.run_key({"a": 2})
    speed = fit.throughput([9.0, 2.0, 2.0, 4.0], images_per_epoch=1000, replicas=2)
    assert speed == {"images_per_second": 500.0, "images_per_second_per_replica": 250.0,
                     "epochs_timed": 3, "median_epoch_seconds": 2.0}
    env = os.environ.pop("TF_CONFIG", None)
    try:
        with pytest.raises(ParamError, match="TF_CONFIG"):
            distribute.select_strategy("multi_worker")
    finally:
        if env is not None:
            os.environ["TF_CONFIG"] = env


def test_resumed_live_log_has_one_row_per_epoch(tmp_path):
    from dvclive import Live

    with Live(dir=str(tmp_path), resume=True, dvcyaml=None, save_dvc_exp=False) as live:
        logger = fit.LiveLogger(live)
        for epoch in range(4):
            logger.on_epoch_begin(epoch)
            logger.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1), "val_accuracy": epoch / 10})
    # an interrupted run logged epochs 0..3 but its checkpoint holds only epochs 0..1
    with Live(dir=str(tmp_path), resume=True, dvcyaml=None, save_dvc_exp=False) as live:
        logger = fit.LiveLogger(live)
        for epoch in range(2, 5):
            logger.on_epoch_begin(epoch)
            logger.on_epoch_end(epoch, {"loss": 0.01, "val_accuracy": 0.9})
    assert logger.resumed_from_epoch == 2
    rows = (tmp_path / "plots" / "metrics" / "val" / "accuracy.tsv").read_text().splitlines()[1:]
    steps = [int(r.split("\t")[0]) for r in rows]
    values = [float(r.split("\t")[1]) for r in rows]
    assert steps == [0, 1, 2, 3, 4]
    assert values == [0.0, 0.1, 0.9, 0.9, 0.9]
    assert json.loads((tmp_path / "metrics.json").read_text())["step"] == 4


@pytest.mark.slow
def test_two_workers_train_together_over_loopback(tmp_path, prepared):
    """MultiWorkerMirroredStrategy from TF_CONFIG: 2 processes, 1 chief publishing."""
    params = tmp_path / "params.yaml"
    params.write_text(OmegaConf.to_yaml(compose(TINY + ["train.strategy=multi_worker", "train.epochs=8"])))
    cluster = {"worker": [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]}
    procs = []
    for i in range(2):
        wd = tmp_path / f"w{i}"
        wd.mkdir()
        env = dict(tool_env(), PYTHONPATH=str(ROOT / "src"),
                   TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}))
        procs.append(subprocess.Popen(
            [sys.executable, str(ROOT / "stages" / "train.py"), "--params", str(params), *_train_args(prepared, "out")],
            cwd=wd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err[-3000:]
    chief, worker = tmp_path / "w0" / "out", tmp_path / "w1" / "out"
    assert not worker.exists() or not any(worker.rglob("*.keras"))  # only the chief publishes
    speed = json.loads((chief / "r" / "throughput.json").read_text())
    assert speed["strategy"] == "MultiWorkerMirroredStrategy" and speed["replicas"] == 2
    assert speed["global_batch_size"] == 2 * 32
    # The input pipeline alone outruns the trainer: training is never waiting for data.
    assert speed["input_images_per_second"] > speed["images_per_second"] and speed["input_headroom"] > 1
    summary = json.loads((chief / "r" / "metrics.json").read_text())
    assert summary["replicas"] == 2
    model = load_model(chief / "m.keras")
    acc = fit.accuracy(model, *load_prepared(prepared, "test"))
    assert acc > 0.8, acc  # same range as one device (test_train); chance is 0.1
    assert "val accuracy" in results[0][0] and "val accuracy" not in results[1][0]


@pytest.mark.slow
def test_same_seed_twice_gives_identical_results(tmp_path, prepared):
    (tmp_path / "params.yaml").write_text(OmegaConf.to_yaml(compose(TINY)))
    runs = []
    for name in ("a", "b"):
        proc = run_stage("train", _train_args(prepared, name), tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs.append(tmp_path / name)
    metrics = [json.loads((r / "r" / "metrics.json").read_text()) for r in runs]
    for key in ("val_accuracy_inference",):
        assert metrics[0][key] == metrics[1][key]
    assert metrics[0]["val"] == metrics[1]["val"] and metrics[0]["train"] == metrics[1]["train"]
    w = [load_model(r / "m.keras").get_weights() for r in runs]
    assert all(np.array_equal(a, b) for a, b in zip(*w))


@pytest.mark.slow
def test_sigkill_during_training_then_repro_resumes(tmp_path):
    epochs = 10
    proj = make_project(tmp_path / "proj", TINY + [f"train.epochs={epochs}", "model.filters=[16,32]"])
    dvc("repro", "prepare", cwd=proj)
    proc = subprocess.Popen([sys.executable, "-m", "dvc", "repro", "train"], cwd=proj, env=tool_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    backup = proj / "models" / ".backup" / "train"
    killed_after = None
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        logs = list(backup.glob("*/live/metrics.json"))
        if logs:
            try:
                step = json.loads(logs[0].read_text())["step"]
            except (ValueError, KeyError):
                step = -1
            if step >= 2:
                os.killpg(proc.pid, signal.SIGKILL)
                killed_after = step
                break
        time.sleep(0.05)
    proc.wait(timeout=60)
    assert killed_after is not None, "training finished before it could be killed"
    assert not (proj / "models" / "trained.keras").exists()  # nothing DVC would accept
    assert not (proj / "reports" / "train" / "metrics.json").exists()

    out = dvc("repro", "train", cwd=proj).stdout
    resumed = json.loads((proj / "reports" / "train" / "metrics.json").read_text())
    assert resumed["resumed_from_epoch"] >= killed_after  # continued, not restarted
    assert f"resumed at epoch {resumed['resumed_from_epoch']}" in out
    assert resumed["step"] == epochs - 1
    rows = (proj / "reports" / "train" / "plots" / "metrics" / "val" / "accuracy.tsv").read_text().splitlines()[1:]
    assert [int(r.split("\t")[0]) for r in rows] == list(range(epochs))
    model = load_model(proj / "models" / "trained.keras")
    acc = fit.accuracy(model, *load_prepared(proj / "data" / "prepared", "test"))
    assert acc > 0.8, acc
    assert not any(backup.iterdir())  # the backup is removed once the stage succeeded
