"""convert: trained, shrunk, pruned and scratch Keras models -> TFLite (every precision asked for) and SavedModel.

Reads:   params.yaml (``convert``, ``seed``); --data prepared folder; --trained, --shrunk,
         --pruned, --scratch ``.keras`` files (a shrunk model identical to the trained one is skipped).
Writes:  --out folder: ``{source}_tflite_{precision}[_sparse].tflite``, ``{source}_saved_model/``
         (BatchNorm folded) and ``manifest.json`` (every exported variant); --summary JSON
         (layers -> ops fusion table, BatchNorm fold, Grappler, TFLite vs Keras differences).
Fails:   if float32 TFLite differs from Keras by more than ``convert.float_atol``, or the
         folded model from the unfolded one by more than ``convert.fold_atol`` (float64).
Run:     dvc repro convert
         python stages/convert.py --data data/prepared --trained models/trained.keras \
             --shrunk models/shrunk.keras --pruned models/pruned.keras --scratch models/scratch.keras \
             --out models/export \
             --summary reports/convert/summary.json
Code:    train2infer.convert
"""

import train2infer  # noqa: F401  (first: fixes the Keras flavour before TensorFlow loads)
from train2infer import config
from train2infer.convert.run import describe, run
from train2infer.core import cli
from train2infer.core.publish import publish


def main(argv: list[str] | None = None) -> None:
    args = cli.parser(__doc__, "--data", "--trained", "--shrunk", "--pruned", "--scratch", "--out",
                      "--summary").parse_args(argv)
    params = config.load_checked(args.params)
    sources = {"trained": args.trained, "shrunk": args.shrunk, "pruned": args.pruned, "scratch": args.scratch}
    with publish(args.out, args.summary) as staged:
        summary = run(params.convert, params.seed, args.data, sources, staged(args.out), staged(args.summary))
    print("\n".join(describe(summary)))


if __name__ == "__main__":
    cli.run(main, section="convert")
