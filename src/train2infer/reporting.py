"""Assembling ``metrics.json`` and plot data from per-variant measurements."""

from __future__ import annotations

METRIC_KEYS = (
    "accuracy",
    "latency_p50_ms",
    "latency_p90_ms",
    "latency_p99_ms",
    "latency_mean_ms",
    "latency_std_ms",
    "latency_cv",
    "latency_p50_ms_all_cores",
    "throughput_ips",
    "saturation_batch",
    "size_bytes",
    "gzip_bytes",
    "sparsity",
    "gflop",
    "gflop_effective",
    "gflops_achieved",
    "peak_fraction",
    "peak_rss_mb",
    "speedup_p50",
    "gzip_ratio",
    "accuracy_vs_baseline",
    "accuracy_vs_float",
)


def variant_row(
    accuracy: float,
    lat: dict,
    size: int,
    gz: int,
    sparsity: float,
    *,
    lat_all_cores: dict | None = None,
    throughput: dict | None = None,
    saturation_batch: int = 1,
    macs: list[dict] = (),
    peak_gflops: float | None = None,
    peak_rss_bytes: int = 0,
) -> dict:
    """One variant's measurements in ``metrics.json`` naming (ratios added later).

    Args:
        accuracy: Top-1 test accuracy.
        lat: Batch-1 latency statistics at the primary thread count.
        size: File size in bytes.
        gz: gzip -9 size in bytes.
        sparsity: Fraction of zero kernel weights.
        lat_all_cores: Latency statistics with all cores (defaults to ``lat``).
        throughput: Batch size -> images/s (all cores).
        saturation_batch: Smallest batch within 5 % of the best throughput; None (stored
            as 0) when still growing at the largest batch of the sweep.
        macs: :func:`train2infer.benchmark.layer_macs` of the source Keras model.
        peak_gflops: The matching matmul peak (float32 or int8) at the primary threads.
        peak_rss_bytes: Peak resident memory of the variant's own inference process.
    """
    gflop = 2 * sum(r["macs"] for r in macs) / 1e9
    gflop_eff = 2 * sum(r["macs"] * r["nonzero"] for r in macs) / 1e9
    achieved = gflop / (lat["p50_ms"] / 1e3) if lat["p50_ms"] > 0 else 0.0
    return {
        "accuracy": round(float(accuracy), 6),
        "latency_p50_ms": round(lat["p50_ms"], 6),
        "latency_p90_ms": round(lat["p90_ms"], 6),
        "latency_p99_ms": round(lat["p99_ms"], 6),
        "latency_mean_ms": round(lat.get("mean_ms", lat["p50_ms"]), 6),
        "latency_std_ms": round(lat.get("std_ms", 0.0), 6),
        "latency_cv": round(lat.get("cv", 0.0), 4),
        "latency_p50_ms_all_cores": round((lat_all_cores or lat)["p50_ms"], 6),
        "throughput_ips": round(max((throughput or {1: 1e3 / lat["p50_ms"]}).values()), 1),
        "saturation_batch": int(saturation_batch) if saturation_batch else 0,
        "size_bytes": int(size),
        "gzip_bytes": int(gz),
        "sparsity": round(float(sparsity), 6),
        "gflop": round(gflop, 6),
        "gflop_effective": round(gflop_eff, 6),
        "gflops_achieved": round(achieved, 3),
        "peak_fraction": round(achieved / peak_gflops, 4) if peak_gflops else 0.0,
        "peak_rss_mb": round(peak_rss_bytes / 2**20, 1),
    }


