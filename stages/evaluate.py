"""evaluate: accuracy, latency, throughput, work, memory, size and sparsity of every variant.

Variants: the baseline ``trained_keras_float`` (the Keras model through tf.function) and every
variant in --export's ``manifest.json`` whose runtime ``evaluate.runtimes`` lists (TFLite on
LiteRT with XNNPACK, SavedModel on TensorFlow, the float TFLite on OpenVINO). Method: each in its own
process, timed interleaved in rotating rounds per thread count (see train2infer.evaluate).
Reads:   params.yaml (``evaluate``); --data prepared folder (test split); --baseline
         ``.keras``; --export folder written by convert.
Writes:  --out folder: ``metrics.json`` (a row per variant, ratios and intervals, paired tests
         against the baseline, headline), ``benchmark.json`` (every measurement, machine state),
         ``predictions.json`` (class per test image per variant), ``plots/``.
Run:     dvc repro evaluate     (re-measure only: dvc repro --force --single-item evaluate)
         python stages/evaluate.py --data data/prepared --baseline models/trained.keras \
             --export models/export --out reports/evaluate
Code:    train2infer.evaluate
"""

import train2infer  # noqa: F401  (first: fixes the Keras flavour before TensorFlow loads)
from train2infer import config
from train2infer.core import cli
from train2infer.core.publish import publish
from train2infer.evaluate.run import describe, run


def main(argv: list[str] | None = None) -> None:
    args = cli.parser(__doc__, "--data", "--baseline", "--export", "--out").parse_args(argv)
    params = config.load_checked(args.params)
    with publish(args.out) as staged:
        metrics = run(params.evaluate, args.data, args.baseline, args.export, staged(args.out))
    print("\n".join(describe(metrics)))


if __name__ == "__main__":
    cli.run(main, section="evaluate")
