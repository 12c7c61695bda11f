"""evaluate: accuracy, latency, throughput, work, memory, size and sparsity of every variant.

Variants: ``trained_keras`` (the baseline: the Keras model called through tf.function) and
every ``{trained,shrunk,pruned}_tflite_*.tflite`` in --export (by default ``_float`` and ``_int8``;
see ``convert.quantization``), run by the LiteRT interpreter with its default XNNPACK
delegate.

Reads:   params.yaml (section ``evaluate``); --data prepared folder (test split);
         --trained, --shrunk and --pruned ``.keras`` files (baseline; work counts); --export folder
         written by convert.
Writes:  --metrics JSON ``{"baseline", "machine", "variants": {NAME: {accuracy,
         latency_p50_ms, latency_p90_ms, latency_p99_ms, …, speedup_p50, gzip_ratio}}}``;
         --plots folder: ``benchmark.json`` (every measurement, per thread count, and the
         accuracy per class name of every variant),
         ``tradeoff.json`` (accuracy vs latency), ``latency.json``, ``throughput.json``.
Method:  see train2infer.benchmark and train2infer.measure: per thread count
         (``evaluate.threads``; 0 = all cores), one fresh process per variant, timed in
         interleaved rotating rounds until every variant has ``min_runs`` batch-1 calls and
         the rounds lasted ``min_seconds``; then each process's peak memory; with the most
         threads a batch-size sweep for throughput; at the first thread count float32/int8
         GEMM peaks on the same runtime. Ratios are against the baseline at the first
         thread count.
Run:     dvc repro evaluate     (re-measure only: dvc repro --force --single-item evaluate report)
         python stages/evaluate.py --params params.yaml --data data/prepared \
             --trained models/trained.keras --shrunk models/shrunk.keras --pruned models/pruned.keras \
             --export models/export --metrics reports/metrics.json --plots reports/evaluate
"""

from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path

import train2infer  # noqa: F401  (first: fixes the Keras flavour before TensorFlow loads)
from train2infer import Train2InferError, cli, config
from train2infer.io import publish, write_json

BASELINE = "trained_keras"
SOURCES = ("trained", "shrunk", "pruned")


