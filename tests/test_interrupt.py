"""Ctrl-C, SIGTERM and stale checkpoints, with real signals sent to real `dvc repro` and stages."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import ROOT, SRC, TINY, dvc, make_project, tool_env

pytestmark = pytest.mark.slow
LONG = TINY + ["train.epochs=12", "model.filters=[16,32]"]


def _start(cmd: list[str], cwd: Path, env: dict) -> subprocess.Popen:
    """As from a terminal: its own process group (a terminal's Ctrl-C signals the whole group),
    SIGINT at its default (a background job of a shell ignores it, and children inherit that)."""
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _signal_after_an_epoch(proc: subprocess.Popen, backup: Path, signum: int) -> tuple[str, str]:
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        logs = list(backup.glob("*/live/metrics.json"))
        try:
            if logs and json.loads(logs[0].read_text())["step"] >= 1:
                os.killpg(proc.pid, signum)
                break
        except (ValueError, KeyError):
            pass
        time.sleep(0.05)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0, "training finished before it could be interrupted"
    return out, err


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_ctrl_c_during_dvc_repro_ends_in_one_line_and_a_stale_checkpoint_is_not_resumed(tmp_path):
    proj = make_project(tmp_path / "proj", LONG)
    model, backup = proj / "models" / "trained.keras", proj / "models" / ".backup" / "train"
    dvc("repro", "train", cwd=proj)
    first = _md5(model)

    proc = _start([sys.executable, "-m", "dvc", "repro", "-f", "-s", "train"], proj, tool_env())
    out, err = _signal_after_an_epoch(proc, backup, signal.SIGINT)
    assert "error: interrupted (SIGINT)" in err, err[-2000:]
    assert "Traceback" not in out + err, err[-3000:]
    assert not model.exists() and not list(proj.glob(".t2i-staging-*"))  # nothing half-written
    assert any(backup.glob("*/checkpoint"))  # the interrupted run's state is kept ...

    restored = dvc("repro", "train", cwd=proj)  # ... DVC restores the outputs from its run cache
    assert "Running stage 'train'" not in restored.stdout and _md5(model) == first

    again = dvc("repro", "-f", "-s", "train", cwd=proj)  # so a forced run must not resume it
    assert "removed a checkpoint of these settings" in again.stderr, again.stderr[-2000:]
    assert "resum" not in again.stdout, again.stdout[-2000:]
    assert _md5(model) == first  # the same bytes as the uninterrupted run dvc.lock records
    assert not any(backup.iterdir())


def test_sigterm_ends_a_stage_with_one_line_and_nothing_written(tmp_path):
    proj = make_project(tmp_path / "proj", LONG)
    dvc("repro", "prepare", cwd=proj)
    env = dict(tool_env(), PYTHONPATH=str(SRC))
    cmd = [sys.executable, str(ROOT / "stages" / "train.py"), "--data", "data/prepared", "--model", "out/m.keras",
           "--reports", "out/r", "--backup", "out/b"]
    proc = _start(cmd, proj, env)
    out, err = _signal_after_an_epoch(proc, proj / "out" / "b", signal.SIGTERM)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert err.strip().splitlines()[-1] == "error: interrupted (SIGTERM)", err[-2000:]
    assert "Traceback" not in err
    assert not (proj / "out" / "m.keras").exists() and not (proj / "out" / "r").exists()
    assert not list(proj.glob(".t2i-staging-*"))
