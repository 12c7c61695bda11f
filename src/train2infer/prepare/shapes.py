"""Procedural geometric shapes: a data source of any size that needs no files or network.

Each image holds one filled shape (or a line / ring outline) of a random size, position,
rotation and colour on a random background colour, plus Gaussian pixel noise. The
foreground and background differ by at least :data:`MIN_CONTRAST` in luma, so the shape
stays visible in grayscale. Image ``i`` depends only on ``(seed, i)``: the first 1,000
images are the same whether 1,000 or 1,000,000 are generated, and generation can be split
across processes without changing a pixel.
"""

from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np

from train2infer.prepare.config import SHAPE_CLASSES
from train2infer.prepare.sources import to_channels

MIN_CONTRAST = 60.0  # luma difference (0..255) between shape and background


def _luma(c) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _regular(cx, cy, r, n, rot, radii=None):
    radii = radii or [r] * n
    return [(cx + radii[k] * math.cos(rot + 2 * math.pi * k / n),
             cy + radii[k] * math.sin(rot + 2 * math.pi * k / n)) for k in range(n)]


def _oriented_box(cx, cy, half_w, half_h, rot):
    c, s = math.cos(rot), math.sin(rot)
    return [(cx + x * c - y * s, cy + x * s + y * c)
            for x, y in ((-half_w, -half_h), (half_w, -half_h), (half_w, half_h), (-half_w, half_h))]


def draw_shape(kind: str, size: int, rng: np.random.Generator, min_size: float, max_size: float,
               noise: float) -> np.ndarray:
    """Draw one RGB ``size`` x ``size`` uint8 image of ``kind`` (see :data:`SHAPE_CLASSES`).

    Args:
        kind: Shape name.
        size: Image side in pixels.
        rng: The image's own random generator.
        min_size: Smallest shape radius, as a fraction of ``size``.
        max_size: Largest shape radius, as a fraction of ``size``.
        noise: Gaussian noise std as a fraction of 255.
    """
    from PIL import Image, ImageDraw

    bg = tuple(int(v) for v in rng.integers(0, 256, 3))
    while True:
        fg = tuple(int(v) for v in rng.integers(0, 256, 3))
        if abs(_luma(fg) - _luma(bg)) >= MIN_CONTRAST:
            break
    r = rng.uniform(min_size, max_size) * size
    margin = r * 0.75  # shapes may touch the border but stay mostly inside
    cx, cy = rng.uniform(margin, size - margin, 2) if size - 2 * margin > 0 else (size / 2, size / 2)
    rot = rng.uniform(0, 2 * math.pi)
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    width = max(1, int(round(size / 14)))
    if kind == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
    elif kind == "ellipse":
        d.polygon(_ellipse(cx, cy, r, r * rng.uniform(0.35, 0.6), rot), fill=fg)
    elif kind == "square":
        d.polygon(_oriented_box(cx, cy, r * 0.75, r * 0.75, rot), fill=fg)
    elif kind == "rectangle":
        d.polygon(_oriented_box(cx, cy, r, r * rng.uniform(0.3, 0.55), rot), fill=fg)
    elif kind == "triangle":
        d.polygon(_regular(cx, cy, r, 3, rot), fill=fg)
    elif kind == "hexagon":
        d.polygon(_regular(cx, cy, r, 6, rot), fill=fg)
    elif kind == "star":
        d.polygon(_regular(cx, cy, r, 10, rot, [r, r * 0.42] * 5), fill=fg)
    elif kind == "cross":
        t = r * 0.3
        d.polygon(_oriented_box(cx, cy, r, t, rot), fill=fg)
        d.polygon(_oriented_box(cx, cy, t, r, rot), fill=fg)
    elif kind == "line":
        (x0, y0), (x1, y1) = _oriented_box(cx, cy, r, 0, rot)[:2]
        d.line([(x0, y0), (x1, y1)], fill=fg, width=max(2, width))
    elif kind == "ring":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fg, width=max(2, int(r * 0.3)))
    else:
        raise ValueError(f"unknown shape {kind!r}; known: {', '.join(SHAPE_CLASSES)}")
    out = np.asarray(img, dtype=np.float32)
    if noise > 0:
        out = out + rng.normal(0.0, noise * 255.0, out.shape).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _ellipse(cx, cy, rx, ry, rot, n=40):
    c, s = math.cos(rot), math.sin(rot)
    pts = []
    for k in range(n):
        t = 2 * math.pi * k / n
        x, y = rx * math.cos(t), ry * math.sin(t)
        pts.append((cx + x * c - y * s, cy + x * s + y * c))
    return pts


def _chunk(args) -> np.ndarray:
    start, stop, classes, size, channels, seed, min_size, max_size, noise = args
    out = np.empty((stop - start, size, size, channels), np.uint8)
    for j, i in enumerate(range(start, stop)):
        rng = np.random.default_rng([seed, i])
        rgb = draw_shape(classes[i % len(classes)], size, rng, min_size, max_size, noise)
        out[j] = to_channels(rgb[None], channels)[0]
    return out


def generate(
    count: int,
    image_size: int,
    channels: int,
    classes: Sequence[str],
    seed: int,
    min_size: float = 0.35,
    max_size: float = 0.48,
    noise: float = 0.08,
    workers: int = 0,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Generate ``count`` labelled shape images, classes balanced (image ``i`` is class ``i % K``).

    Args:
        count: Number of images.
        image_size: Height and width.
        channels: 1 (luma) or 3 (RGB).
        classes: Shape names, each from :data:`SHAPE_CLASSES`; their order is the label order.
        seed: Random seed; image ``i`` depends only on ``(seed, i)``.
        min_size: Smallest shape radius, fraction of the side.
        max_size: Largest shape radius, fraction of the side.
        noise: Gaussian noise std, fraction of 255.
        workers: Processes (0: one per core; 1: this process).

    Returns:
        ``(images, labels, class_names)``: uint8 N x S x S x C, int64 labels, ``list(classes)``.
    """
    classes = list(classes)
    for c in classes:
        if c not in SHAPE_CLASSES:
            raise ValueError(f"unknown shape {c!r}; known: {', '.join(SHAPE_CLASSES)}")
    workers = workers or os.cpu_count() or 1
    step = 2000
    jobs = [(a, min(a + step, count), classes, image_size, channels, seed, min_size, max_size, noise)
            for a in range(0, count, step)]
    if workers == 1 or len(jobs) == 1:
        parts = [_chunk(j) for j in jobs]
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            parts = list(pool.map(_chunk, jobs))
    images = np.concatenate(parts) if parts else np.zeros((0, image_size, image_size, channels), np.uint8)
    labels = np.arange(count, dtype=np.int64) % len(classes)
    return images, labels, classes


def write_folder(root, images: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> int:
    """Write images as an image tree ``root/<class name>/<index>.png`` (the ``folder`` source's layout).

    Returns:
        The number of files written.
    """
    from pathlib import Path

    from PIL import Image

    root = Path(root)
    for name in class_names:
        (root / name).mkdir(parents=True, exist_ok=True)
    for i, (img, y) in enumerate(zip(images, labels)):
        Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(root / class_names[int(y)] / f"{i:06d}.png")
    return len(images)
