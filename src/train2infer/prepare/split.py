"""Stratified train/val/test splits and the counts the prepare summary reports."""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np

from train2infer.prepared import SPLITS, DataError, split_sizes


def min_class_size(val_fraction: float, test_fraction: float) -> int:
    """The fewest examples a class needs for one in each non-empty split (rounding as the split does)."""
    n = 1
    while True:
        n_test, n_val = int(round(n * test_fraction)), int(round(n * val_fraction))
        if (n_test >= 1 or test_fraction == 0) and (n_val >= 1 or val_fraction == 0) and n - n_test - n_val >= 1:
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
        val_fraction: Share of each class for validation (0: none, when the source has its own).
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
        _, n_val, n_test = split_sizes(n, val_fraction, test_fraction)
        if (n_test < 1 and test_fraction > 0) or (n_val < 1 and val_fraction > 0) or n - n_test - n_val < 1:
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
