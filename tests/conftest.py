"""Shared fixtures: the real conf/ composed with tiny overrides, and tiny real data and models.

Importing train2infer first sets TF_USE_LEGACY_KERAS=1 before TensorFlow loads. The CPU is
split into two logical devices so that MirroredStrategy can be exercised without a GPU.
Helpers that tests import live in ``helpers.py``.
"""

from __future__ import annotations

import shutil
import sys

import train2infer  # noqa: F401  (first, before anything imports TensorFlow)

# isort: split

import pytest

from helpers import ROOT, TINY, params, write_params

sys.path.insert(0, str(ROOT / "tools"))


def pytest_configure(config):
    import os

    from train2infer import distribute

    distribute.split_cpu(2)  # before TensorFlow's runtime starts: MirroredStrategy gets 2 replicas
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # `make test` runs two workers on two cores: one thread per op each, or their thread
        # pools fight (half of the CPU time went to the kernel). Subprocesses are not affected.
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)


@pytest.hookimpl(trylast=True)  # after -m has deselected: ``items`` is what runs
def pytest_collection_modifyitems(config, items):
    """`make test` runs two workers with ``--dist worksteal``: each first takes one half of this
    list, in order, and an idle one then steals from the other. The queued sweep (about ten minutes
    alone) leads the first half and the next-longest tests not built on the shared project lead the
    second, so that neither worker is left with one long test at the end."""
    first = [i for i in items if i.path.name == "test_sweep.py"]
    second = [i for i in items if i.path.name in ("test_interrupt.py", "test_distributed.py")]
    if not first:
        return
    rest = [i for i in items if i not in first and i not in second]
    cut = max(0, len(items) // 2 - len(first))
    items[:] = first + rest[:cut] + second + rest[cut:]


@pytest.fixture(scope="session")
def tiny():
    """The validated Params of conf/ with the TINY overrides."""
    return params(TINY)


@pytest.fixture(scope="session")
def digits(tiny):
    """Prepared tiny digits splits: {"train": (x, y), "val": ..., "test": ...}, class names."""
    from train2infer.prepare import sources, split

    images, labels, names = sources.load_digits(tiny.prepare.image_size, tiny.prepare.channels)
    idx = split.stratified_split(labels, tiny.prepare.val_fraction, tiny.prepare.test_fraction, tiny.seed)
    return {s: (images[i], labels[i]) for s, i in idx.items()}, names


@pytest.fixture(scope="session")
def prepared(tmp_path_factory, digits):
    """The tiny digits as a prepared-data folder."""
    from train2infer.prepared import save_prepared

    folder = tmp_path_factory.mktemp("prepared") / "prepared"
    splits, names = digits
    save_prepared(folder, splits, names, "digits")
    return folder


@pytest.fixture(scope="session")
def trained(tiny, digits):
    """A tiny CNN really trained on tiny digits (default strategy)."""
    import tf_keras as keras

    from train2infer import distribute, fit
    from train2infer.models import builders, config as model_config

    splits, names = digits
    keras.utils.set_random_seed(0)
    model, _ = fit.fit_classifier(
        lambda: builders.build_model("cnn", splits["train"][0].shape[1:], len(names), 0,
                                     **model_config.options(tiny.model)),
        distribute.select_strategy("default"), splits["train"], splits["val"], epochs=6, batch_size=32,
        learning_rate=0.003, scale_learning_rate=False, seed=0, verbose=0)
    return model


@pytest.fixture(scope="session")
def trained_file(tmp_path_factory, trained):
    """The tiny trained CNN saved as a .keras file."""
    from train2infer.models.io import save_for_inference

    path = tmp_path_factory.mktemp("models") / "trained.keras"
    save_for_inference(trained, path)
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, prepared, trained_file):
    """Tiny params, prepared data and a trained model, as the stages expect them (one per test module)."""
    wd = tmp_path_factory.mktemp("stages")
    write_params(wd / "params.yaml", TINY)
    shutil.copytree(prepared, wd / "prepared")
    shutil.copyfile(trained_file, wd / "trained.keras")
    return wd
