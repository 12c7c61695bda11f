"""prune: TF-MOT magnitude pruning with fine-tuning (zeros in place, no wrappers in the output).

Reads:   params.yaml (``prune``; ``train`` for the recipe and devices; ``seed``); --data prepared
         folder; --model-in ``.keras`` (``models/${prune.start_from}.keras``: trained or shrunk);
         --teacher the trained ``.keras`` to distil from (``prune.distill_weight`` > 0).
Writes:  --model-out stripped ``.keras``; --reports folder: DVCLive fine-tuning metrics
         (``metrics.json``: achieved sparsity, accuracy, MACs) and ``sparsity.json`` per kernel.
Fails:   if a pruned kernel misses its target by more than ``prune.tolerance``, an ``m_by_n``
         kernel breaks the pattern, or ``prune.frequency`` never updates the masks.
Run:     dvc repro prune
         python stages/prune.py --data data/prepared --model-in models/trained.keras \
             --teacher models/trained.keras --model-out models/pruned.keras --reports reports/prune
Code:    train2infer.prune
"""

import train2infer  # noqa: F401  (first: fixes the Keras flavour before TensorFlow loads)
from train2infer import config
from train2infer.core import cli
from train2infer.core.publish import publish
from train2infer.prune.run import describe, run


def main(argv: list[str] | None = None) -> None:
    args = cli.parser(__doc__, "--data", "--model-in", "--teacher", "--model-out",
                      "--reports").parse_args(argv)
    params = config.load_checked(args.params)
    with publish(args.model_out, args.reports) as staged:
        result = run(params.prune, params.train, params.seed, args.data, args.model_in,
                     staged(args.model_out), staged(args.reports), args.teacher)
        staged.keep = result["chief"]
    if result["chief"]:
        print(f"{describe(result)} -> {args.model_out}")


if __name__ == "__main__":
    cli.run(main, section="prune")
