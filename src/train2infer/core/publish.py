"""Atomic publication of stage outputs.

A stage writes everything into a private staging folder and moves the results into place
only when all of them were written, so a failing or killed stage never leaves an output
behind that DVC (or a person) could mistake for a valid one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from train2infer import Train2InferError


class Staging:
    """Scratch paths for a stage's declared outputs (see :func:`publish`).

    Call it with a final path to get the scratch path to write instead. Set ``keep`` to
    False to publish nothing (a non-chief worker in multi-worker training writes like the
    chief, as TensorFlow requires, but publishes nothing).
    """

    def __init__(self, mapping: dict[Path, Path], keep: bool):
        self.mapping, self.keep = mapping, keep

    def __call__(self, final: str | os.PathLike) -> Path:
        try:
            return self.mapping[Path(final)]
        except KeyError:
            raise KeyError(f"{final} is not a declared output of this block") from None


@contextlib.contextmanager
def publish(*outputs: str | os.PathLike, keep: bool = True) -> Iterator[Staging]:
    """Stage outputs in a scratch folder and move them into place on success.

    Args:
        *outputs: Final paths (files or folders) the block will produce.
        keep: False to discard everything written (see :class:`Staging`).

    Yields:
        A :class:`Staging`: maps one of ``outputs`` to the scratch path to write instead.
        Parent folders of the scratch path exist already.

    Raises:
        Train2InferError: If the block finished without writing a declared output.

    On any exception inside the block the scratch folder is removed and no final path
    is touched.
    """
    scratch = Path(tempfile.mkdtemp(prefix=".t2i-staging-", dir=Path.cwd()))
    mapping = {}
    for i, final in enumerate(Path(p) for p in outputs):
        mapping[final] = scratch / str(i) / final.name
        mapping[final].parent.mkdir(parents=True, exist_ok=True)
    staging = Staging(mapping, keep)
    try:
        yield staging
        if not staging.keep:
            return
        missing = [str(f) for f, s in mapping.items() if not s.exists()]
        if missing:
            raise Train2InferError(f"stage did not write its declared outputs: {', '.join(missing)}")
        for final, staged in mapping.items():
            final.parent.mkdir(parents=True, exist_ok=True)
            remove(final)
            os.replace(staged, final)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def remove(path: str | os.PathLike) -> None:
    """Remove a file or folder if it exists."""
    p = Path(path)
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()


def write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented JSON with a trailing newline."""
    Path(path).write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def read_json(path: str | os.PathLike, what: str = "file"):
    """Read JSON, turning a missing or corrupt file into one clear error.

    Args:
        path: File to read.
        what: What the file is, for the error message.

    Raises:
        Train2InferError: If the file is missing, empty or not valid JSON.
    """
    p = Path(path)
    if not p.is_file():
        raise Train2InferError(f"{what} not found: {p}")
    text = p.read_text(encoding="utf-8")
    if not text.strip():
        raise Train2InferError(f"{what} is empty: {p}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise Train2InferError(f"{what} is not valid JSON: {p} ({exc.msg} at line {exc.lineno})") from None


ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry


def stable_zip(path: str | os.PathLike, edit=None) -> None:
    """Rewrite a zip archive so that the same contents give the same bytes.

    Every entry gets the fixed time :data:`ZIP_EPOCH` (libraries stamp the time of saving),
    keeping its order, name, compression and permission bits.

    Args:
        path: The archive (e.g. a ``.keras`` file), rewritten in place (atomically).
        edit: Optional ``edit(name, data) -> data`` applied to every entry's bytes, e.g. to
            drop a save date from a metadata file.
    """
    import zipfile

    src = Path(path)
    tmp = src.with_name(src.name + ".stable")
    try:
        with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp, "w") as zout:
            for info in zin.infolist():
                data = zin.read(info)
                out = zipfile.ZipInfo(info.filename, date_time=ZIP_EPOCH)
                out.compress_type, out.external_attr = info.compress_type, info.external_attr
                zout.writestr(out, edit(info.filename, data) if edit else data)
        os.replace(tmp, src)
    finally:
        remove(tmp)
