"""The evaluate stage's work: accuracy pass, interleaved measurement, metrics and plot data."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from train2infer import Train2InferError, machine
from train2infer.core.params import as_dict
from train2infer.core.publish import write_json
from train2infer.core.variants import BASELINE, Variant, read_manifest
from train2infer.evaluate import metrics as M, worker
from train2infer.prepared import load_meta, load_prepared, to_float


def run(cfg, data: str | Path, baseline: str | Path, export: str | Path, out: Path) -> dict:
    """Measure the baseline (``baseline``, a ``.keras`` file) and every variant of the export
    manifest in ``export`` that a runtime of ``cfg.runtimes`` runs (see :func:`select`), as
    ``cfg`` (the ``evaluate`` section) says.

    Args:
        cfg: The ``evaluate`` section.
        data: Prepared-data folder (the test split).
        baseline: The trained ``.keras`` model.
        export: The folder convert wrote (with ``manifest.json``).
        out: Folder to write: ``metrics.json`` (with intervals and paired tests),
            ``benchmark.json`` (every measurement, per thread count, accuracy per class, the
            machine and its state), ``predictions.json`` (every variant's class per test image)
            and ``plots/`` (``tradeoff.json``, ``latency.json``, ``throughput.json``).

    Returns:
        The metrics.
    """
    exported, sources = read_manifest(export)
    if not Path(baseline).is_file():
        raise Train2InferError(f"model not found: {baseline}")
    if BASELINE.source not in sources:  # convert was not given the baseline's source: count its work here
        from train2infer.models import io, work

        sources = {**sources, BASELINE.source: work.summary(io.load_model(baseline))}
    timed, left_out = select(dataclasses.replace(BASELINE, path=str(baseline)), exported, cfg.runtimes)
    threads = list(dict.fromkeys(t or os.cpu_count() or 1 for t in cfg.threads))
    x_test, y_test = load_prepared(data, "test")
    x = to_float(x_test)
    before = machine.snapshot()
    with worker.started({v.name: v for v in timed}, threads[:1], x, cfg.warmup_runs) as pools:  # 1st only: see started
        predicted = predict_all(timed, x)
        if cfg.chance_check:
            refuse_chance(str(baseline), y_test, predicted[BASELINE.name])
        worker.all_ready(pools)
        runs, peaks, samples = measure(timed, threads, x, cfg, pools)
    state = machine.state(before, machine.snapshot(), cfg.busy_threshold)  # the workers reaped: counted as ours
    uncertainty = M.uncertainty(BASELINE.name, predicted, y_test, samples[threads[0]], cfg)
    metrics = assemble(timed, sources, predicted, y_test, runs, peaks, threads, uncertainty, cfg.max_drop)
    metrics["scratch_control"] = M.scratch_control(predicted, y_test)
    metrics["machine"] |= {"busy": state["busy"], "others_fraction": state["others_fraction"],
                           "quiet_rounds": uncertainty["quiet_rounds"]}
    names = load_meta(data)["class_names"]
    details = {
        "method": as_dict(cfg) | {"threads_resolved": threads},
        "machine": machine.describe() | {"state": state},
        "variants": [v.to_dict() | {"runtime": v.runtime} for v in timed],
        "left_out": left_out,
        "runs": {str(t): r for t, r in runs.items()},
        "peaks": {str(t): p for t, p in peaks.items()},
        "memory": {n: v["memory"] for n, v in runs[threads[0]]["variants"].items()},
        "work": sources,
        "per_class": {n: M.per_class_accuracy(y_test, p, names) for n, p in predicted.items()},
        "cv_flagged": sorted({n for r in runs.values() for n, v in r["variants"].items()
                              if v["latency"]["cv"] > cfg.cv_threshold}),
    }
    write(out, metrics, details, runs, threads)
    write_json(out / "predictions.json", {"labels": np.asarray(y_test).tolist(),
                                          "predicted": {n: p.tolist() for n, p in predicted.items()}})
    return metrics


def select(baseline: Variant, exported: list[Variant], runtimes: list[str]) -> tuple[list[Variant], dict]:
    """What to time: the baseline, then per source its variants in manifest order that a listed
    runtime runs (``litert``: every ``.tflite``; ``tensorflow``: every SavedModel;
    ``openvino``: the dense float ``.tflite`` at each precision OpenVINO has on this CPU).

    Returns:
        The variants, and ``{what: why}`` for what a listed runtime was not given.
    """
    timed, left_out = [baseline], {}
    ov = []
    if "openvino" in runtimes:
        from train2infer.evaluate.runtimes import openvino_precisions

        ov = openvino_precisions()
        if "bf16" not in ov:
            left_out["openvino bf16"] = "this CPU has no BF16 units (OpenVINO's OPTIMIZATION_CAPABILITIES)"
        left_out["openvino on quantized .tflite"] = (
            "not timed: OpenVINO runs a dynamic-range .tflite as float (measured on this machine when issue #15 was "
            "filed: as slow as the float model), so the result would be labelled int8 without being int8; a real int8 "
            "path is OpenVINO's own quantization")
    for v in exported:
        if v.runtime in runtimes:
            timed.append(v)
        if v.format == "tflite" and v.precision == "float" and not v.sparse:
            timed += [dataclasses.replace(v, format="openvino", precision=p) for p in ov]
    return timed, left_out


def refuse_chance(path: str, y, predicted) -> None:
    """Stop before any timing when the baseline is no better than the most common class.

    Raises:
        Train2InferError: One line with the accuracy, the class share and the likely causes.
    """
    from train2infer.stats import above_chance

    c = above_chance(y, predicted)
    if not c["above"]:
        raise Train2InferError(
            f"the baseline {path} scores {c['accuracy']:.4f} on {len(y)} test images, not significantly above "
            f"always answering the most common class ({c['majority']:.4f}): there is nothing to compare. "
            "Likely causes: the model expects other input scaling (the pipeline feeds pixels in [0, 1]), its "
            "classes are in another order than the data's class folders (sorted names), or it is untrained "
            "(train.epochs=0 with fresh weights). evaluate.chance_check=false measures it anyway")


def predict_all(variants: list[Variant], x: np.ndarray) -> dict[str, np.ndarray]:
    """Predicted class of every test image by every variant, each on its own runtime."""
    from train2infer.core.progress import Phase
    from train2infer.evaluate.runtimes import predict

    phase, out = Phase("evaluate", f"accuracy of {len(variants)} models on {len(x)} test images", unit="model"), {}
    for k, v in enumerate(variants):
        phase.update(k, len(variants))
        out[v.name] = np.argmax(predict(v, x), -1)
    phase.end()
    return out


def measure(variants: list[Variant], threads: list[int], x: np.ndarray, cfg, pools: dict | None = None,
            ) -> tuple[dict, dict, dict]:
    """Latency (every thread count), throughput (the most threads) and GEMM peaks (the first);
    ``pools``: the workers of each thread count from :func:`train2infer.evaluate.worker.started`
    (None: each session starts its own).

    Returns:
        ``(runs, peaks, samples)``, each keyed by thread count; ``samples[t][name]`` is every
        timed call's latency in order (whole rounds of ``cfg.runs_per_round``).
    """
    from train2infer.evaluate import peaks as P

    runs, peaks, samples = {}, {}, {}
    for t in threads:
        runs[t] = worker.session({v.name: v for v in variants}, t, x, cfg, workers=(pools or {}).get(t),
                                 min_seconds=cfg.min_seconds if t == threads[0] else cfg.min_seconds_others,
                                 batch_sizes=cfg.batch_sizes if t == max(threads) else ())  # all cores only
        samples[t] = runs[t].pop("samples_ms")
        for w in (pools or {}).get(t, {}).values():  # done: idle workers alive slow the next session
            w.close()                                # (reports/experiments/idle-workers/)
        if t == threads[0]:  # the % of peak in the metrics is against the primary thread count
            peaks[t] = P.matmul_peaks(t)
        for n, v in runs[t]["variants"].items():
            best = f"  best {max(v['throughput'].values()):.0f} img/s" if v["throughput"] else ""
            print(f"evaluate: threads={t} {n:26s} p50 {v['latency']['p50_ms']:.3f} ms  "
                  f"cv {v['latency']['cv']:.2f}{best}", flush=True)
    return runs, peaks, samples


def assemble(variants, sources, predicted, y, runs, peaks, threads, uncertainty, max_drop: float) -> dict:
    """``metrics.json``: a row per variant (with its ``uncertainty`` row, see
    :func:`train2infer.evaluate.metrics.uncertainty`), ratios, headline, machine summary."""
    from train2infer import litert

    primary, widest = runs[threads[0]], runs[max(threads)]
    rows = {}
    for v in variants:
        wide = widest["variants"][v.name]
        sparsity = litert.sparsity(v.path) if v.format == "tflite" else sources[v.source]["sparsity"]
        rows[v.name] = M.variant_row(
            float(np.mean(predicted[v.name] == y)), primary["variants"][v.name]["latency"],
            M.size_bytes(v.path), M.gzip_bytes(v.path), sparsity, lat_all_cores=wide["latency"],
            throughput={int(b): ips for b, ips in wide["throughput"].items()},
            saturation_batch=wide["saturation_batch"], work=sources[v.source],
            peak_gflops=(None if v.precision == "bf16"
                         else peaks[threads[0]]["int8" if v.integer else "float32"]["gflops"]),
            peak_rss_bytes=primary["variants"][v.name]["memory"]["peak_rss_bytes"]) | uncertainty["variants"][v.name]
    metrics = M.build_metrics(BASELINE.name, rows, {v.name: v.float_twin for v in variants})
    metrics["headline"] = M.headline(metrics, max_drop)
    metrics["machine"] = {"cpus": os.cpu_count(), "threads": threads[0], "threads_all_cores": max(threads),
                          "peak_gflops_float32": peaks[threads[0]]["float32"]["gflops"],
                          "peak_gops_int8": peaks[threads[0]]["int8"]["gflops"]}
    return metrics


def write(out: Path, metrics: dict, details: dict, runs: dict, threads: list[int]) -> None:
    """The stage's files under ``out``."""
    names = [v["name"] for v in details["variants"]]
    widest = runs[max(threads)]
    (out / "plots").mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", metrics)
    write_json(out / "benchmark.json", details)
    write_json(out / "plots" / "tradeoff.json", M.tradeoff_points(metrics))
    write_json(out / "plots" / "latency.json", [
        {"variant": n, "threads": t, **{k: round(r["variants"][n]["latency"][k], 6)
                                        for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "cv")}}
        for t, r in runs.items() for n in names])
    write_json(out / "plots" / "throughput.json", [
        {"variant": n, "batch": int(b), "images_per_second": ips}
        for n in names for b, ips in widest["variants"][n]["throughput"].items()])


