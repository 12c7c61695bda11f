"""End to end: real `dvc repro` and `dvc exp run` in a temporary git + DVC copy, tiny config."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from test_report import check_report

from helpers import ONE_THREAD, ROOT, TINY, dvc, git, make_project, shared_project
from train2infer.core import quiet
from train2infer.evaluate.metrics import METRIC_KEYS

VARIANTS = ("trained_keras_float", "trained_tflite_float", "trained_tflite_dynamic", "trained_tflite_int8",
            "trained_saved_model_float", "shrunk_tflite_float", "shrunk_tflite_dynamic", "shrunk_tflite_int8",
            "shrunk_saved_model_float", "pruned_tflite_float", "pruned_tflite_dynamic", "pruned_tflite_int8",
            "pruned_saved_model_float", "scratch_tflite_float", "scratch_tflite_dynamic", "scratch_tflite_int8",
            "scratch_saved_model_float")
STAGES = ["check", "prepare", "train", "shrink", "prune", "scratch", "convert", "evaluate", "report"]


def _ran(output: str) -> list[str]:
    return re.findall(r"Running stage '(\w+)'", output)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A copy of the tracked project with tiny params, committed, after one `dvc repro`."""
    return shared_project(tmp_path_factory, tmp_path_factory.mktemp("e2e") / "proj")


@pytest.mark.slow
def test_repro_runs_every_stage_and_writes_every_output(repo):
    dst, out = repo
    ran = _ran(out)  # prune and scratch are independent: DVC may run them in either order
    assert sorted(ran) == sorted(STAGES) and ran[:3] == STAGES[:3] and ran[-3:] == STAGES[-3:], ran
    if not quiet.has_gpu():  # TensorFlow's CUDA-probe and NodeDef noise is kept out of the stage output
        assert not [line for line in out.splitlines() if "cuInit" in line or "NodeDef" in line or "cuda" in line]
    for split in ("train", "val", "test"):
        assert (dst / "data" / "prepared" / f"{split}.npz").stat().st_size > 0
    for m in ("trained", "shrunk", "pruned", "scratch"):
        assert (dst / "models" / f"{m}.keras").is_file()
    export = dst / "models" / "export"
    for v in VARIANTS:
        if "_tflite_" in v:
            assert (export / f"{v}.tflite").stat().st_size > 0
    for m in ("trained", "shrunk", "pruned", "scratch"):
        assert (export / f"{m}_saved_model" / "saved_model.pb").is_file()
    channels = json.loads((dst / "reports" / "shrink" / "metrics.json").read_text())
    assert channels["macs_after"] < channels["macs_before"] and channels["params_after"] < channels["params_before"]

    metrics = json.loads((dst / "reports" / "evaluate" / "metrics.json").read_text())
    assert metrics["baseline"] == "trained_keras_float"
    assert set(metrics["variants"]) == set(VARIANTS)
    for v, row in metrics["variants"].items():
        assert set(row) == set(METRIC_KEYS), v
        assert 0 <= row["accuracy"] <= 1 and row["latency_p50_ms"] > 0 and row["gzip_bytes"] > 0
    assert metrics["variants"]["trained_keras_float"]["speedup_p50"] == 1.0
    assert metrics["variants"]["pruned_tflite_float"]["sparsity"] >= 0.79  # default target 0.8
    assert metrics["headline"]["baseline_accuracy"] == metrics["variants"]["trained_keras_float"]["accuracy"]
    assert metrics["machine"]["peak_gflops_float32"] > 0 and metrics["machine"]["peak_gops_int8"] > 0
    kept = json.loads((dst / "reports" / "evaluate" / "predictions.json").read_text())
    assert set(kept["predicted"]) == set(VARIANTS) and len(kept["labels"]) == len(kept["predicted"][VARIANTS[0]])

    train = json.loads((dst / "reports" / "train" / "metrics.json").read_text())
    assert train["step"] == 2  # epochs=3 -> steps 0..2
    sparsity = json.loads((dst / "reports" / "prune" / "sparsity.json").read_text())
    assert all(abs(r["sparsity"] - 0.8) <= 0.01 for r in sparsity["pruned"])
    assert sparsity["not_pruned"] == []  # the CNN: every kernel layer is pruned
    summary = json.loads((dst / "reports" / "convert" / "summary.json").read_text())
    assert summary["trained"]["tflite"]["trained_tflite_float"]["ops"] < summary["trained"]["keras_layers"]
    assert summary["trained"]["tflite"]["trained_tflite_float"]["max_abs_diff"] <= 1e-4
    assert json.loads((dst / "reports" / "evaluate" / "plots" / "tradeoff.json").read_text())
    manifest = json.loads((dst / "models" / "export" / "manifest.json").read_text())
    assert [v["name"] for v in manifest["variants"]] == list(VARIANTS[1:])
    assert json.loads((dst / "reports" / "train" / "throughput.json").read_text())["images_per_second"] > 0
    bench = json.loads((dst / "reports" / "evaluate" / "benchmark.json").read_text())
    assert set(bench["runs"]) == {"1", "2"} and set(bench["peaks"]) == {"1"}
    for v in VARIANTS:  # latency at both thread counts, the throughput sweep with the most threads
        assert bench["runs"]["1"]["variants"][v]["throughput"] == {}
        assert set(bench["runs"]["2"]["variants"][v]["throughput"]) == {"1", "4"}
        assert bench["runs"]["2"]["variants"][v]["latency"]["runs"] >= 200
    check_report(dst / "reports", metrics)
    assert not list(dst.glob(".t2i-staging-*"))
    # DVCLive must not have edited the root dvc.yaml
    assert (dst / "dvc.yaml").read_text() == (ROOT / "dvc.yaml").read_text()
    # every file a stage wrote is (inside) a declared output: nothing DVC does not track
    stages = yaml.safe_load((dst / "dvc.yaml").read_text())["stages"].values()
    declared = [next(iter(o)) if isinstance(o, dict) else o
                for st in stages for key in ("outs", "metrics", "plots") for o in st.get(key, [])]
    for top in ("reports", "models"):
        for p in (dst / top).rglob("*"):
            rel = str(p.relative_to(dst))
            if p.is_file() and p.name != ".gitignore" and not rel.startswith(("models/.backup", "reports/experiments")):
                # (.gitignore: DVC's own, beside a cached output)
                assert any(rel == d or rel.startswith(d + "/") for d in declared), f"{rel} is not declared"


