"""Share a run: a real DVC remote (a local folder, as on a shared disk) and a bare git remote.

One clone runs the pipeline and an experiment and pushes both; a second clone pulls them, finds
every stage up to date without running anything, and applies the experiment.
"""

from __future__ import annotations

import json
import re

import pytest

from helpers import ONE_THREAD, TINY, dvc, git, shared_project

pytestmark = [pytest.mark.slow, pytest.mark.pipelines]


def _ran(output: str) -> list[str]:
    return re.findall(r"Running stage '(\w+)'", output)


def test_push_pull_repro_runs_nothing_and_experiments_travel(tmp_path, tmp_path_factory):
    origin, store = tmp_path / "origin.git", tmp_path / "dvc-store"
    git("init", "-q", "--bare", str(origin), cwd=tmp_path)
    a, ran = shared_project(tmp_path_factory, tmp_path / "a")
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

    # An experiment that re-runs only evaluate and report (the cheapest that changes outputs).
    overrides = [x for o in TINY + ONE_THREAD + ["evaluate.max_drop=2.5"] for x in ("-S", o)]
    dvc("exp", "run", "-n", "floor25", *overrides, cwd=a)
    dvc("exp", "push", "origin", "floor25", cwd=a)  # git refs to origin, outputs to the DVC remote

    dvc("exp", "pull", "origin", "floor25", cwd=b)
    assert "floor25" in dvc("exp", "list", cwd=b).stdout
    dvc("exp", "apply", "floor25", cwd=b)
    params = (b / "params.yaml").read_text()
    assert re.search(r"max_drop: 2\.5\b", params)
    metrics = json.loads((b / "reports" / "evaluate" / "metrics.json").read_text())
    assert metrics["headline"]["max_drop_points"] == 2.5
    evaluated = "reports/evaluate/metrics.json"
    assert (b / evaluated).read_bytes() == (a / evaluated).read_bytes()  # the experiment's own measurement
    assert _ran(dvc("repro", cwd=b).stdout) == []  # the applied experiment's outputs are all there