def build_metrics(baseline: str, rows: dict[str, dict]) -> dict:
    """``{"baseline", "variants"}`` with ratios and accuracy differences added.

    ``speedup_p50`` = baseline p50 / variant p50 (> 1 is faster);
    ``gzip_ratio`` = baseline gzip size / variant gzip size (> 1 is smaller);
    ``accuracy_vs_baseline`` = accuracy - baseline accuracy;
    ``accuracy_vs_float`` = accuracy - accuracy of the same source's ``_tflite_float``
    variant (what quantization cost; 0 for float variants and the baseline).
    """
    if baseline not in rows:
        raise ValueError(f"baseline {baseline!r} is not among the variants")
    base = rows[baseline]
    variants = {}
    for name, row in rows.items():
        r = dict(row)
        r["speedup_p50"] = round(base["latency_p50_ms"] / row["latency_p50_ms"], 4)
        r["gzip_ratio"] = round(base["gzip_bytes"] / row["gzip_bytes"], 4)
        r["accuracy_vs_baseline"] = round(row["accuracy"] - base["accuracy"], 6)
        # quantized (and sparse-format) variants against the float TFLite model of the same source
        source_float = name.split("_tflite_")[0] + "_tflite_float" if "_tflite_" in name else None
        ref = rows.get(source_float, row)
        r["accuracy_vs_float"] = round(row["accuracy"] - ref["accuracy"], 6)
        variants[name] = {k: r[k] for k in METRIC_KEYS}
    return {"baseline": baseline, "variants": variants}


def tradeoff_points(metrics: dict) -> list[dict]:
    """Plot rows (one per variant) for DVC's accuracy-vs-latency scatter plot."""
    return [
        {
            "variant": name,
            "latency_p50_ms": v["latency_p50_ms"],
            "accuracy": v["accuracy"],
            "gzip_bytes": v["gzip_bytes"],
        }
        for name, v in metrics["variants"].items()
    ]


TABLE_COLUMNS = (
    ("accuracy", "accuracy", "{:.4f}"),
    ("p50 ms", "latency_p50_ms", "{:.3f}"),
    ("p90 ms", "latency_p90_ms", "{:.3f}"),
    ("p99 ms", "latency_p99_ms", "{:.3f}"),
    ("size B", "size_bytes", "{:,}"),
    ("gzip B", "gzip_bytes", "{:,}"),
    ("sparsity", "sparsity", "{:.3f}"),
    ("speedup p50", "speedup_p50", "{:.2f}x"),
    ("gzip ratio", "gzip_ratio", "{:.2f}x"),
)


def markdown_table(metrics: dict, columns=TABLE_COLUMNS) -> str:
    """The variants of ``metrics.json`` as a Markdown table (one row per variant)."""
    head = "| variant | " + " | ".join(title for title, _, _ in columns) + " |"
    rule = "|---" * (len(columns) + 1) + "|"
    rows = [
        f"| {name} | " + " | ".join(fmt.format(v[key]) for _, key, fmt in columns) + " |"
        for name, v in metrics["variants"].items()
    ]
    return "\n".join([head, rule, *rows])


SUMMARY_COLUMNS = (
    ("accuracy", "accuracy", "{:.4f}"),
    ("p50 ms", "latency_p50_ms", "{:.3f}"),
    ("p90 ms", "latency_p90_ms", "{:.3f}"),
    ("CV", "latency_cv", "{:.2f}"),
    ("img/s", "throughput_ips", "{:.0f}"),
    ("size B", "size_bytes", "{:,}"),
    ("gzip B", "gzip_bytes", "{:,}"),
    ("sparsity", "sparsity", "{:.3f}"),
    ("GFLOP", "gflop", "{:.4f}"),
    ("% of peak", "peak_fraction", "{:.0%}"),
    ("speedup p50", "speedup_p50", "{:.2f}x"),
    ("gzip ratio", "gzip_ratio", "{:.2f}x"),
)


