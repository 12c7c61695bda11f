"""scratch: the shrunk architecture trained from random weights (the control for channel pruning).

Reads:   params.yaml (``scratch``; ``train`` for the recipe, batch, rate and devices; ``shrink.epochs``;
         ``seed``); --data prepared folder; --shrunk ``.keras`` (its architecture only);
         --trained-metrics train's DVCLive ``metrics.json`` (``epochs_run``).
Writes:  --model ``.keras`` (float32); --reports folder: DVCLive per-epoch metrics.
Run:     dvc repro scratch
         python stages/scratch.py --data data/prepared --shrunk models/shrunk.keras \
             --trained-metrics reports/train/metrics.json --model models/scratch.keras --reports reports/scratch
Code:    train2infer.scratch
"""

import train2infer  # noqa: F401  (first: fixes the Keras flavour before TensorFlow loads)
from train2infer import config
from train2infer.core import cli
from train2infer.core.publish import publish
from train2infer.scratch.run import describe, run


def main(argv: list[str] | None = None) -> None:
    args = cli.parser(__doc__, "--data", "--shrunk", "--trained-metrics", "--model", "--reports").parse_args(argv)
    params = config.load_checked(args.params)
    with publish(args.model, args.reports) as staged:
        summary = run(params.scratch, params.train, params.shrink.epochs, params.seed, args.data, args.shrunk,
                      args.trained_metrics, staged(args.model), staged(args.reports))
        staged.keep = summary["chief"]
    if summary["chief"]:
        print(f"{describe(summary)} -> {args.model}")


if __name__ == "__main__":
    cli.run(main, section="scratch")
