"""train: fit the configured model on the prepared training split (on a GPU when present).

Reads:   params.yaml (``model``, ``train``, ``seed``); --data prepared folder.
Writes:  --model ``.keras`` (float32, no optimizer state); --reports folder: DVCLive per-epoch
         metrics (``metrics.json``, ``plots/metrics/``) and ``throughput.json``. With
         ``train.strategy=multi_worker`` every worker runs this; only the chief publishes.
Resume:  state under --backup (keyed by settings and code, stamped with dvc.lock's state); a
         killed run re-run resumes; one DVC has recorded since is removed (docs/scale.md).
Run:     dvc repro train
         python stages/train.py --data data/prepared --model models/trained.keras \
             --reports reports/train --backup models/.backup/train
Code:    train2infer.train
"""

import train2infer  # noqa: F401  (first: fixes the Keras flavour before TensorFlow loads)
from train2infer import config
from train2infer.core import cli
from train2infer.core.publish import publish
from train2infer.train.run import describe, run


def main(argv: list[str] | None = None) -> None:
    args = cli.parser(__doc__, "--data", "--model", "--reports", "--backup").parse_args(argv)
    params = config.load_checked(args.params)
    with publish(args.model, args.reports) as staged:
        result = run(params.model, params.train, params.seed, args.data, staged(args.model),
                     staged(args.reports), args.backup)
        staged.keep = result["chief"]
    if result["chief"]:
        print(f"{describe(result)} -> {args.model}")


if __name__ == "__main__":
    cli.run(main, section="train")
