"""Shared fixtures: the real conf/ composed with tiny overrides, and tiny real models.

Importing train2infer first sets TF_USE_LEGACY_KERAS=1 before TensorFlow loads. The CPU is
split into two logical devices so that MirroredStrategy can be exercised without a GPU.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import train2infer  # noqa: F401  (first, before anything imports TensorFlow)

import numpy as np
import pytest

from train2infer import distribute

distribute.split_cpu(2)  # before TensorFlow's runtime starts: MirroredStrategy gets 2 replicas

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "stages"))

# Few steps, small images: every stage runs in seconds on 2 cores.
TINY = [
    "data.image_size=16",
    "model.filters=[8,16]",
    "model.convs_per_stage=1",
    "model.dense_units=32",
    "train.epochs=3",
    "prune.epochs=2",
    "prune.frequency=5",
    "prune.channels.epochs=1",
    "convert.check_images=20",
    "evaluate.warmup_runs=5",
    "evaluate.min_runs=200",
    "evaluate.min_seconds=0",
    "evaluate.runs_per_round=20",
    "evaluate.threads=[1,2]",  # two thread counts, as the default [1, 0] on 2 cores
    "evaluate.batch_sizes=[1,4]",
    "evaluate.throughput_seconds=0.05",
]


def compose(overrides: list[str] = ()):
    """Compose conf/ exactly as DVC's Hydra integration does, plus overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        cfg = hydra_compose(config_name="config", overrides=list(overrides))
    OmegaConf.resolve(cfg)
    return cfg


@pytest.fixture(scope="session")
def tiny_cfg():
    return compose(TINY)


@pytest.fixture(scope="session")
def digits(tiny_cfg):
    """Prepared tiny digits splits: {"train": (x, y), "val": ..., "test": ...}, class names."""
    from train2infer import data, sources

    images, labels, names = sources.load_digits(tiny_cfg.data.image_size, tiny_cfg.data.channels)
    idx = data.stratified_split(labels, tiny_cfg.data.val_fraction, tiny_cfg.data.test_fraction, tiny_cfg.seed)
    return {s: (images[i], labels[i]) for s, i in idx.items()}, names


@pytest.fixture(scope="session")
def trained(tiny_cfg, digits):
    """A tiny CNN really trained on tiny digits (default strategy)."""
    import tf_keras as keras

    from train2infer import config, distribute, models, training

    splits, names = digits
    mcfg = config.section(tiny_cfg, "model")
    options = {k: v for k, v in config.as_dict(mcfg).items() if k != "name"}
    keras.utils.set_random_seed(0)
    model, info = training.fit_classifier(
        lambda: models.build_model("cnn", splits["train"][0].shape[1:], len(names), 0, **options),
        distribute.select_strategy("default"),
        splits["train"],
        splits["val"],
        epochs=6,
        batch_size=32,
        learning_rate=0.003,
        scale_learning_rate=False,
        seed=0,
        verbose=0,
    )
    return model


def run_stage(name: str, args: list[str], cwd: Path, timeout: int = 600, env: dict | None = None):
    """Run a stage script as DVC would, in ``cwd``; returns the CompletedProcess."""
    import subprocess

    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), **(env or {}))
    return subprocess.run(
        [sys.executable, str(ROOT / "stages" / f"{name}.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def random_images(n: int, size: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, channels), dtype=np.uint8)


def tool_env() -> dict:
    """Environment for real dvc/git runs: the venv's python first on PATH, a git identity."""
    bin_dir = str(Path(sys.executable).parent)
    return dict(
        os.environ,
        PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""),
        DVC_NO_ANALYTICS="1",
        GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.invalid",
        GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.invalid",
    )


def _tool(cmd: list[str], cwd: Path, check: bool = True):
    import subprocess

    proc = subprocess.run(cmd, cwd=cwd, env=tool_env(), capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def dvc(*args: str, cwd: Path, check: bool = True):
    """Run the real dvc CLI of this environment."""
    return _tool([sys.executable, "-m", "dvc", *args], cwd, check)


def git(*args: str, cwd: Path, check: bool = True):
    return _tool(["git", *args], cwd, check)


def make_project(dst: Path, overrides: list[str]) -> Path:
    """Copy the git-tracked project to ``dst``, compose params.yaml with ``overrides``
    (as DVC does), and commit it in a fresh git repository."""
    import shutil
    import subprocess

    from dvc.utils.hydra import compose_and_dump

    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for rel in filter(None, files.split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    compose_and_dump(dst / "params.yaml", str(dst / "conf"), None, "config", str(dst), list(overrides))
    git("init", "-q", cwd=dst)
    git("add", "-A", cwd=dst)
    git("commit", "-qm", "project", cwd=dst)
    return dst
