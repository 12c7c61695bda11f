"""Helpers shared by the tests (imported as a module, not through conftest)."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

# Few steps, small images: every stage runs in seconds on 2 cores.
TINY = [
    "prepare.image_size=16",
    "model.filters=[8,16]",
    "model.convs_per_stage=1",
    "model.dense_units=32",
    "train.epochs=3",
    "shrink.epochs=1",
    "prune.epochs=2",
    "prune.frequency=5",
    "convert.check_images=20",
    "evaluate.warmup_runs=5",
    "evaluate.min_runs=200",
    "evaluate.min_seconds=0",
    "evaluate.min_seconds_others=0",
    "evaluate.runs_per_round=20",
    "evaluate.threads=[1,2]",  # two thread counts, as the default [1, 0] on 2 cores
    "evaluate.batch_sizes=[1,4]",
    "evaluate.throughput_seconds=0.05",
]

# For experiments run on top of a TINY project: latency at one thread count, no throughput sweep and
# LiteRT only (the SavedModels are still exported, not timed): 13 measurement processes, one of them
# loading TensorFlow (the baseline), where the TINY run itself starts 34, 10 loading TensorFlow (the
# e2e test checks all 17 variants at both thread counts there).
ONE_THREAD = ["evaluate.threads=[1]", "evaluate.batch_sizes=[1]", "evaluate.runtimes=[litert]"]


# Standard architectures whose per-architecture checks run in `make test`: a residual network and one
# with depthwise convolutions, squeeze-excite and hard-swish. The others (DenseNet121's concatenations,
# EfficientNetB0, MobileNetV2, MobileNetV3Large: 15-45 s each per check here) run in `make test-archs`,
# which CI runs too; `make test` covers concatenations on a user's model (tests/test_groups.py).
IN_MAKE_TEST = ("MobileNetV3Small", "ResNet50")


def arch_params(archs) -> list:
    """``archs`` as parametrize values, those not in :data:`IN_MAKE_TEST` marked ``archs``."""
    return [a if a in IN_MAKE_TEST else pytest.param(a, marks=pytest.mark.archs) for a in archs]


def compose(overrides=()):
    """Compose conf/ exactly as DVC's Hydra integration does, plus overrides."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        cfg = hydra_compose(config_name="config", overrides=list(overrides))
    OmegaConf.resolve(cfg)
    return cfg


def params(overrides=()):
    """The validated :class:`train2infer.config.Params` of conf/ composed with ``overrides``."""
    from train2infer import config

    return config.from_tree(compose(overrides))


def write_params(path: Path, overrides=()) -> Path:
    """params.yaml composed from conf/ with ``overrides``."""
    from omegaconf import OmegaConf

    path.write_text(OmegaConf.to_yaml(compose(overrides)))
    return path


def random_images(n: int, size: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, channels), dtype=np.uint8)


