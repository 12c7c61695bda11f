"""prepare: load the configured data source, resize, convert and split it.

Reads:   params.yaml (sections ``data``, ``seed``); the source selected by ``data.name``:
         ``digits`` (bundled with scikit-learn), ``folder`` (the image tree at ``data.path``),
         ``shapes`` (generated, deterministic by seed), ``keras`` (``tf_keras.datasets``,
         from Keras's cache; downloads once if the network allows).
Writes:  --out folder (train/val/test ``.npz`` + ``meta.json`` with the class names, see
         train2infer.data) and --summary JSON (counts per class and split, image shape,
         seconds and images/s, and for ``folder`` the files skipped or ignored and why).
Errors:  unusable data ends in one ``error:`` line naming the folder, class or file, exit 2,
         and nothing written; unreadable images are skipped with a warning listing them.
Run:     dvc repro prepare
         python stages/prepare.py --params params.yaml --out data/prepared \
             --summary reports/prepare/summary.json
"""

from __future__ import annotations

import sys
import time

import train2infer  # noqa: F401  (first: fixes the Keras flavour before TensorFlow loads)
from train2infer import cli, config
from train2infer.io import publish, write_json

LISTED = 10  # files named in a warning line; the summary lists them all


def load(cfg, seed: int):
    """Load ``cfg.name``'s data and split it: ``(splits, class_names, extra summary)``."""
    from train2infer import data, sources

    extra: dict = {}
    if cfg.name == "keras":
        (xtr, ytr), test, names = sources.load_keras(cfg.dataset, cfg.image_size, cfg.channels, cfg.cache_dir)
        idx = data.stratified_split(ytr, cfg.val_fraction, 0.0, seed, names)
        return {"train": (xtr[idx["train"]], ytr[idx["train"]]), "val": (xtr[idx["val"]], ytr[idx["val"]]),
                "test": test}, names, extra
    if cfg.name == "digits":
        images, labels, names = sources.load_digits(cfg.image_size, cfg.channels)
    elif cfg.name == "shapes":
        from train2infer import shapes

        images, labels, names = shapes.generate(cfg.count, cfg.image_size, cfg.channels, cfg.classes, seed,
                                                cfg.min_size, cfg.max_size, cfg.noise, cfg.workers)
    elif cfg.name == "folder":
        images, labels, names, extra = sources.load_folder(cfg.path, cfg.image_size, cfg.channels, cfg.workers)
        warn(extra)
    else:  # pragma: no cover - config.section rejects unknown names
        raise config.ConfigError(f"params: data.name={cfg.name!r} has no loader")
    idx = data.stratified_split(labels, cfg.val_fraction, cfg.test_fraction, seed, names)
    return {name: (images[i], labels[i]) for name, i in idx.items()}, names, extra


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


def main(argv: list[str] | None = None) -> None:
    ap = cli.parser(__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", required=True, help="prepared data folder")
    ap.add_argument("--summary", required=True, help="summary JSON")
    args = ap.parse_args(argv)

    params = config.load_checked(args.params)
    cfg = config.section(params, "data")
    seed = config.seed(params)

    from train2infer import data

    start = time.perf_counter()
    splits, class_names, extra = load(cfg, seed)
    seconds = time.perf_counter() - start
    summary = data.summarize(splits, class_names)
    total = sum(summary["sizes"].values())
    summary.update(source=cfg.name, seconds=round(seconds, 2), images_per_s=round(total / max(seconds, 1e-9), 1),
                   **extra)

    with publish(args.out, args.summary) as staged:
        data.save_prepared(staged(args.out), splits, class_names, cfg.name)
        write_json(staged(args.summary), summary)
    sizes = summary["sizes"]
    print(f"prepare: {cfg.name} {summary['image_shape']} {len(class_names)} classes train={sizes['train']} "
          f"val={sizes['val']} test={sizes['test']} in {seconds:.1f} s ({summary['images_per_s']:.0f} images/s)"
          f" -> {args.out}")


if __name__ == "__main__":
    cli.run(main)
