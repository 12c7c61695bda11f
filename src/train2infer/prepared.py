"""The prepared-data format, shared by every stage after prepare (no TensorFlow).

A prepared-data folder has ``train.npz``, ``val.npz`` and ``test.npz`` (``x``: uint8 images
N x H x W x C, ``y``: int64 labels) and ``meta.json`` (class names, image shape, source).
Pixels stay uint8 on disk; :func:`to_float` scales them to the float32 [0, 1] inputs every
model, exported or not, takes.
"""

from __future__ import annotations

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
