"""evaluate: accuracy, batch-1 latency, size and sparsity of every variant.

Variants: ``trained_keras`` (the baseline: the Keras model called through tf.function),
``trained_tflite_float``, ``trained_tflite_int8``, ``pruned_tflite_float``,
``pruned_tflite_int8`` (LiteRT interpreter with its default XNNPACK delegate).

Reads:   params.yaml (section ``evaluate``); --data prepared folder (test split);
         --trained ``.keras`` file; --export folder written by convert.
Writes:  --metrics JSON ``{"baseline", "variants": {NAME: {accuracy, latency_p50_ms,
         latency_p90_ms, latency_p99_ms, size_bytes, gzip_bytes, sparsity, speedup_p50,
         gzip_ratio}}}``; --plots folder with ``tradeoff.json`` (accuracy vs latency) and
         ``latency.json`` (mean/std per variant).
Method:  thread count fixed for TensorFlow and LiteRT (``evaluate.num_threads``);
         ``evaluate.warmup_runs`` untimed calls, then ``evaluate.timed_runs`` (>= 200)
         individually timed batch-1 calls; p50/p90/p99 in milliseconds.
Run:     dvc repro evaluate            (re-measure only: dvc repro --force evaluate)
         python stages/evaluate.py --params params.yaml --data data/prepared \
             --trained models/trained.keras --export models/export \
             --metrics reports/metrics.json --plots reports/evaluate
"""

from __future__ import annotations

from pathlib import Path

import train2infer  # noqa: F401  (first: fixes the Keras flavour before TensorFlow loads)
from train2infer import cli, config
from train2infer.io import publish, write_json

BASELINE = "trained_keras"
TFLITE_VARIANTS = ("trained_tflite_float", "trained_tflite_int8", "pruned_tflite_float", "pruned_tflite_int8")


def main(argv: list[str] | None = None) -> None:
    ap = cli.parser(__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", required=True)
    ap.add_argument("--trained", required=True)
    ap.add_argument("--export", required=True)
    ap.add_argument("--metrics", required=True)
    ap.add_argument("--plots", required=True)
    args = ap.parse_args(argv)

    params = config.load_checked(args.params)
    cfg = config.section(params, "evaluate")

    from train2infer import data

    x_test, y_test = data.load_prepared(args.data, "test")
    x = data.to_float(x_test)
    paths = {v: Path(args.export) / f"{v}.tflite" for v in TFLITE_VARIANTS}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise train2infer.Train2InferError(f"exported model not found: {', '.join(missing)}")

    from train2infer import benchmark

    benchmark.set_tf_threads(cfg.num_threads)  # before TensorFlow runs anything

    import numpy as np

    from train2infer import conversion, models, pruning, reporting

    rows, spread = {}, {}
    model = models.load_model(args.trained)
    call = benchmark.keras_call(model, x[:1])
    logits = model.predict(x, batch_size=256, verbose=0)
    lat = benchmark.latency(call, cfg.warmup_runs, cfg.timed_runs)
    rows[BASELINE] = reporting.variant_row(
        np.mean(np.argmax(logits, -1) == y_test),
        lat,
        benchmark.size_bytes(args.trained),
        benchmark.gzip_bytes(args.trained),
        pruning.overall_sparsity(model),
    )
    spread[BASELINE] = lat
    print(f"evaluate: {BASELINE:22s} p50 {lat['p50_ms']:.3f} ms  accuracy {rows[BASELINE]['accuracy']:.4f}")
    for variant, path in paths.items():
        interp = conversion.interpreter(path, num_threads=cfg.num_threads)
        logits = conversion.run_tflite(path, x, num_threads=cfg.num_threads)
        lat = benchmark.latency(benchmark.tflite_call(interp, x[:1]), cfg.warmup_runs, cfg.timed_runs)
        rows[variant] = reporting.variant_row(
            np.mean(np.argmax(logits, -1) == y_test),
            lat,
            benchmark.size_bytes(path),
            benchmark.gzip_bytes(path),
            conversion.tflite_sparsity(path),
        )
        spread[variant] = lat
        print(f"evaluate: {variant:22s} p50 {lat['p50_ms']:.3f} ms  accuracy {rows[variant]['accuracy']:.4f}")

    metrics = reporting.build_metrics(BASELINE, rows)
    with publish(args.metrics, args.plots) as staged:
        write_json(staged(args.metrics), metrics)
        plots = staged(args.plots)
        plots.mkdir()
        write_json(plots / "tradeoff.json", reporting.tradeoff_points(metrics))
        write_json(
            plots / "latency.json",
            [{"variant": v, **{k: round(s[k], 6) for k in ("mean_ms", "std_ms", "p50_ms", "p99_ms")},
              "runs": s["runs"]} for v, s in spread.items()],
        )
    best = max(TFLITE_VARIANTS, key=lambda v: metrics["variants"][v]["speedup_p50"])
    print(f"evaluate: best {best}: {metrics['variants'][best]['speedup_p50']:.1f}x faster (p50), "
          f"pruned_tflite_int8 {metrics['variants']['pruned_tflite_int8']['gzip_ratio']:.1f}x smaller (gzip)")


if __name__ == "__main__":
    cli.run(main)
