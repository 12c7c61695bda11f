"""The prepared-data format, shared by every stage after prepare (no TensorFlow).

A prepared-data folder has ``train.npz``, ``val.npz`` and ``test.npz`` (``x``: uint8 images
N x H x W x C, ``y``: int64 labels) and ``meta.json`` (class names, image shape, source).
Pixels stay uint8 on disk; :func:`to_float` scales them to the float32 [0, 1] inputs every
model, exported or not, takes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from train2infer import Train2InferError
from train2infer.core.publish import read_json, write_json

SPLITS = ("train", "val", "test")


class DataError(Train2InferError):
    """Input data is missing, corrupt or unusable."""


def save_prepared(
    folder: str | Path,
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    class_names: Sequence[str],
    source: str,
) -> None:
    """Write the prepared-data folder (see the module docstring); the same splits give the
    same bytes (``np.savez`` gives every entry the zip format's fixed default time)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, (x, y) in splits.items():
        np.savez(folder / f"{name}.npz", x=x.astype(np.uint8), y=y.astype(np.int64))
    x0 = next(iter(splits.values()))[0]
    write_json(
        folder / "meta.json",
        {"source": source, "class_names": list(class_names), "image_shape": list(x0.shape[1:])},
    )


def load_prepared(folder: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of a prepared-data folder.

    Raises:
        DataError: If the folder or file is missing, corrupt, empty or inconsistent.
    """
    path = Path(folder) / f"{split}.npz"
    if not path.is_file():
        raise DataError(f"prepared data not found: {path} (run the prepare stage)")
    try:
        with np.load(path, allow_pickle=False) as f:
            x, y = f["x"], f["y"]
    except Exception as exc:
        raise DataError(f"prepared data is corrupt: {path} ({type(exc).__name__})") from None
    if x.ndim != 4 or len(x) == 0 or len(x) != len(y):
        raise DataError(f"prepared data is empty or malformed: {path} (x {x.shape}, y {y.shape})")
    return x, y


def load_meta(folder: str | Path) -> dict:
    """The ``meta.json`` of a prepared-data folder."""
    return read_json(Path(folder) / "meta.json", "prepared data metadata")


def to_float(x: np.ndarray) -> np.ndarray:
    """uint8 pixels to the float32 [0, 1] inputs the models take."""
    return x.astype(np.float32) / 255.0


# --------------------------------------------------------------------------- before decoding
# What the prepare stage will make, known from the files and the parameters alone: the check
# stage uses it for data-dependent checks before any stage with outputs runs.


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """``(train, val, test)`` examples of one class of ``n`` in a stratified split (the rounding
    :func:`train2infer.prepare.split.stratified_split` uses)."""
    n_test, n_val = int(round(n * test_fraction)), int(round(n * val_fraction))
    return n - n_test - n_val, n_val, n_test


def image_extensions() -> tuple[str, ...]:
    """Every file extension Pillow can open here (PNG, JPEG, BMP, GIF, PPM/PGM, TIFF, WebP, …)."""
    from PIL import Image

    Image.init()
    return tuple(sorted(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN))


@dataclass
class FolderScan:
    """What :func:`scan_folder` found under a root.

    Attributes:
        class_names: Class folders that hold at least one image file, sorted.
        files: Image files per class (same order as ``class_names``).
        ignored: Files that are not images by extension, or not inside a class folder.
        empty_classes: Class folders without any image file (left out).
    """

    class_names: list[str]
    files: list[list[Path]]
    ignored: list[str] = field(default_factory=list)
    empty_classes: list[str] = field(default_factory=list)


def scan_folder(root: str | Path) -> FolderScan:
    """List the image files of ``root/<class name>/...`` (class folders searched recursively).

    Hidden files and folders (``.name``) are not looked at. Extensions are matched
    case-insensitively against :func:`image_extensions`.

    Raises:
        DataError: If ``root`` is missing, not a folder, or has no class folders.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"image folder {root}: folder not found")
    if not root.is_dir():
        raise DataError(f"image folder {root}: not a folder (expected {root}/<class name>/<images>)")
    ignored: list[str] = []
    class_dirs = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            class_dirs.append(entry)
        else:
            ignored.append(entry.relative_to(root).as_posix())
    if not class_dirs:
        raise DataError(f"image folder {root}: no class folders (expected {root}/<class name>/<images>)")
    names, files, empty = [], [], []
    extensions = image_extensions()
    for d in class_dirs:
        found = []
        for dirpath, dirnames, filenames in os.walk(d):
            dirnames[:] = sorted(n for n in dirnames if not n.startswith("."))
            for fn in sorted(filenames):
                if fn.startswith("."):
                    continue
                p = Path(dirpath) / fn
                if p.suffix.lower() in extensions:
                    found.append(p)
                else:
                    ignored.append(p.relative_to(root).as_posix())
        if found:
            names.append(d.name)
            files.append(found)
        else:
            empty.append(d.name)
    return FolderScan(names, files, ignored, empty)
