"""Data sources, splitting, the prepared-data format and the tf.data input pipeline.

Prepared data is a folder with ``train.npz``, ``val.npz`` and ``test.npz`` (``x``: uint8
images N x H x W x C, ``y``: int64 labels) and ``meta.json`` (class names, image shape,
source). Pixels stay uint8 on disk; :func:`make_dataset` scales them to [0, 1] floats,
which is also the input every exported model expects.

Only :func:`make_dataset` needs TensorFlow, and imports it lazily.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from train2infer import Train2InferError
from train2infer.io import read_json, write_json

SPLITS = ("train", "val", "test")


class DataError(Train2InferError):
    """Input data is missing, corrupt or unusable."""


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 N x H x W x C images (C = 1 or 3) to N x size x size x C, bilinear."""
    from PIL import Image

    n, h, w, c = images.shape
    if (h, w) == (size, size):
        return images.copy()
    out = np.empty((n, size, size, c), dtype=np.uint8)
    mode = {1: "L", 3: "RGB"}[c]
    for i in range(n):
        img = Image.fromarray(images[i] if c == 3 else images[i, :, :, 0], mode=mode)
        out[i] = np.asarray(img.resize((size, size), Image.BILINEAR)).reshape(size, size, c)
    return out


def min_class_size(val_fraction: float, test_fraction: float) -> int:
    """The fewest examples a class needs for one in each non-empty split (rounding as the split does)."""
    n = 1
    while True:
        n_test, n_val = int(round(n * test_fraction)), int(round(n * val_fraction))
        if (n_test >= 1 or test_fraction == 0) and n_val >= 1 and n - n_test - n_val >= 1:
            return n
        n += 1


def stratified_split(
    labels: np.ndarray,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    class_names: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Indices of a stratified train/val/test split, deterministic for a seed.

    Args:
        labels: Integer class label per example.
        val_fraction: Share of each class for validation.
        test_fraction: Share of each class for testing (0: no test split, e.g. when the
            source has its own).
        seed: Random seed.
        class_names: Names for error messages (default: the label numbers).

    Returns:
        ``{"train": idx, "val": idx, "test": idx}``, each sorted.

    Raises:
        DataError: If a class has too few examples to appear in every split.
    """
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        n = len(idx)
        n_test = int(round(n * test_fraction))
        n_val = int(round(n * val_fraction))
        if (n_test < 1 and test_fraction > 0) or n_val < 1 or n - n_test - n_val < 1:
            name = class_names[int(cls)] if class_names is not None else int(cls)
            need = min_class_size(val_fraction, test_fraction)
            raise DataError(
                f"class {name!r} has {n} example{'s' if n != 1 else ''}, too few for a train/val/test "
                f"split with val_fraction={val_fraction} and test_fraction={test_fraction} "
                f"(needs at least {need})"
            )
        idx = rng.permutation(idx)
        parts["test"].append(idx[:n_test])
        parts["val"].append(idx[n_test : n_test + n_val])
        parts["train"].append(idx[n_test + n_val :])
    return {s: np.sort(np.concatenate(parts[s])) for s in SPLITS}


def summarize(splits: dict[str, tuple[np.ndarray, np.ndarray]], class_names: Sequence[str]) -> dict:
    """Counts per class and split, and the image shape, for the prepare report."""
    any_x = next(iter(splits.values()))[0]
    counts = {}
    for name, (_, y) in splits.items():
        c = Counter(int(v) for v in y)
        counts[name] = {class_names[k]: c.get(k, 0) for k in range(len(class_names))}
    return {
        "image_shape": list(any_x.shape[1:]),
        "num_classes": len(class_names),
        "class_names": list(class_names),
        "sizes": {name: int(len(y)) for name, (_, y) in splits.items()},
        "counts": counts,
    }


def save_prepared(
    folder: str | Path,
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    class_names: Sequence[str],
    source: str,
) -> None:
    """Write the prepared-data folder (see the module docstring)."""
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


def make_dataset(
    x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool, seed: int, drop_remainder: bool = False
):
    """A tf.data pipeline: scale to [0, 1], cache, shuffle per epoch, batch, prefetch.

    Args:
        x: uint8 images.
        y: Integer labels.
        batch_size: Global batch size.
        shuffle: Reshuffle every epoch (training).
        seed: Shuffle seed.
        drop_remainder: Drop the last partial batch.

    Returns:
        A ``tf.data.Dataset`` of ``(float32 images, int64 labels)`` batches.
    """
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y))
    ds = ds.map(lambda a, b: (tf.cast(a, tf.float32) / 255.0, b), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    options = tf.data.Options()
    # In-memory data has no files to shard: multi-worker training shards by element.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def input_throughput(dataset, min_seconds: float = 1.0) -> dict:
    """Images/s the input pipeline alone delivers, after one pass that fills its cache.

    A benchmark for "does the input keep the trainer busy": compare with the training
    throughput (the trainer consumes images far slower than this when the answer is yes).

    Args:
        dataset: A batched ``tf.data.Dataset`` of ``(images, labels)``, finite.
        min_seconds: Keep re-reading it until this much time has passed (at least one pass).

    Returns:
        ``{"images_per_second", "passes", "seconds"}``.
    """
    import time

    for _ in dataset:  # warm-up pass: traces the map function and fills the cache
        pass
    images, passes, start = 0, 0, time.perf_counter()
    while True:
        for xb, _ in dataset:
            images += int(xb.shape[0])
        passes += 1
        seconds = time.perf_counter() - start
        if seconds >= min_seconds:
            break
    return {"images_per_second": round(images / seconds, 1), "passes": passes, "seconds": round(seconds, 3)}
