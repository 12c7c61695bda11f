"""Share a run: a real DVC remote (a local folder, as on a shared disk) and a bare git remote.

One clone runs the pipeline and an experiment and pushes both; a second clone pulls them, finds
every stage up to date without running anything, and applies the experiment.
"""

from __future__ import annotations

import json
import re

import pytest

from helpers import TINY, dvc, git, run_project

pytestmark = pytest.mark.slow


def _ran(output: str) -> list[str]:
    return re.findall(r"Running stage '(\w+)'", output)


def test_push_pull_repro_runs_nothing_and_experiments_travel(tmp_path):
    origin, store = tmp_path / "origin.git", tmp_path / "dvc-store"
    git("init", "-q", "--bare", str(origin), cwd=tmp_path)
    a, ran = run_project(tmp_path / "a", TINY)
    assert _ran(ran)
    dvc("remote", "add", "-d", "shared", str(store), cwd=a)
    git("commit", "-qam", "DVC remote", cwd=a)
    git("remote", "add", "origin", str(origin), cwd=a)
    git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=a)
    dvc("push", cwd=a)

    git("clone", "-q", "-b", "main", str(origin), str(tmp_path / "b"), cwd=tmp_path)
    b = tmp_path / "b"
    dvc("pull", cwd=b)
    out = dvc("repro", cwd=b).stdout
    assert _ran(out) == [], out  # every output came from the remote: nothing is re-run
    assert "Data and pipelines are up to date" in dvc("status", cwd=b).stdout
    manifest = "models/export/manifest.json"
    assert (b / manifest).read_bytes() == (a / manifest).read_bytes()

    overrides = [x for o in TINY + ["prune.final_sparsity=0.5"] for x in ("-S", o)]
    dvc("exp", "run", "-n", "sparse50", *overrides, cwd=a)
    dvc("exp", "push", "origin", "sparse50", cwd=a)  # git refs to origin, outputs to the DVC remote

    dvc("exp", "pull", "origin", "sparse50", cwd=b)
    assert "sparse50" in dvc("exp", "list", cwd=b).stdout
    dvc("exp", "apply", "sparse50", cwd=b)
    params = (b / "params.yaml").read_text()
    assert re.search(r"final_sparsity: 0\.5\b", params)
    metrics = json.loads((b / "reports" / "evaluate" / "metrics.json").read_text())
    assert abs(metrics["variants"]["pruned_tflite_float"]["sparsity"] - 0.5) <= 0.01
    assert (b / "models" / "pruned.keras").read_bytes() == (a / "models" / "pruned.keras").read_bytes()
    assert _ran(dvc("repro", cwd=b).stdout) == []  # the applied experiment's outputs are all there
