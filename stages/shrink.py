"""shrink: channel pruning that removes work, then fine-tuning of the smaller dense model.

Reads:   params.yaml (``shrink``; ``train`` for the recipe and devices; ``seed``); --data
         prepared folder; --model-in trained ``.keras`` (also the teacher when distilling).
Writes:  --model-out ``.keras`` (smaller and dense; the trained model itself with
         ``shrink.criterion=none``); --reports folder: DVCLive fine-tuning metrics
         (``metrics.json``: MACs, parameters and accuracy before/after) and ``channels.json``
         (every channel dependency group: width, kept, dead, its layers; pinned layers and why);
         with ``shrink.target=latency`` or ``time_layers``, ``latency.json`` (per-layer latency
         tables' predictions beside the measured dense and shrunk models) and --latency-cache
         (the tables per machine, kept between runs).
Run:     dvc repro shrink
         python stages/shrink.py --data data/prepared --model-in models/trained.keras \
             --model-out models/shrunk.keras --reports reports/shrink --latency-cache cache/latency_tables.json
Code:    train2infer.shrink
"""

import train2infer  # noqa: F401  (first: fixes the Keras flavour before TensorFlow loads)
from train2infer import config
from train2infer.core import cli
from train2infer.core.publish import publish
from train2infer.shrink.run import describe, run


def main(argv: list[str] | None = None) -> None:
    ap = cli.parser(__doc__, "--data", "--model-in", "--model-out", "--reports")
    ap.add_argument("--latency-cache", help="latency tables kept between runs (optional)")
    args = ap.parse_args(argv)
    params = config.load_checked(args.params)
    with publish(args.model_out, args.reports) as staged:
        summary = run(params.shrink, params.train, params.seed, args.data, args.model_in,
                      staged(args.model_out), staged(args.reports), args.latency_cache)
        staged.keep = summary["chief"]
    if summary["chief"]:
        print(f"{describe(summary)} -> {args.model_out}")


if __name__ == "__main__":
    cli.run(main, section="shrink")