def report_markdown(metrics, bench, convert, sparsity, prune, prepare, plotted, figures: str,
                    channels: dict | None = None) -> str:
    """The evaluation report (``reports/report.md``) as Markdown.

    Args:
        metrics: ``metrics.json``.
        bench: ``evaluate/benchmark.json`` (method, machine, every run).
        convert: ``convert/summary.json``.
        sparsity: ``prune/sparsity.json`` rows.
        prune: ``prune/metrics.json``.
        prepare: ``prepare/summary.json``.
        plotted: What each figure shows (from :mod:`train2infer.plots`).
        figures: Path of the figures folder relative to the report.
        channels: ``prune/channels.json`` (per-layer widths of channel pruning).
    """
    v, m, meth = metrics["variants"], metrics["machine"], bench["method"]
    threshold = meth["cv_threshold"]
    flagged = [n for n in v if v[n]["latency_cv"] > threshold]
    widest = bench["runs"][str(m["threads_all_cores"])]
    out = [
        "# train2infer report",
        "",
        f"Data: `{prepare.get('source', '?')}`, images {prepare['image_shape']}, "
        f"train/val/test = {prepare['sizes']['train']}/{prepare['sizes']['val']}/{prepare['sizes']['test']}. "
        f"Machine: {bench['machine']['cpu']}, {bench['machine']['cpus']} cores; "
        f"TensorFlow {bench['machine']['tensorflow']}, LiteRT {bench['machine']['ai_edge_litert']}.",
        "",
        f"## Summary (baseline `{metrics['baseline']}`, batch 1, {m['threads']} thread(s))",
        "",
        markdown_table(metrics, SUMMARY_COLUMNS),
        "",
        f"`img/s` is the best offline throughput over the batch sweep with {m['threads_all_cores']} threads; "
        f"`% of peak` compares achieved GFLOP/s with this machine's GEMM peak (float32 "
        f"{m['peak_gflops_float32']:.0f} GFLOP/s, int8 {m['peak_gops_int8']:.0f} GOP/s).",
        "",
        (f"**Noisy:** latency CV above {threshold:.0%} for {', '.join(f'`{n}`' for n in flagged)}: compare their "
         "p50s with care (the interleaved method still exposes every variant to the same noise)."
         if flagged else f"Every variant's latency CV is within {threshold:.0%}."),
        "",
        "## Method",
        "",
        f"MLPerf-style single-stream latency and offline throughput. For each thread count "
        f"({', '.join(str(t) for t in meth['threads_resolved'])}) every variant runs in a **fresh process of its "
        "own** (a LiteRT process never imports TensorFlow) with a fresh interpreter. After "
        f"{meth['warmup_runs']} untimed warm-up calls, the variants are timed **interleaved**: in rounds whose "
        f"order rotates, each variant runs {meth['block_warmup']} untimed then {meth['runs_per_round']} "
        f"individually timed batch-1 calls (input set, invoke, output read), until every variant has at least "
        f"{meth['min_runs']} timed calls and the rounds lasted at least {meth['min_seconds']} s. "
        f"Single-thread workers are pinned to one core. Throughput: images/s over at least "
        f"{meth['throughput_seconds']} s per batch size ({', '.join(str(b) for b in meth['batch_sizes'])}). "
        "Work: multiply-adds of Conv2D / DepthwiseConv2D / Dense layers counted from the Keras model "
        "(FLOPs = 2 x MACs; `gflop_effective` skips zero weights). Peak: the best p50 rate of 1x1 and 3x3 "
        "convolution GEMMs on the same runtime and threads. Memory: the peak resident set of each "
        "variant's own process after its latency rounds.",
        "",
        "## Accuracy vs latency",
        "",
        f"![Pareto]({figures}/pareto.png)",
        "",
        "Pareto frontier (no other variant is both faster and at least as accurate): "
        + ", ".join(f"`{n}`" for n in plotted["pareto"]["frontier"]) + ".",
        "",
        "## Throughput vs batch size",
        "",
        f"![Throughput]({figures}/throughput.png)",
        "",
        "| variant | " + " | ".join(f"batch {b}" for b in meth["batch_sizes"]) + " | saturates at batch |",
        "|---" * (len(meth["batch_sizes"]) + 2) + "|",
    ]
    for n, r in widest["variants"].items():
        cells = " | ".join(f"{r['throughput'][str(b)]:.0f}" for b in meth["batch_sizes"])
        sat = r["saturation_batch"] or f"not within the sweep (still growing at {max(meth['batch_sizes'])})"
        out.append(f"| {n} | {cells} | {sat} |")
    out += [
        "",
        "Images/s with all cores; a variant saturates at the smallest batch within 5 % of its best "
        "(and not while the last step of the sweep still gains more than 5 %).",
        "",
        "## Work and the physical limit",
        "",
        f"![Roofline]({figures}/roofline.png)",
        "",
        "| variant | GFLOP dense | GFLOP effective | achieved GFLOP/s | % of peak | limited by |",
        "|---|---|---|---|---|---|",
    ]
    for n, r in v.items():
        bound = "work (near the GEMM peak)" if r["peak_fraction"] >= 0.5 else "overhead (far below the peak)"
        out.append(f"| {n} | {r['gflop']:.4f} | {r['gflop_effective']:.4f} | {r['gflops_achieved']:.1f} | "
                   f"{r['peak_fraction']:.0%} | {bound} |")
    out += ["", "## Memory", "",
            "| variant | peak RSS MiB | runtime alone MiB | interpreter load KiB | allocate (arena) KiB | activation tensors KiB |",
            "|---|---|---|---|---|---|"]

    def kib(mem, key):
        return f"{mem[key] / 1024:.0f}" if key in mem else "n/a"

    for n, mem in bench["memory"].items():
        out.append(f"| {n} | {mem['peak_rss_bytes'] / 2**20:.0f} | {mem['runtime_rss_bytes'] / 2**20:.0f} | "
                   f"{kib(mem, 'load_rss_bytes')} | {kib(mem, 'allocate_rss_bytes')} | {kib(mem, 'activation_bytes')} |")
    out += [
        "",
        "Runtime alone: the process after importing its runtime, before loading the model. Interpreter load and "
        "allocate: resident memory growth while creating the LiteRT interpreter and in `allocate_tensors()`, "
        "where the tensor arena is allocated (with XNNPACK's packed weights; LiteRT's Python API does not "
        "report the arena itself). Activation tensors: the sum of all non-constant tensors, an upper bound "
        "of the arena, which reuses memory between tensors whose lifetimes do not overlap.",
        "",
        "## Size",
        "",
        f"![Sizes]({figures}/sizes.png)",
        "",
        "## Pruning",
        "",
    ]
    out += channel_markdown(prune, channels or {})
    out += [
        f"Magnitude pruning (TF-MOT, pattern `{prune.get('pattern', 'unstructured')}`, policy "
        f"`{prune.get('policy', 'none')}`): target sparsity {prune.get('target_sparsity')}, achieved overall "
        f"{prune.get('sparsity', 0):.4f}, lowest pruned kernel {prune.get('min_kernel_sparsity', 0):.4f}.",
        "",
        f"![Sparsity]({figures}/sparsity.png)",
        "",
        "## Fusion (Keras layers -> TFLite ops)",
        "",
    ]
    convert = {k: v for k, v in convert.items() if k != "skipped"}
    for model, entry in convert.items():
        f = entry["tflite"]["float"]
        diffs = ", ".join(f"{k} {v['max_abs_diff']:.1e}" for k, v in entry["tflite"].items())
        out.append(f"`{model}`: {entry['keras_layers']} Keras layers -> {f['ops']} TFLite ops "
                   f"({', '.join(f'{k} x{c}' for k, c in f['op_types'].items())}); max |TFLite - Keras| {diffs}.")
        fold, graph = entry.get("keras_fold"), entry.get("saved_model_graph")
        if fold:
            f32 = (f" (float32: {fold['max_abs_diff_float32']:.1e}, logits up to {fold['max_abs_logit']:.1f})"
                   if "max_abs_diff_float32" in fold else "")
            out.append(f"Keras-level BatchNorm folding: {fold['layers_before']} -> {fold['layers_after']} layers, "
                       f"max |folded - unfused| {fold['max_abs_diff']:.1e} in float64{f32}.")
        if graph:
            out.append(f"SavedModel (folded) graph through Grappler: {graph['nodes_before']} -> "
                       f"{graph['nodes_after']} compute nodes ({', '.join(f'{k} x{c}' for k, c in graph['ops_after'].items())}).")
        out.append("")
    first = next(iter(convert.values()))["tflite"]["float"]["fusion"]
    out += ["| TFLite op | Keras layers |", "|---|---|"]
    out += [f"| {r['op']} | {' + '.join(r['keras_layers'])} |" for r in first["ops"]]
    out += [f"| (none) | {u['layer']} ({u['reason']}) |" for u in first["unmapped"]]
    out += xnnpack_markdown(metrics, convert, bench)
    out += ["", "## Training", "", f"![Training]({figures}/training.png)", ""]
    if bench.get("per_class"):
        out += per_class_markdown(bench["per_class"], prepare)
    return "\n".join(out)


