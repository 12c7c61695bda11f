"""Data sources: scikit-learn digits, a folder of images, Keras datasets.

Every loader returns uint8 images (N x S x S x C) and int64 labels plus the class names;
the shapes generator lives in :mod:`train2infer.prepare.shapes`. Nothing here imports TensorFlow
except :func:`load_keras`; nothing downloads except :func:`load_keras`, and only through
Keras's own cache.

The folder source decides per problem (see :func:`load_folder`): a file it cannot read is
skipped and reported when the rest is usable; data that cannot make a classifier (no
folder, fewer than two classes with images, a class too small to split) raises
:class:`~train2infer.prepared.DataError` with one line naming the culprit.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from train2infer.prepared import DataError, scan_folder

SPLIT_NAMES = ("train", "training", "val", "valid", "validation", "test", "testing")


KERAS_CLASS_NAMES = {
    "mnist": [str(i) for i in range(10)],
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                "truck"],
}
KERAS_FILES = {  # what tf_keras.datasets caches, relative to <cache>/datasets
    "mnist": "mnist.npz",
    "fashion_mnist": "fashion-mnist/",
    "cifar10": "cifar-10-batches-py/",
}


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


def load_digits(image_size: int, channels: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """scikit-learn's bundled handwritten digits, resized (no network needed).

    Args:
        image_size: Output height and width.
        channels: 1 for grayscale, 3 to replicate gray into RGB.

    Returns:
        ``(images, labels, class_names)``: uint8 N x S x S x C images, int64 labels,
        and the names ``"0"`` … ``"9"``.
    """
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    # Pixel values are 0..16; scale to the full 8-bit range before resizing.
    raw = np.clip(np.rint(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    images = to_channels(resize_images(raw[..., None], image_size), channels)
    names = [str(int(n)) for n in bunch.target_names]
    return images, bunch.target.astype(np.int64), names


def to_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """uint8 N x H x W x C images to ``channels`` (gray replicated; RGB to ITU-R 601 luma)."""
    c = images.shape[-1]
    if c == channels:
        return images
    if c == 1 and channels == 3:
        return np.repeat(images, 3, axis=-1)
    if c == 3 and channels == 1:
        luma = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        return np.clip(np.rint(luma), 0, 255).astype(np.uint8)[..., None]
    raise ValueError(f"cannot convert {c} channels to {channels}")


# --------------------------------------------------------------------------- folder


def decode_image(path: str | Path, image_size: int, channels: int) -> np.ndarray:
    """Read one image file fully and return it as uint8 ``image_size`` x ``image_size`` x ``channels``.

    Every PIL mode is converted: palette (with or without transparency), alpha (composited
    on black), 16-bit and float gray (scaled to 8 bits), CMYK, 1-bit. Animated files
    give their first frame. JPEGs are decoded at a reduced scale when much larger than
    the target (PIL's draft mode), then resized bilinearly.

    Raises:
        OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError: From PIL
        when the file is not a readable image (including truncated files).
    """
    from PIL import Image

    with Image.open(path) as img:
        if img.format == "JPEG":
            img.draft("RGB" if channels == 3 else "L", (image_size, image_size))
        img.load()  # full decode now: truncated data fails here, not later
        img = _to_mode(img, channels)
        if img.size != (image_size, image_size):
            img = img.resize((image_size, image_size), Image.BILINEAR)
        arr = np.asarray(img, dtype=np.uint8)
    return arr.reshape(image_size, image_size, channels)


def _to_mode(img, channels: int):
    from PIL import Image

    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        a = np.asarray(img, dtype=np.float64)
        top = 65535.0 if (mode.startswith("I;16") or a.max() > 255) else 255.0
        img = Image.fromarray(np.clip(np.rint(a * (255.0 / top)), 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(base, rgba).convert("RGB")
    return img.convert("L" if channels == 1 else "RGB")


MAX_PIXELS = 500_000_000  # larger files are skipped as possible decompression bombs (PIL's own bound is 89 M)


def _decode_or_reason(args) -> np.ndarray | str:
    path, image_size, channels = args
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # a 225-megapixel scan is an image, not an attack
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return decode_image(path, image_size, channels)
    except Exception as exc:  # per-file verdict: every failure is a reason to skip the file
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"{type(exc).__name__}: {text}"[:200]


def decode_all(paths: Sequence[Path], image_size: int, channels: int, workers: int = 0) -> list:
    """Decode many files, in ``workers`` processes (0: one per core; 1: in this process).

    Returns:
        One entry per path: the uint8 image, or a string saying why it could not be read.
    """
    jobs = [(str(p), image_size, channels) for p in paths]
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(jobs) < 256:
        return [_decode_or_reason(j) for j in jobs]
    import multiprocessing as mp

    # spawn, not fork: the caller may have TensorFlow's threads running (tests do).
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        return list(pool.map(_decode_or_reason, jobs, chunksize=max(16, len(jobs) // (8 * workers))))


def refuse_split_layout(root: Path) -> None:
    """``root/train/<class>``, ``root/test/<class>``: split folders read as classes would train a
    classifier of "train" against "test". Refuse, saying how to point at them."""
    subs = sorted(d.name for d in root.iterdir() if d.is_dir() and d.name.lower() in SPLIT_NAMES)
    if len(subs) >= 2 and any(n.lower().startswith("train") for n in subs):
        train = next(n for n in subs if n.lower().startswith("train"))
        hint = " ".join(f"prepare.{'test' if n.lower().startswith('test') else 'val'}_path={n}"
                        for n in subs if n != train)
        raise DataError(f"image folder {root} holds split folders ({', '.join(subs)}), not class folders: "
                        f"set prepare.train_path={train} {hint}")


def load_split(folder: Path, class_names: Sequence[str], key: str, image_size: int, channels: int,
               workers: int = 0) -> tuple[np.ndarray, np.ndarray, dict]:
    """A given split (``prepare.val_path`` / ``test_path``): the same classes as the training folder.

    Raises:
        DataError: The folder is unusable, or its classes differ from ``class_names`` (one line
            naming ``prepare.<key>`` and the classes that differ).
    """
    images, labels, names, report = load_folder(folder, image_size, channels, workers, min_classes=1)
    if list(names) != list(class_names):
        missing = sorted(set(class_names) - set(names))
        extra = sorted(set(names) - set(class_names))
        what = "; ".join(x for x in (f"missing {', '.join(missing)}" if missing else "",
                                      f"not in training: {', '.join(extra)}" if extra else "") if x)
        raise DataError(f"prepare.{key}: the classes of {folder} differ from the training folder's ({what})")
    return images, labels, report


def load_folder(
    root: str | Path, image_size: int, channels: int, workers: int = 0, split_hint: bool = False,
    min_classes: int = 2,
) -> tuple[np.ndarray, np.ndarray, list[str], dict]:
    """Load an image tree ``root/<class name>/*`` as a labelled dataset.

    Per problem:

    - not an image by extension (``notes.txt``), a file directly in ``root``: ignored, listed;
    - an image file that cannot be decoded (corrupt, truncated, not really an image):
      skipped, listed with the reason;
    - a class folder with no image files: left out, listed;
    - ``root`` missing or empty, or fewer than two classes with readable images: error.

    Whether each class still has enough images for the split is checked by
    :func:`train2infer.prepare.split.stratified_split`.

    Args:
        root: The image tree.
        image_size: Output height and width.
        channels: 1 (grayscale) or 3 (RGB).
        workers: Decode processes (0: one per core).
        split_hint: Refuse a folder of split folders (``train/``, ``test/``) read as classes.
        min_classes: Fewest class folders with images (a given test split may hold fewer
            classes than 2 only in the error it then gets).

    Returns:
        ``(images, labels, class_names, report)``; ``report`` has ``skipped`` (``[{"file",
        "reason"}]``), ``ignored`` and ``empty_classes`` (relative paths / names).

    Raises:
        DataError: On the unusable cases above.
    """
    root = Path(root)
    scan = scan_folder(root)
    if split_hint:
        refuse_split_layout(root)
    paths = [p for fs in scan.files for p in fs]
    labels_all = np.array([k for k, fs in enumerate(scan.files) for _ in fs], np.int64)
    decoded = decode_all(paths, image_size, channels, workers)
    keep = [i for i, d in enumerate(decoded) if not isinstance(d, str)]
    bad = [i for i, d in enumerate(decoded) if isinstance(d, str)]
    skipped = [{"file": paths[i].relative_to(root).as_posix(), "reason": decoded[i]} for i in bad]
    for k, name in enumerate(scan.class_names):  # a class whose every file is unreadable is not a skip
        mine = [s for i, s in zip(bad, skipped) if labels_all[i] == k]
        if len(mine) == len(scan.files[k]):
            raise DataError(
                f"image folder {root}: class {name!r} has no readable image ({len(mine)} file(s), e.g. "
                f"{mine[0]['file']}: {mine[0]['reason']})"
            )
    if len(scan.class_names) < min_classes:
        empty = f"; no image files in {', '.join(scan.empty_classes)}" if scan.empty_classes else ""
        raise DataError(
            f"image folder {root}: a classifier needs at least 2 class folders with images, found "
            f"{len(scan.class_names)}{' (' + scan.class_names[0] + ')' if scan.class_names else ''}{empty}"
        )
    images = np.stack([decoded[i] for i in keep])
    labels = labels_all[keep]
    report = {"skipped": skipped, "ignored": scan.ignored, "empty_classes": scan.empty_classes}
    return images, labels, list(scan.class_names), report


# --------------------------------------------------------------------------- keras


def keras_cache(cache_dir: str | None) -> Path:
    """The folder Keras caches into: ``cache_dir``, else ``$KERAS_HOME``, else ``~/.keras``."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")


def load_keras(
    dataset: str, image_size: int, channels: int, cache_dir: str | None = None
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], list[str]]:
    """A ``tf_keras.datasets`` dataset, resized and converted to ``channels``.

    Keras reads it from its cache, or downloads it there once (the only network access in
    the project).

    Args:
        dataset: ``mnist``, ``fashion_mnist`` or ``cifar10``.
        image_size: Output height and width.
        channels: 1 or 3.
        cache_dir: Keras cache folder; None for ``$KERAS_HOME`` or ``~/.keras``.

    Returns:
        ``((x_train, y_train), (x_test, y_test), class_names)``, uint8 images and int64 labels.

    Raises:
        DataError: If the dataset is neither cached nor downloadable, in one line.
    """
    import tf_keras as keras

    loader = getattr(keras.datasets, dataset)
    cache = keras_cache(cache_dir)
    try:
        (xtr, ytr), (xte, yte) = loader.load_data(cache_dir=str(cache))
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"Keras dataset {dataset}: not in the Keras cache ({cache / 'datasets' / KERAS_FILES[dataset]}) "
            f"and the download failed ({reason[:160]}); run prepare once on a machine with network, "
            f"or copy that cache folder here (prepare.cache_dir or $KERAS_HOME points at it)"
        ) from None

    def shape(x, y):
        x = x if x.ndim == 4 else x[..., None]
        x = to_channels(resize_images(x.astype(np.uint8), image_size), channels)
        return x, np.asarray(y).reshape(-1).astype(np.int64)

    return shape(xtr, ytr), shape(xte, yte), list(KERAS_CLASS_NAMES[dataset])
