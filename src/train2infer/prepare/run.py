"""The prepare stage's work: load the source, split it, write the prepared folder and summary."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from train2infer.core.publish import write_json
from train2infer.prepare import split
from train2infer.prepared import save_prepared

LISTED = 10  # files named in a warning line; the summary lists them all


def load(cfg, seed: int):
    """Load ``cfg.name``'s data and split it: ``(splits, class_names, extra summary)``."""
    from train2infer.prepare import sources

    extra: dict = {}
    if cfg.name == "keras":
        (xtr, ytr), test, names = sources.load_keras(cfg.dataset, cfg.image_size, cfg.channels, cfg.cache_dir)
        idx = split.stratified_split(ytr, cfg.val_fraction, 0.0, seed, names)
        return {"train": (xtr[idx["train"]], ytr[idx["train"]]), "val": (xtr[idx["val"]], ytr[idx["val"]]),
                "test": test}, names, extra
    if cfg.name == "digits":
        images, labels, names = sources.load_digits(cfg.image_size, cfg.channels)
    elif cfg.name == "shapes":
        from train2infer.prepare import shapes

        images, labels, names = shapes.generate(cfg.count, cfg.image_size, cfg.channels, cfg.classes, seed,
                                                cfg.min_size, cfg.max_size, cfg.noise, cfg.workers)
    else:  # folder (the config's choice admits nothing else)
        return load_folders(cfg, seed)
    idx = split.stratified_split(labels, cfg.val_fraction, cfg.test_fraction, seed, names)
    return {name: (images[i], labels[i]) for name, i in idx.items()}, names, extra


def load_folders(cfg, seed: int):
    """``prepare=folder``: the training folder, split where no folder is given for val or test."""
    from train2infer.prepare import sources

    folders = cfg.folders()
    images, labels, names, extra = sources.load_folder(folders["train"], cfg.image_size, cfg.channels, cfg.workers,
                                                       split_hint=cfg.train_path is None)
    warn(extra)
    idx = split.stratified_split(labels, cfg.val_fraction or 0.0, cfg.test_fraction or 0.0, seed, names)
    splits = {name: (images[i], labels[i]) for name, i in idx.items()}
    for name in ("val", "test"):
        if folders[name] is not None:
            x, y, more = sources.load_split(folders[name], names, f"{name}_path", cfg.image_size, cfg.channels,
                                            cfg.workers)
            warn(more)
            splits[name] = (x, y)
            for key in extra:
                extra[key] = extra[key] + more[key]
    extra["given_splits"] = {k: str(v) for k, v in folders.items() if v is not None and k != "train"}
    return splits, names, extra


def warn(report: dict) -> None:
    """One warning line per kind of problem the folder source tolerated."""
    def listing(items):
        more = f", … and {len(items) - LISTED} more (all in the prepare summary)" if len(items) > LISTED else ""
        return ", ".join(items[:LISTED]) + more

    if report["skipped"]:
        items = [f"{s['file']} ({s['reason']})" for s in report["skipped"]]
        print(f"warning: skipped {len(items)} unreadable image file(s): {listing(items)}", file=sys.stderr)
    if report["empty_classes"]:
        print(f"warning: left out {len(report['empty_classes'])} class folder(s) without image files: "
              f"{listing(report['empty_classes'])}", file=sys.stderr)
    if report["ignored"]:
        print(f"warning: ignored {len(report['ignored'])} file(s) that are not images in a class folder: "
              f"{listing(report['ignored'])}", file=sys.stderr)


def run(cfg, seed: int, out: str | Path, summary_path: str | Path, timing_path: str | Path) -> dict:
    """Prepare the data described by ``cfg`` (a :mod:`train2infer.prepare.config` schema).

    Args:
        cfg: The ``prepare`` section.
        seed: Split (and shapes) seed.
        out: Folder to write the prepared splits into (created).
        summary_path: JSON summary to write: counts per class and split, image shape, and for
            ``folder`` the files skipped or ignored and why. The same data and params give the
            same bytes.
        timing_path: JSON to write the measured ``seconds`` and ``images_per_s`` to (kept apart
            from the summary, which can then be compared by hash).

    Returns:
        The summary, with ``timing``.
    """
    start = time.perf_counter()
    splits, class_names, extra = load(cfg, seed)
    seconds = time.perf_counter() - start
    summary = split.summarize(splits, class_names)
    total = sum(summary["sizes"].values())
    summary.update(source=cfg.name, **extra)
    timing = {"seconds": round(seconds, 2), "images_per_s": round(total / max(seconds, 1e-9), 1)}
    save_prepared(out, splits, class_names, cfg.name)
    write_json(summary_path, summary)
    write_json(timing_path, timing)
    return {**summary, "timing": timing}


def describe(summary: dict) -> str:
    """The stage's closing line."""
    sizes = summary["sizes"]
    return (f"prepare: {summary['source']} {summary['image_shape']} {summary['num_classes']} classes "
            f"train={sizes['train']} val={sizes['val']} test={sizes['test']} in {summary['timing']['seconds']:.1f} s "
            f"({summary['timing']['images_per_s']:.0f} images/s)")
