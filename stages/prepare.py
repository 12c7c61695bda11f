"""prepare: load the data source ``prepare.name``, resize, convert and split it.

Reads:   params.yaml (``prepare``, ``seed``); the source: ``digits`` (bundled with scikit-learn),
         ``folder`` (the image tree at ``prepare.path``), ``shapes`` (generated), ``keras``
         (``tf_keras.datasets``, from Keras's cache; needs the network once if not cached).
Writes:  --out prepared folder (train/val/test ``.npz`` + ``meta.json``); --summary JSON (counts,
         shape; byte-identical on a re-run); --timing JSON (seconds, images/s).
Run:     dvc repro prepare
         python stages/prepare.py --out data/prepared --summary reports/prepare/summary.json \
             --timing reports/prepare/timing.json
Code:    train2infer.prepare
"""

import train2infer  # noqa: F401  (first: fixes the Keras flavour before TensorFlow loads)
from train2infer import config
from train2infer.core import cli
from train2infer.core.publish import publish
from train2infer.prepare.run import describe, run


def main(argv: list[str] | None = None) -> None:
    args = cli.parser(__doc__, "--out", "--summary", "--timing").parse_args(argv)
    params = config.load_checked(args.params)
    with publish(args.out, args.summary, args.timing) as staged:
        summary = run(params.prepare, params.seed, staged(args.out), staged(args.summary), staged(args.timing))
    print(f"{describe(summary)} -> {args.out}")


if __name__ == "__main__":
    cli.run(main, section="prepare")