def xnnpack_markdown(metrics: dict, convert: dict, bench: dict) -> list[str]:
    """Did XNNPACK's sparse inference speed up the sparse-format model? (``convert.sparse_format``)

    Compares ``pruned_tflite_sparse`` with ``pruned_tflite_float`` (the same weights stored
    dense), says whether the delegate took the sparse weights (read from the delegated
    interpreter by :func:`train2infer.conversion.delegation`), and, when it did but nothing
    got faster, gives XNNPACK's own rule: on x86 its sparse (NCHW) path is used only on CPUs
    without AVX, where its SSE sparse kernels beat the dense ones.
    """
    v = metrics["variants"]
    if "pruned_tflite_sparse" not in v or "pruned_tflite_float" not in v:
        return []
    sparse, dense = v["pruned_tflite_sparse"], v["pruned_tflite_float"]
    info = (convert.get("pruned", {}).get("tflite", {}).get("sparse", {}) or {}).get("xnnpack", {})
    ratio = dense["latency_p50_ms"] / sparse["latency_p50_ms"]
    flags = bench.get("machine", {}).get("cpu_flags", [])
    lines = ["", "## XNNPACK sparse inference", "",
             f"`pruned_tflite_sparse` (weights in TFLite's sparse format, {sparse['sparsity']:.0%} zeros over all "
             "kernels) "
             f"p50 {sparse['latency_p50_ms']:.3f} ms vs `pruned_tflite_float` (the same weights stored dense) "
             f"{dense['latency_p50_ms']:.3f} ms: **{ratio:.2f}x**.", ""]
    taken = info.get("sparse_weights_taken")
    left = info.get("not_delegated") or {}
    lines.append(f"Read from the delegate: {info.get('delegate_nodes', '?')} XNNPACK node(s); ops left to TFLite: "
                 f"{', '.join(f'{k} x{c}' for k, c in left.items()) or 'none'}; sparse weights (`DENSIFY` inputs) "
                 f"{'entered the XNNPACK node, so it was asked for sparse inference' if taken else 'were not taken by XNNPACK'}.")
    if ratio < 1.05:
        if taken and "avx" in flags:
            lines.append("Why no speed-up: XNNPACK rewrites a subgraph for sparse (NCHW) inference only where "
                         "`xnn_is_chw_compatible_config` allows it, which on x86 is *only on CPUs without AVX* "
                         "(its sparse kernels are SSE; with AVX it expects dense inference to be faster). This "
                         f"CPU reports {', '.join(f for f in flags if f in ('avx', 'avx2', 'avx512f'))} (from "
                         "/proc/cpuinfo), so XNNPACK "
                         "densified the weights and ran the dense kernels. The sparse path is for ARM phones "
                         "and pre-AVX x86.")
        elif not taken:
            lines.append("Why no speed-up: XNNPACK did not take the sparse weights, so the model ran with "
                         "TFLite's DENSIFY op and dense kernels (check the subgraph rules in the XNNPACK README: "
                         "3x3 stride-2 stem on 3 channels, 1x1 convs at least 2/3 zeros, spatial MEAN at the end).")
    return lines + [""]


