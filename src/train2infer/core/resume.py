"""Which run a resumable checkpoint belongs to (TF-free).

Train keeps a ``BackupAndRestore`` checkpoint so that a killed run, re-run, continues where it
stopped. Such a checkpoint may be resumed only by *the very run it belongs to*:

- its folder is named by a key of everything that defines the run (parameters, data, and this
  package's code: :func:`code_digest`), so a changed input never continues another run's weights;
- it records the state of ``dvc.lock`` when the run began (:func:`lineage`: the stage's entry and
  the file's modification time). After an interrupted run, ``dvc repro`` may restore the stage's
  outputs from the run cache without running it; a later forced run must then start afresh, not
  resume the stale checkpoint (and write other bytes than ``dvc.lock`` records). DVC rewrites
  ``dvc.lock`` whenever it records a stage (completed, or restored from the run cache), even
  with the same entry: the lineage differs and the checkpoint goes. Conservative on purpose: any
  other write of ``dvc.lock`` in between also drops it (a re-run from scratch, never a wrong one).
  Not covered: ``dvc checkout`` restores outputs without writing ``dvc.lock``.

Outside DVC (``DVC_ROOT`` and ``DVC_STAGE`` unset, which DVC sets for every stage command) the
lineage is empty and the key alone decides.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Mapping

LINEAGE_FILE = "lineage.txt"


def code_digest(package: str | os.PathLike | None = None) -> str:
    """A short hash of every ``.py`` file of the ``train2infer`` package (or ``package``)."""
    root = Path(package) if package else Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        digest.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()[:16]


def lineage(environ: Mapping[str, str] = os.environ) -> str:
    """A hash of ``dvc.lock``'s state now: this stage's entry and the file's modification time
    ("" when not run by DVC)."""
    import yaml

    root, stage = environ.get("DVC_ROOT"), environ.get("DVC_STAGE")
    if not root or not stage:
        return ""
    lock = Path(root) / "dvc.lock"
    try:
        mtime = lock.stat().st_mtime_ns
        entry = ((yaml.safe_load(lock.read_text()) or {}).get("stages") or {}).get(stage.rsplit(":", 1)[-1])
    except (OSError, yaml.YAMLError, AttributeError):
        mtime, entry = None, None
    blob = json.dumps([mtime, entry], sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def checkpoint_dir(root: str | os.PathLike, key: str, chief: bool, environ: Mapping[str, str] = os.environ):
    """This run's checkpoint folder under ``root``, and what became of an earlier one.

    The chief removes folders of other keys; this key's folder (``<key>-worker`` for a non-chief
    worker in multi-worker training) is kept only if its recorded lineage equals :func:`lineage`
    now.

    Returns:
        ``(folder, state)``: state is ``"new"`` (nothing to resume), ``"resume"`` (this run's
        interrupted state is there) or ``"stale"`` (a checkpoint of these settings was removed:
        DVC has recorded the stage since it was written).
    """
    root, now = Path(root), lineage(environ)
    folder = root / (key if chief else f"{key}-worker")
    if chief and root.is_dir():
        for other in root.iterdir():
            if other.name != key:
                shutil.rmtree(other, ignore_errors=True)
    state = "new"
    if folder.is_dir() and any(p.name != LINEAGE_FILE for p in folder.iterdir()):
        stamp = folder / LINEAGE_FILE
        recorded = stamp.read_text().strip() if stamp.is_file() else None
        state = "resume" if recorded == now else "stale"
        if state == "stale":
            shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LINEAGE_FILE).write_text(now + "\n")
    return folder, state