def run_stage(name: str, args: list[str], cwd: Path, timeout: int = 600, env: dict | None = None):
    """Run a stage script as DVC would, in ``cwd`` (for exit codes and stderr)."""
    env = dict(os.environ, PYTHONPATH=str(SRC), **(env or {}))
    return subprocess.run([sys.executable, str(ROOT / "stages" / f"{name}.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_clean_failure(proc, wd: Path, *needles: str, out: str = "out", code: int = 2) -> str:
    """Exit ``code`` (2: bad input), one ``error:`` line with every needle, no traceback, nothing written."""
    assert proc.returncode == code, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), proc.stderr[-3000:]
    for needle in needles:
        assert needle in last, last
    assert "Traceback" not in proc.stderr
    assert not (wd / out).exists()
    assert not list(wd.glob(".t2i-staging-*"))
    return last


def tool_env() -> dict:
    """Environment for real dvc/git runs: the venv's python first on PATH, a git identity."""
    return dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
                DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.invalid",
                GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.invalid")


def _tool(cmd: list[str], cwd: Path, check: bool = True):
    proc = subprocess.run(cmd, cwd=cwd, env=tool_env(), capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}")
    return proc


def dvc(*args: str, cwd: Path, check: bool = True):
    """Run the real dvc CLI of this environment."""
    return _tool([sys.executable, "-m", "dvc", *args], cwd, check)


def run_queue(proj: Path, log: Path, jobs: int = 2, deadline_s: float = 1500, restarts: int = 3) -> str:
    """``dvc queue start -j jobs`` in ``proj`` and wait until no task is queued or running; return
    the last ``dvc queue status``.

    The workers are forked from ``dvc queue start`` and keep its standard output open until they exit,
    so that output goes to ``log``, never to a pipe: a pipe would hold the call until every experiment
    had run (CI hit its 900-s timeout there). DVC's workers can also stop with tasks still queued
    (treeverse/dvc#10562); then, as the report there does, the queue is started again, at most
    ``restarts`` times. On the deadline the status and each unfinished task's log end the test.
    """
    def start():
        with open(log, "a") as out:
            subprocess.run([sys.executable, "-m", "dvc", "queue", "start", "-j", str(jobs)], cwd=proj,
                           env=tool_env(), stdout=out, stderr=subprocess.STDOUT, timeout=300, check=True)

    start()
    deadline, idle_since = time.monotonic() + deadline_s, None
    while time.monotonic() < deadline:
        status = dvc("queue", "status", cwd=proj).stdout
        if "Queued" not in status and "Running" not in status:
            return status
        stalled = "Running" not in status and "0 active, 0 idle" in status
        idle_since = (idle_since or time.monotonic()) if stalled else None
        if idle_since and time.monotonic() - idle_since > 60 and restarts > 0:  # booting takes < 60 s
            restarts, idle_since = restarts - 1, None
            with open(log, "a") as out:
                out.write(f"no worker for 60 s, tasks queued; starting again:\n{status}\n")
            start()
        time.sleep(5)
    tasks = [line.split()[0] for line in status.splitlines()[1:] if "Queued" in line or "Running" in line]
    logs = "".join(f"\n--- dvc queue logs {t}:\n" + dvc("queue", "logs", t, cwd=proj, check=False).stdout[-2000:]
                   for t in tasks)
    raise AssertionError(f"the queue did not finish in {deadline_s:.0f} s:\n{status}{logs}\n"
                         f"--- {log.name}:\n{log.read_text()[-2000:]}")


def git(*args: str, cwd: Path, check: bool = True):
    return _tool(["git", *args], cwd, check)


def make_project(dst: Path, overrides: list[str]) -> Path:
    """Copy the git-tracked project to ``dst``, compose params.yaml with ``overrides`` (as DVC
    does), and commit it in a fresh git repository."""
    from dvc.utils.hydra import compose_and_dump

    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for rel in filter(None, files.split("\0")):
        if (ROOT / rel).is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dst / rel)
    compose_and_dump(dst / "params.yaml", str(dst / "conf"), None, "config", str(dst), list(overrides))
    git("init", "-q", cwd=dst)
    git("add", "-A", cwd=dst)
    git("commit", "-qm", "project", cwd=dst)
    return dst


def run_project(dst: Path, overrides: list[str]) -> tuple[Path, str]:
    """:func:`make_project`, then one real `dvc repro` whose results are committed; returns the
    folder and what `dvc repro` printed."""
    make_project(dst, overrides)
    ran = dvc("repro", cwd=dst)
    git("add", "-A", cwd=dst)
    git("commit", "-qm", "dvc repro", cwd=dst)
    return dst, ran.stdout + ran.stderr


def shared_project(factory, dst: Path) -> tuple[Path, str]:
    """A copy at ``dst`` of one TINY project after :func:`run_project` (its first `dvc repro`,
    committed), and what that repro printed. The project is built once per test run and shared by
    the pytest-xdist workers (a file lock; ``PYTEST_XDIST_TESTRUNUID`` names the run): the e2e,
    sweep, remote and reproducibility tests all start from the same from-scratch run instead of
    each repeating it. Every copy is a whole folder (git, DVC cache, outputs): tests may change it.
    """
    import fcntl

    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    root = factory.getbasetemp().parent / f"shared-{run}" if run else factory.getbasetemp() / "shared"
    root.mkdir(exist_ok=True)
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "done").exists():
            shutil.rmtree(root / "proj", ignore_errors=True)
            _, out = run_project(root / "proj", TINY)
            (root / "repro.log").write_text(out)
            (root / "done").touch()
    shutil.copytree(root / "proj", dst, symlinks=True)
    return dst, (root / "repro.log").read_text()


def module_file(name: str) -> Path | None:
    """The file of module ``train2infer.<name>`` (dotted), or None."""
    base = SRC / "train2infer" / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def library_imports(path: Path, seen: set[str] | None = None) -> set[str]:
    """train2infer modules (dotted, without the prefix) a file imports or runs
    (``python -m train2infer.x``), transitively, including lazy imports (AST, no execution).
    Importing ``a.b`` also imports the package ``a`` (its ``__init__``)."""
    seen = set() if seen is None else seen
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = re.findall(r"^train2infer\.([\w.]+)$", node.value)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("train2infer"):
            base = node.module[len("train2infer"):].lstrip(".")
            names = [f"{base}.{a.name}".lstrip(".") for a in node.names]
            names = [n if module_file(n) else base for n in names]
        elif isinstance(node, ast.Import):
            names = [a.name[len("train2infer."):] for a in node.names if a.name.startswith("train2infer.")]
        for name in filter(None, names):
            parts = name.split(".")
            for k in range(1, len(parts) + 1):
                mod = ".".join(parts[:k])
                f = module_file(mod)
                if f is not None and mod not in seen:
                    seen.add(mod)
                    library_imports(f, seen)
    return seen


def kill_classes(model, deps, classes) -> None:
    """Make channel ``classes`` exactly 0 wherever they are read, by construction: their output
    filters and biases zeroed in every layer that carries them, BatchNorm gamma and beta 0 (so
    ReLU, ReLU6, swish and hard-swish give 0, squeeze-excite multiplies 0 by its gate)."""
    import tf_keras as keras

    from train2infer.models import groups

    L = keras.layers
    classes = np.array(sorted(classes))
    for tensor, ids in deps.index.items():
        at = np.flatnonzero(np.isin(ids, classes))
        layer = model.get_layer(tensor)
        w = layer.get_weights()
        if not len(at) or not w:
            continue
        if isinstance(layer, L.BatchNormalization):
            w[0][at], w[1][at] = 0, 0
        elif isinstance(layer, L.DepthwiseConv2D):
            w[0][:, :, at // w[0].shape[-1], at % w[0].shape[-1]] = 0
        elif groups.is_reader(layer):
            w[1 if isinstance(layer, L.SeparableConv2D) else 0][..., at] = 0
        else:
            continue
        if getattr(layer, "use_bias", False):
            w[-1][at] = 0
        layer.set_weights(w)


def shuffle_batchnorm(model, seed: int = 0) -> None:
    """Random BatchNorm statistics, so that a freshly built model is not an identity at inference."""
    import tf_keras as keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, a.shape).astype(a.dtype) if "gamma" in v.name or "variance"
                               in v.name else rng.normal(0, 0.1, a.shape).astype(a.dtype)
                               for v, a in zip(layer.weights, layer.get_weights())])