def channel_markdown(prune: dict, channels: dict) -> list[str]:
    """The report's channel-pruning paragraph and per-layer width table."""
    c = prune.get("channels") or {}
    if not c or c.get("criterion") == "none":
        return ["Channel pruning: off (`prune.channels.criterion=none`).", ""]
    rows = [
        f"Channel pruning (`{c['criterion']}`, keep {c.get('keep')}): {c['dead_channels']} dead channels found; "
        f"multiply-adds per image {c['macs_before']:,} -> {c['macs_after']:,} (**{c['flops_ratio']:.2f}x fewer**), "
        f"parameters {c['params_before']:,} -> {c['params_after']:,}; validation accuracy "
        f"{c['val_accuracy_trained']:.4f} -> {c['val_accuracy_cut']:.4f} right after the cut -> "
        f"{c['val_accuracy_fine_tuned']:.4f} after fine-tuning (`models/shrunk.keras`, variants `shrunk_*`). "
        f"TF-MOT magnitude pruning (`pruned_*`) started from the {prune.get('start_from', 'trained')} model.",
        "",
    ]
    layers = channels.get("layers") or {}
    if layers:
        rows += ["| layer | width | kept | dead |", "|---|---:|---:|---:|"]
        rows += [f"| {n} | {e['width']} | {e['kept']} | {e['dead']} |" for n, e in layers.items()]
        rows.append("")
    return rows