@pytest.mark.slow
def test_second_repro_runs_nothing(repo):
    dst, _ = repo
    out = dvc("repro", cwd=dst).stdout
    assert _ran(out) == []
    assert "didn't change" in out or "up to date" in out


@pytest.mark.slow
def test_exp_run_reruns_only_downstream_of_prune_and_shows_metrics(repo):
    """The most common sweep, a sparsity change, re-runs neither training nor channel pruning."""
    dst, _ = repo
    overrides = [a for o in TINY + ONE_THREAD + ["prune.final_sparsity=0.5"] for a in ("-S", o)]
    out = dvc("exp", "run", *overrides, cwd=dst).stdout
    assert _ran(out) == ["check", "prune", "convert", "evaluate", "report"]  # check's stamp: same bytes
    metrics = json.loads((dst / "reports" / "evaluate" / "metrics.json").read_text())
    assert abs(metrics["variants"]["pruned_tflite_float"]["sparsity"] - 0.5) <= 0.01

    shown = json.loads(dvc("exp", "show", "--json", cwd=dst).stdout)
    exps = [e for rev in shown for e in (rev.get("experiments") or [])]
    assert exps, "dvc exp show lists no experiment"
    data = exps[0]["revs"][0]["data"]
    assert data["params"]["params.yaml"]["data"]["prune"]["final_sparsity"] == 0.5
    shown_metrics = data["metrics"]["reports/evaluate/metrics.json"]["data"]
    assert shown_metrics["variants"]["pruned_tflite_dynamic"]["accuracy"] == \
        metrics["variants"]["pruned_tflite_dynamic"]["accuracy"]
    assert "reports/train/throughput.json" in data["metrics"]  # declared, so dvc shows it

    diff = dvc("metrics", "diff", "--json", cwd=dst).stdout
    assert "variants.pruned_tflite_float.sparsity" in json.loads(diff)["reports/evaluate/metrics.json"]
    html = dvc("plots", "show", "-o", str(dst / "plots_out"), cwd=dst)
    assert (dst / "plots_out" / "index.html").stat().st_size > 0, html.stderr