def main(argv: list[str] | None = None) -> None:
    ap = cli.parser(__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", required=True)
    ap.add_argument("--trained", required=True)
    ap.add_argument("--shrunk", required=True)
    ap.add_argument("--pruned", required=True)
    ap.add_argument("--export", required=True)
    ap.add_argument("--metrics", required=True)
    ap.add_argument("--plots", required=True)
    args = ap.parse_args(argv)

    params = config.load_checked(args.params)
    cfg = config.section(params, "evaluate")
    threads = list(dict.fromkeys(t or os.cpu_count() or 1 for t in cfg.threads))

    from train2infer import data

    x_test, y_test = data.load_prepared(args.data, "test")
    x = data.to_float(x_test)
    export = Path(args.export)
    tflite = sorted(export.glob("*_tflite_*.tflite"), key=lambda p: (SOURCES.index(p.name.split("_")[0])
                                                                     if p.name.split("_")[0] in SOURCES else 9,
                                                                     "_float." not in p.name, p.name))
    if not tflite:
        raise Train2InferError(f"exported model not found: no *_tflite_*.tflite in {export}")
    if not Path(args.trained).is_file():
        raise Train2InferError(f"model not found: {args.trained}")
    TFLITE_VARIANTS = [p.stem for p in tflite]
    paths = {BASELINE: Path(args.trained), **{p.stem: p for p in tflite}}

    import numpy as np

    from train2infer import benchmark, conversion, models, pruning, reporting

    keras_models = {"trained": models.load_model(args.trained), "shrunk": models.load_model(args.shrunk),
                    "pruned": models.load_model(args.pruned)}
    macs = {name: benchmark.layer_macs(m) for name, m in keras_models.items()}
    sparsity = {}
    class_names = data.load_meta(args.data)["class_names"]
    predicted = {BASELINE: np.argmax(keras_models["trained"].predict(x, verbose=0), -1)}
    sparsity[BASELINE] = pruning.overall_sparsity(keras_models["trained"])
    for v in TFLITE_VARIANTS:
        predicted[v] = np.argmax(conversion.run_tflite(paths[v], x), -1)
        sparsity[v] = conversion.tflite_sparsity(paths[v])
    accuracy = {v: float(np.mean(p == y_test)) for v, p in predicted.items()}
    per_class = {v: reporting.per_class_accuracy(y_test, p, class_names) for v, p in predicted.items()}

    from train2infer import measure

    variants = {n: ("keras" if n == BASELINE else "tflite", str(p)) for n, p in paths.items()}
    runs, peaks = {}, {}
    with tempfile.TemporaryDirectory(prefix="t2i-evaluate-") as tmp:
        np.save(Path(tmp) / "x.npy", x[:64])
        for t in threads:
            runs[t] = measure.measure_variants(
                variants, t, str(Path(tmp) / "x.npy"),
                warmup_runs=cfg.warmup_runs, min_runs=cfg.min_runs, min_seconds=cfg.min_seconds,
                runs_per_round=cfg.runs_per_round, block_warmup=cfg.block_warmup,
                # the throughput sweep is reported with all cores only
                batch_sizes=list(cfg.batch_sizes) if t == max(threads) else [],
                throughput_seconds=cfg.throughput_seconds,
            )
            if t == threads[0]:  # the % of peak in the metrics is against the primary thread count
                peaks[t] = {kind: benchmark.matmul_peak(kind, t) for kind in ("float32", "int8")}
            for n, v in runs[t]["variants"].items():
                best = f"  best {max(v['throughput'].values()):.0f} img/s" if v["throughput"] else ""
                print(f"evaluate: threads={t} {n:22s} p50 {v['latency']['p50_ms']:.3f} ms  "
                      f"cv {v['latency']['cv']:.2f}{best}", flush=True)
    memory = {n: v["memory"] for n, v in runs[threads[0]]["variants"].items()}

    primary, widest = runs[threads[0]], runs[max(threads)]
    rows = {}
    for n, p in paths.items():
        prefix = n.split("_")[0]
        source = prefix if prefix in SOURCES else "trained"
        peak_kind = "int8" if n.endswith(("int8", "pqat")) else "float32"  # _int8, _fullint8, _pqat: int8
        wide = widest["variants"][n]
        rows[n] = reporting.variant_row(
            accuracy[n], primary["variants"][n]["latency"], benchmark.size_bytes(p), benchmark.gzip_bytes(p),
            sparsity[n],
            lat_all_cores=wide["latency"],
            throughput={int(b): ips for b, ips in wide["throughput"].items()},
            saturation_batch=wide["saturation_batch"],
            macs=macs[source],
            peak_gflops=peaks[threads[0]][peak_kind]["gflops"],
            peak_rss_bytes=memory[n]["peak_rss_bytes"],
        )
    metrics = reporting.build_metrics(BASELINE, rows)
    metrics["headline"] = reporting.headline(metrics)
    metrics["machine"] = {
        "cpus": os.cpu_count(),
        "threads": threads[0],
        "threads_all_cores": max(threads),
        "peak_gflops_float32": peaks[threads[0]]["float32"]["gflops"],
        "peak_gops_int8": peaks[threads[0]]["int8"]["gflops"],
    }
    details = {
        "method": {k: v for k, v in config.as_dict(cfg).items()} | {"threads_resolved": threads},
        "machine": {"cpu": _cpu_name(), "cpus": os.cpu_count(), "cpu_flags": _cpu_flags(),
                    "python": platform.python_version(),
                    "tensorflow": _version("tensorflow"), "ai_edge_litert": _version("ai-edge-litert")},
        "runs": {str(t): r for t, r in runs.items()},
        "peaks": {str(t): p for t, p in peaks.items()},
        "memory": memory,
        "macs": macs,
        "per_class": per_class,
        "cv_flagged": sorted({n for r in runs.values() for n, v in r["variants"].items()
                              if v["latency"]["cv"] > cfg.cv_threshold}),
    }
    with publish(args.metrics, args.plots) as staged:
        write_json(staged(args.metrics), metrics)
        plots = staged(args.plots)
        plots.mkdir()
        write_json(plots / "benchmark.json", details)
        write_json(plots / "tradeoff.json", reporting.tradeoff_points(metrics))
        write_json(plots / "latency.json", [
            {"variant": n, "threads": t, **{k: round(r["variants"][n]["latency"][k], 6)
                                            for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "cv")}}
            for t, r in runs.items() for n in paths])
        write_json(plots / "throughput.json", [
            {"variant": n, "batch": int(b), "images_per_second": ips}
            for n in paths for b, ips in widest["variants"][n]["throughput"].items()])
    for n, row in metrics["variants"].items():
        print(f"evaluate: {n:22s} p50 {row['latency_p50_ms']:.3f} ms  accuracy {row['accuracy']:.4f}  "
              f"{row['gflops_achieved']:.0f} GFLOP/s ({100 * row['peak_fraction']:.0f}% of peak)")
    best = max(TFLITE_VARIANTS, key=lambda v: metrics["variants"][v]["speedup_p50"])
    small = max(TFLITE_VARIANTS, key=lambda v: metrics["variants"][v]["gzip_ratio"])
    print(f"evaluate: best {best}: {metrics['variants'][best]['speedup_p50']:.1f}x faster (p50), "
          f"{small} {metrics['variants'][small]['gzip_ratio']:.1f}x smaller (gzip)")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_flags() -> list[str]:
    """The SIMD extensions the CPU reports (XNNPACK picks its kernels, and its sparse path, by them)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return sorted(f for f in line.split(":", 1)[1].split() if f.startswith(("sse", "avx", "fma", "f16c")))
    except OSError:
        pass
    return []


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    cli.run(main)
