"""prepare: load the configured data source, resize and split it.

Reads:   params.yaml (sections ``data``, ``seed``); the data source (``digits`` is bundled
         with scikit-learn, no network).
Writes:  --out folder (train/val/test ``.npz`` + ``meta.json``, see train2infer.data) and
         --summary JSON (counts per class and split, image shape).
Run:     dvc repro prepare
         python stages/prepare.py --params params.yaml --out data/prepared \
             --summary reports/prepare/summary.json
"""

from __future__ import annotations

import train2infer  # noqa: F401  (first: fixes the Keras flavour before TensorFlow loads)
from train2infer import cli, config
from train2infer.io import publish, write_json


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

    if cfg.name == "digits":
        images, labels, class_names = data.load_digits(cfg.image_size, cfg.channels)
    else:  # pragma: no cover - config.section rejects unknown names
        raise config.ConfigError(f"params: data.name={cfg.name!r} has no loader")
    idx = data.stratified_split(labels, cfg.val_fraction, cfg.test_fraction, seed)
    splits = {name: (images[i], labels[i]) for name, i in idx.items()}
    summary = data.summarize(splits, class_names)
    summary["source"] = cfg.name

    with publish(args.out, args.summary) as staged:
        data.save_prepared(staged(args.out), splits, class_names, cfg.name)
        write_json(staged(args.summary), summary)
    sizes = summary["sizes"]
    print(f"prepare: {cfg.name} {summary['image_shape']} train={sizes['train']} "
          f"val={sizes['val']} test={sizes['test']} -> {args.out}")


if __name__ == "__main__":
    cli.run(main)