@pytest.mark.slow
@pytest.mark.parametrize("bad, culprit", [
    ("train.epochs=-1", "train.epochs"), ("prepare.val_fraction=2", "prepare.val_fraction"),
    ("evaluate.threads=[-1]", "evaluate.threads"),
    ("prepare.path=data/nowhere", "prepare.path='data/nowhere' does not exist"),
    ("model=file", "model.path='data/models/model.keras' does not exist"),
    ("prune.frequency=100000", "prune.frequency=100000 never updates the pruning masks")])  # data-dependent
def test_a_failed_exp_run_removes_no_output(repo, bad, culprit):
    """DVC removes a stage's outputs before its command runs: the check stage, first, stops a bad
    value before that; afterwards git shows only params.yaml changed (issue: models deleted)."""
    dst, _ = repo
    before = {p: p.read_bytes() for p in (dst / "models").glob("*.keras")}
    status, params = git("status", "--short", cwd=dst).stdout.splitlines(), (dst / "params.yaml").read_bytes()
    proc = dvc("exp", "run", "-S", bad, cwd=dst, check=False)
    try:
        assert proc.returncode != 0
        assert _ran(proc.stdout) == ["check"], proc.stdout[-2000:]
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
        assert len(lines) == 1 and culprit in lines[0], proc.stderr[-2000:]
        assert "Traceback" not in proc.stdout + proc.stderr
        assert set(git("status", "--short", cwd=dst).stdout.splitlines()) - set(status) <= {" M params.yaml"}
        assert {p: p.read_bytes() for p in (dst / "models").glob("*.keras")} == before
    finally:
        (dst / "params.yaml").write_bytes(params)
        dvc("checkout", cwd=dst)  # the check stamp back, so the module's later tests find it all in place
    assert _ran(dvc("repro", cwd=dst).stdout) == []


@pytest.mark.slow
def test_a_dvc_added_image_folder_is_a_dependency_of_prepare(tmp_path):
    """`dvc add` a folder of images, point data.path at it; adding images re-runs prepare."""
    from test_prepare import tree

    dst = make_project(tmp_path / "proj", TINY + ["prepare=folder", "prepare.path=data/images/pets",
                                                  "prepare.workers=1", "prune.frequency=1"])  # 16 training images
    pets = tree(dst / "data" / "images" / "pets", {"cats": 12, "dogs": 12})
    dvc("add", "data/images/pets", cwd=dst)
    git("add", "-A", cwd=dst)
    git("commit", "-qm", "images", cwd=dst)
    assert _ran(dvc("repro", "prepare", cwd=dst).stdout) == ["check", "prepare"]
    summary = json.loads((dst / "reports" / "prepare" / "summary.json").read_text())
    assert summary["class_names"] == ["cats", "dogs"] and sum(summary["sizes"].values()) == 24
    assert _ran(dvc("repro", "prepare", cwd=dst).stdout) == []

    tree(pets, {"cats": 4, "dogs": 4}, start=100)  # new images in both classes
    dvc("add", "data/images/pets", cwd=dst)
    assert "prepare" in dvc("status", "prepare", cwd=dst).stdout
    # check counts the images but does not depend on them (a missing prepare.path must reach its
    # one line, not DVC's): prune checks its schedule again on the prepared data
    assert _ran(dvc("repro", "prepare", cwd=dst).stdout) == ["prepare"]
    summary = json.loads((dst / "reports" / "prepare" / "summary.json").read_text())
    assert sum(summary["sizes"].values()) == 32