def per_class_accuracy(y_true, y_pred, class_names) -> dict:
    """Accuracy (recall) per class, keyed by class name: ``{name: {"n", "accuracy"}}``."""
    import numpy as np

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    out = {}
    for k, name in enumerate(class_names):
        mask = y_true == k
        n = int(mask.sum())
        out[str(name)] = {"n": n, "accuracy": round(float(np.mean(y_pred[mask] == k)), 4) if n else None}
    return out


def per_class_markdown(per_class: dict, prepare: dict) -> list[str]:
    """The report's per-class table: one row per class name, one column per variant."""
    variants = list(per_class)
    names = list(next(iter(per_class.values())))
    rows = ["## Accuracy per class (test split)", "",
            "| class | n | " + " | ".join(f"`{v}`" for v in variants) + " |",
            "|---|---:|" + "---:|" * len(variants)]
    for c in names:
        first = per_class[variants[0]][c]
        cells = [f"{per_class[v][c]['accuracy']:.3f}" if per_class[v][c]["accuracy"] is not None else "-"
                 for v in variants]
        rows.append(f"| {c} | {first['n']} | " + " | ".join(cells) + " |")
    skipped = prepare.get("skipped") or []
    if skipped:
        rows += ["", f"prepare skipped {len(skipped)} unreadable image file(s); see `reports/prepare/summary.json`."]
    return rows + [""]


def headline(metrics: dict) -> dict:
    """A few flat key figures for short ``dvc exp show`` columns (``headline.*``).

    ``best_speedup_p50`` is the fastest variant's speedup over the baseline, with its
    ``best_accuracy``; ``max_gzip_ratio`` the smallest variant's; ``max_accuracy_drop`` the
    worst accuracy loss of any variant against the baseline (negative: a gain).
    """
    v = metrics["variants"]
    base = v[metrics["baseline"]]
    others = {n: r for n, r in v.items() if n != metrics["baseline"]}
    fastest = max(others, key=lambda n: others[n]["speedup_p50"])
    return {
        "baseline_accuracy": base["accuracy"],
        "best_speedup_p50": others[fastest]["speedup_p50"],
        "best_accuracy": others[fastest]["accuracy"],
        "max_gzip_ratio": max(r["gzip_ratio"] for r in others.values()),
        "max_accuracy_drop": round(max(base["accuracy"] - r["accuracy"] for r in others.values()), 6),
    }
