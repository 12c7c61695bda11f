"""Which checkpoint a run may resume (TF-free unit tests of train2infer.core.resume)."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from train2infer.core import resume


def _env(root):
    return {"DVC_ROOT": str(root), "DVC_STAGE": "train"}


def _lock(root, epochs: int):
    (root / "dvc.lock").write_text(f"schema: '2.0'\nstages:\n  train:\n    params:\n      epochs: {epochs}\n")


def test_code_digest_follows_every_source_file(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "sub" / "b.py").write_text("y = 2\n")
    before = resume.code_digest(pkg)
    assert resume.code_digest(pkg) == before
    (pkg / "sub" / "b.py").write_text("y = 3\n")
    assert resume.code_digest(pkg) != before
    assert resume.code_digest() == resume.code_digest()  # the installed package: stable


def test_lineage_changes_when_dvc_records_the_stage_even_with_the_same_entry(tmp_path):
    assert resume.lineage({}) == ""  # not run by DVC: the key alone decides
    _lock(tmp_path, 3)
    first = resume.lineage(_env(tmp_path))
    assert resume.lineage(_env(tmp_path)) == first  # untouched: the same run
    time.sleep(0.01)
    _lock(tmp_path, 3)  # DVC rewrote it (a run-cache restore writes the same entry again)
    assert resume.lineage(_env(tmp_path)) != first
    (tmp_path / "dvc.lock").unlink()
    assert resume.lineage(_env(tmp_path)) not in ("", first)  # no lock yet is a state too


def test_checkpoint_dir_resumes_only_its_own_run(tmp_path):
    root, env = tmp_path / "backup", _env(tmp_path)
    _lock(tmp_path, 3)
    (root / "otherkey" / "checkpoint").mkdir(parents=True)
    folder, state = resume.checkpoint_dir(root, "k1", True, env)
    assert (folder, state) == (root / "k1", "new")
    assert not (root / "otherkey").exists()  # another run's settings: gone
    (folder / "checkpoint").mkdir()  # the run is interrupted after an epoch
    assert resume.checkpoint_dir(root, "k1", True, env)[1] == "resume"  # re-run: continues
    os.utime(tmp_path / "dvc.lock", ns=(1, 1))  # DVC has recorded the stage since
    folder, state = resume.checkpoint_dir(root, "k1", True, env)
    assert state == "stale" and not (folder / "checkpoint").exists()  # removed: starts afresh
    assert resume.checkpoint_dir(root, "k1", True, env)[1] == "new"
    worker, state = resume.checkpoint_dir(root, "k1", False, env)
    assert worker == root / "k1-worker" and state == "new" and (root / "k1").is_dir()


@pytest.mark.parametrize("augment", ["none", "flip_translate"])
def test_a_resumed_fit_gives_the_same_bytes_as_an_uninterrupted_one(tmp_path, tiny, digits, augment):
    """Same inputs, same bytes, interrupted or not (issue): epoch e's data order and augmentation
    are a function of (seed, e), so a run that died after epoch 2 and resumed from its
    BackupAndRestore checkpoint ends with exactly the weights of a run that never stopped."""
    import dataclasses

    import tf_keras as keras

    from train2infer import fit
    from train2infer.models.builders import build_model
    from train2infer.models.config import options

    splits, names = digits
    rec = dataclasses.replace(fit.recipe(tiny.train, "digits"), flip="flip" in augment,
                              translate=2 if augment != "none" else 0)

    def run(callbacks):
        strategy = fit.setup(tiny.train, tiny.seed)
        build = lambda: build_model(tiny.model.name, splits["train"][0].shape[1:], len(names), tiny.seed,  # noqa: E731
                                    **options(tiny.model))
        model, _ = fit.fit_classifier(build, strategy, splits["train"], splits["val"], epochs=4, batch_size=64,
                                      learning_rate=0.002, scale_learning_rate=False, seed=tiny.seed,
                                      callbacks=callbacks, verbose=0, rec=rec)
        return [w.copy() for w in model.get_weights()]

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("killed after epoch 2")

    whole = run([])
    with pytest.raises(RuntimeError, match="killed"):
        run([keras.callbacks.BackupAndRestore(str(tmp_path / "b")), Crash()])
    resumed = run([keras.callbacks.BackupAndRestore(str(tmp_path / "b"))])
    assert all(np.array_equal(a, b) for a, b in zip(whole, resumed))
    fresh = run([])
    assert all(np.array_equal(a, b) for a, b in zip(whole, fresh))  # (and a plain re-run is the same, of course)