def describe(metrics: dict) -> list[str]:
    """The stage's closing lines."""
    v, h = metrics["variants"], metrics["headline"]
    lines = [f"evaluate: {n:26s} p50 {r['latency_p50_ms']:.3f} ms  accuracy {r['accuracy']:.4f}  "
             f"{r['gflops_achieved']:.0f} GFLOP/s ({M.percent(r['peak_fraction'])} of peak)"
             f"{'' if r['within_floor'] else '  outside the accuracy floor'}" for n, r in v.items()]
    others = [n for n in v if n != metrics["baseline"]]
    small = max(others, key=lambda n: v[n]["gzip_ratio"])
    base, best = v[metrics["baseline"]], h["best_variant"]
    floor = f"within {h['max_drop_points']:g} point(s) and not significantly worse"
    if best is None:
        head = (f"evaluate: no variant is {floor} than the baseline (accuracy {base['accuracy']:.4f}); the fastest, "
                f"{h['fastest_variant']}, is {v[h['fastest_variant']]['speedup_p50']:.1f}x faster but outside")
    else:
        b = v[best]
        ci = f" [{b['speedup_p50_ci_low']:.1f}, {b['speedup_p50_ci_high']:.1f}]" if "speedup_p50_ci_low" in b else ""
        test = f" ({b['accuracy_verdict']}, McNemar p={b['mcnemar_p']:.3g})" if "mcnemar_p" in b else ""
        head = (f"evaluate: best {best} ({floor}): {b['speedup_p50']:.1f}x{ci} faster (p50), accuracy "
                f"{b['accuracy']:.4f} vs {base['accuracy']:.4f}{test}")
    busy = metrics["machine"].get("busy")
    return lines + [f"{head}; {small} {v[small]['gzip_ratio']:.1f}x smaller (gzip)"] + (
        [f"evaluate: warning: other processes used {metrics['machine']['others_fraction']:.0%} of the CPUs "
         "during the measurement; re-measure on an idle machine"] if busy else [])
