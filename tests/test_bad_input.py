"""The probe suite: mistakes a user makes, each ending in one ``error:`` line naming the culprit,
exit code 2 and nothing written, run as real processes (issue: 78 bad-input probes).

Parameter probes run the ``check`` stage, which DVC runs first (so they also show that a bad value
stops ``dvc repro`` / ``dvc exp run`` before any output is removed: tests/test_e2e.py does that with
real ``dvc exp run``s); file probes run the stage that reads the file.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import yaml

from helpers import TINY, assert_clean_failure, compose, run_stage

pytestmark = pytest.mark.slow  # 57 processes (~1.5 s each for check, more for the TensorFlow stages)


def _set(tree: dict, dotted: str, value) -> None:
    *parents, key = dotted.split(".")
    for p in parents:
        tree = tree[p]
    if value is DELETE:
        del tree[key]
    else:
        tree[key] = value


DELETE = object()

# (what the user did: dotted key -> value, several separated by ";"), the line's culprit
PARAMS = [
    ({"train.epochs": -1}, "params: train.epochs=-1 must be >= 0"),
    ({"train.epochs": "many"}, "params: train.epochs: Value 'many' of type 'str' could not be converted to Integer"),
    ({"train.batch_size": 0}, "params: train.batch_size=0 must be >= 1"),
    ({"train.learning_rate": 0}, "params: train.learning_rate=0.0 must be > 0"),
    ({"train.optimizer": "lamb"}, "params: train.optimizer='lamb' is not one of: adam, sgd"),
    ({"train.schedule": "cosine"}, "params: train.patience=3 would stop a cosine schedule before it decays"),
    ({"train.warmup_epochs": 1}, "params: train.warmup_epochs=1.0 needs train.schedule=cosine"),
    ({"train.label_smoothing": 1.0}, "params: train.label_smoothing=1.0 must be < 1"),
    ({"train.augment": "mixup"}, "params: train.augment='mixup' is not one of"),
    ({"train.translate": 16}, "params: train.translate=16 shifts by more than the image"),
    ({"train.strategy": "tpu"}, "params: train.strategy='tpu' is not one of"),
    ({"train.jit_compile": True}, "params: train.jit_compile=True needs train.deterministic=false"),
    ({"train.epoch": 5}, "params: train.epoch: Key 'epoch' not in 'TrainConfig'; did you mean train.epochs?"),
    ({"train.epochs": DELETE}, "train.epochs"),
    ({"prepare.val_fraction": 2}, "params: prepare.val_fraction=2.0 must be < 1"),
    ({"prepare.test_fraction": 0.9}, "params: prepare.test_fraction=0.9 plus prepare.val_fraction must be < 1"),
    ({"prepare.image_size": 100000}, "params: prepare.image_size=100000 must be <= 2048"),
    ({"prepare.channels": 2}, "params: prepare.channels=2 is not one of: 1, 3"),
    ({"prepare.path": "data/nowhere"}, "params: prepare.path='data/nowhere' does not exist"),
    ({"model.name": "vgg"}, "params: model.name='vgg' is not one of"),
    ({"prune.frequency": 100000}, "params: prune.frequency=100000 never updates the pruning masks: the schedule spans "
     "only"),
    ({"model.dropout": 1.0}, "params: model.dropout=1.0 must be < 1"),
    ({"model.filters": []}, "params: model.filters=[] must list at least one stage width"),
    ({"model.filters": [8, 0]}, "params: model.filters[1]=0 must be >= 1"),
    ({"model.filters": [8, 8, 8, 8, 8, 8]}, "params: model.name='cnn' needs prepare.image_size >= 64"),
    ({"shrink.keep": 0}, "params: shrink.keep=0.0 must be > 0"),
    ({"shrink.criterion": "random"}, "params: shrink.criterion='random' is not one of"),
    ({"shrink.round_to": 0}, "params: shrink.round_to=0 must be >= 1"),
    ({"shrink.distill_weight": 1.5}, "params: shrink.distill_weight=1.5 must be <= 1"),
    ({"shrink.steps": 3}, "params: shrink.steps=3 needs shrink.epochs >= steps (1 now)"),
    ({"prune.final_sparsity": 1.0}, "params: prune.final_sparsity=1.0 must be < 1"),
    ({"prune.frequency": 0}, "params: prune.frequency=0 must be >= 1"),
    ({"scratch.epochs": 0}, "params: scratch.epochs=0"),
    ({"convert.quantization": ["int4"]}, "params: convert.quantization[0]='int4' is not one of"),
    ({"convert.quantization": ["int8", "int8"]}, "must not repeat a mode"),
    ({"convert.int8_io": True, "convert.quantization": ["dynamic"]}, "convert.int8_io=True needs int8 or pqat"),
    ({"evaluate.threads": [1, 4096]}, "asks for more threads than this machine's"),
    ({"evaluate.min_runs": 50}, "params: evaluate.min_runs=50 must be >= 200"),
    ({"evaluate.max_drop": -1}, "params: evaluate.max_drop=-1.0 must be >= 0"),
    ({"evaluate.runtimes": ["litert", "litert"]}, "must not repeat a runtime"),
    ({"seed": -1}, "params: seed=-1 must be a non-negative integer"),
    ({"evaluate": DELETE}, "params: section 'evaluate' is missing"),
]


@pytest.fixture(scope="module")
def tiny_tree():
    from omegaconf import OmegaConf

    return OmegaConf.to_container(compose(TINY))


@pytest.mark.parametrize("edits, culprit", PARAMS, ids=[",".join(e) for e, _ in PARAMS])
def test_a_bad_parameter_stops_the_pipeline_in_one_line(tmp_path, tiny_tree, edits, culprit):
    tree = yaml.safe_load(yaml.safe_dump(tiny_tree))  # a copy
    for key, value in edits.items():
        _set(tree, key, value)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tree))
    (tmp_path / "data" / "sources").mkdir(parents=True)  # where prepare.path points by default
    builders = tmp_path / tiny_tree["model"]["path"]  # and model.path (the builders' code)
    builders.parent.mkdir(parents=True)
    builders.touch()
    proc = run_stage("check", ["--out", "out/passed"], tmp_path)
    assert_clean_failure(proc, tmp_path, culprit)


@pytest.mark.parametrize("content, culprit", [
    (None, "params file not found: params.yaml"),
    ("", "params file params.yaml is empty or not a mapping"),
    ("train: [unclosed", "params file params.yaml is not valid YAML"),
    ("- a list", "params file params.yaml is empty or not a mapping"),
])
def test_a_missing_empty_or_broken_params_file_is_one_line(tmp_path, content, culprit):
    if content is not None:
        (tmp_path / "params.yaml").write_text(content)
    assert_clean_failure(run_stage("check", ["--out", "out/passed"], tmp_path), tmp_path, culprit)


def _broken_data(workdir, tmp_path, what: str):
    bad = tmp_path / "prepared"
    shutil.copytree(workdir / "prepared", bad)
    if what == "empty_npz":
        np.savez(bad / "train.npz", x=np.zeros((0, 16, 16, 1), np.uint8), y=np.zeros(0, np.int64))
    elif what == "no_meta":
        (bad / "meta.json").unlink()
    elif what == "truncated":
        (bad / "val.npz").write_bytes((bad / "val.npz").read_bytes()[:100])
    return bad


@pytest.mark.parametrize("stage, make, culprit", [
    ("train", "empty_npz", "train.npz"),
    ("train", "no_meta", "meta.json"),
    ("train", "truncated", "val.npz"),
    ("shrink", "text_model", "not a Keras model file"),
    ("shrink", "folder_model", "a folder, but not a SavedModel"),
    ("shrink", "missing_model", "model not found"),
])
def test_a_corrupt_empty_or_missing_file_is_one_line(workdir, tmp_path, stage, make, culprit):
    data, model = "prepared", "trained.keras"
    if make in ("empty_npz", "no_meta", "truncated"):
        data = str(_broken_data(workdir, tmp_path, make))
    elif make == "text_model":
        model = str(tmp_path / "m.keras")
        (tmp_path / "m.keras").write_text("not a model")
    elif make == "folder_model":
        model = str(tmp_path / "folder")
        (tmp_path / "folder" / "variables").mkdir(parents=True)
    else:
        model = str(tmp_path / "gone.keras")
    args = (["--data", data, "--model", "out/m.keras", "--reports", "out/r", "--backup", "out/b"] if stage == "train"
            else ["--data", data, "--model-in", model, "--model-out", "out/s.keras", "--reports", "out/r"])
    assert_clean_failure(run_stage(stage, args, workdir), workdir, culprit)
