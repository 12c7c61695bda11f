"""Same inputs, params and code on the same machine: byte-identical outputs (issue #16).

Unit tests for what makes saved files stable (zip entry times, the ``.keras`` save date, the
SavedModel fingerprint's random uuid), and one real run: the whole pipeline with `dvc repro` in a
project, then again in a fresh `git clone` of it (another folder, nothing cached), comparing every
output of prepare -> train -> shrink -> prune -> convert by hash. Only the files that hold measured
times may differ, and they are the only ones `git status` shows (docs/pipeline.md lists them).
"""

from __future__ import annotations

import hashlib
import shutil
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from helpers import dvc, git, shared_project
from train2infer.core.publish import ZIP_EPOCH, stable_zip

# Files holding measured times (seconds, images/s) and nothing the other outputs could be
# compared by: the only ones a re-run of prepare -> convert may change.
TIMING = {"reports/prepare/timing.json", "reports/train/throughput.json"}
# What evaluate and report re-measure (latency, throughput) and what is drawn or computed from it.
MEASURED = {"reports/evaluate/metrics.json", "reports/evaluate/benchmark.json", "reports/evaluate/plots/latency.json",
            "reports/evaluate/plots/throughput.json", "reports/evaluate/plots/tradeoff.json",
            "reports/report/README.md", "reports/report/plotted.json", "reports/report/pareto.png",
            "reports/report/throughput.png", "reports/report/roofline.png"}
UPSTREAM = ["data/prepared", "models/trained.keras", "models/shrunk.keras", "models/pruned.keras",
            "models/scratch.keras", "models/export", "reports/prepare", "reports/train", "reports/shrink",
            "reports/prune", "reports/scratch", "reports/convert"]


def _zip(path: Path, stamp: tuple, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=stamp), data)
    return path


def test_stable_zip_gives_equal_archives_equal_bytes(tmp_path):
    entries = {"metadata.json": b'{"v": 1, "date_saved": "now"}', "x.npy": bytes(range(200))}
    a = _zip(tmp_path / "a.zip", (2026, 11, 29, 11, 0, 0), entries)
    b = _zip(tmp_path / "b.zip", (2027, 1, 2, 3, 4, 6), entries)
    assert a.read_bytes() != b.read_bytes()
    for p in (a, b):
        stable_zip(p, edit=lambda name, data: data.replace(b"now", b"") if name == "metadata.json" else data)
    assert a.read_bytes() == b.read_bytes()
    with zipfile.ZipFile(a) as zf:
        assert [i.filename for i in zf.infolist()] == list(entries)  # order and contents kept
        assert {i.date_time for i in zf.infolist()} == {ZIP_EPOCH}
        assert zf.read("x.npy") == entries["x.npy"] and zf.read("metadata.json") == b'{"v": 1, "date_saved": ""}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip", "b.zip"]  # no scratch file left


def test_a_keras_file_saved_a_second_later_has_the_same_bytes(tmp_path, trained):
    from train2infer.models import io

    io.save_for_inference(trained, tmp_path / "a.keras")
    time.sleep(1.1)  # tf_keras stamps the save date to the second
    io.save_for_inference(trained, tmp_path / "b.keras")
    assert (tmp_path / "a.keras").read_bytes() == (tmp_path / "b.keras").read_bytes()
    with zipfile.ZipFile(tmp_path / "a.keras") as zf:
        assert "date_saved" not in zf.read("metadata.json").decode()
    assert io.same_weights(io.load_model(tmp_path / "a.keras"), trained)


def test_the_saved_model_fingerprint_uuid_follows_its_hashes(tmp_path, trained):
    import tensorflow as tf
    from tensorflow.core.protobuf import fingerprint_pb2

    from train2infer.convert.saved_model import export_saved_model, stable_fingerprint

    export_saved_model(trained, tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    fp_b = tmp_path / "b" / "fingerprint.pb"
    fp = fingerprint_pb2.FingerprintDef.FromString(fp_b.read_bytes())
    fp.uuid = "123456789"  # as a second tf.saved_model.save would: a new random uuid
    fp_b.write_bytes(fp.SerializeToString())
    stable_fingerprint(tmp_path / "b")
    assert fp_b.read_bytes() == (tmp_path / "a" / "fingerprint.pb").read_bytes()
    read = tf.saved_model.experimental.read_fingerprint(str(tmp_path / "b"))
    assert read.saved_model_checksum == fp.saved_model_checksum and "serving_default" in \
        tf.saved_model.load(str(tmp_path / "b")).signatures


def _hashes(root: Path) -> dict[str, str]:
    files = [f for top in UPSTREAM for f in sorted((root / top).rglob("*") if (root / top).is_dir() else [root / top])]
    return {str(f.relative_to(root)): hashlib.md5(f.read_bytes()).hexdigest() for f in files
            if f.is_file() and f.name != ".gitignore"}


def _lock_outs(root: Path) -> dict[str, str]:
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return {o["path"]: o.get("md5") for stage in lock["stages"].values() for o in stage.get("outs", [])}


@pytest.mark.slow
@pytest.mark.pipelines
def test_the_pipeline_twice_from_scratch_gives_the_same_bytes(tmp_path, tmp_path_factory):
    a, _ = shared_project(tmp_path_factory, tmp_path / "a")  # the shared run, from scratch too
    b = tmp_path / "b"
    git("clone", "-q", str(a), str(b), cwd=tmp_path)  # a fresh folder: no outputs, no cache
    assert not (b / "models").exists()
    dvc("repro", cwd=b)

    ha, hb = _hashes(a), _hashes(b)
    assert set(ha) == set(hb) and len(ha) > 30
    assert TIMING <= set(ha)
    differ = {f for f in ha if ha[f] != hb[f]}
    assert differ <= TIMING, sorted(differ - TIMING)  # every non-timing output is byte-identical
    la, lb = _lock_outs(a), _lock_outs(b)
    assert "reports/evaluate/predictions.json" in la and "reports/report/sizes.png" in la
    # dvc.lock changes only where a time was measured (predictions, sizes, curves: the same)
    assert {p for p in la if la[p] != lb[p]} <= TIMING | MEASURED, sorted({p for p in la if la[p] != lb[p]})
    status = git("status", "--porcelain", "--untracked-files=all", cwd=b).stdout.split("\n")
    changed = {line[3:] for line in status if line.strip()}
    assert changed <= TIMING | MEASURED | {"dvc.lock"}, sorted(changed)
