"""The report's sections, one function each, from the stages' reports (Markdown lines)."""

from __future__ import annotations

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


def ratio(x: float) -> str:
    """A ratio to three significant figures: ``8.64`` -> ``8.64``, ``19.23`` -> ``19.2``."""
    return f"{x:.2f}" if abs(x) < 10 else f"{x:.1f}"


def with_interval(v: dict, key: str) -> str:
    """``8.6× [8.1, 9.2]``: a speedup and its 95 % interval (``8.6×`` where none was measured)."""
    lo, hi = v.get(f"{key}_ci_low"), v.get(f"{key}_ci_high")
    return f"{ratio(v[key])}×" + ("" if lo is None else f" [{ratio(lo)}, {ratio(hi)}]")


def accuracy_interval(v: dict) -> str:
    """``0.9926 [0.9786, 0.9977]``: accuracy and its Wilson 95 % interval."""
    lo, hi = v.get("accuracy_ci_low"), v.get("accuracy_ci_high")
    return f"{v['accuracy']:.4f}" + ("" if lo is None else f" [{lo:.4f}, {hi:.4f}]")


def versus_baseline(v: dict) -> str:
    """``+1.86 pts [+0.37, +3.35], p=0.021``: the accuracy difference, its paired bootstrap
    interval and the exact McNemar p-value."""
    if "mcnemar_p" not in v:
        return f"{100 * v['accuracy_vs_baseline']:+.2f} pts"
    return (f"{100 * v['accuracy_vs_baseline']:+.2f} pts [{100 * v['accuracy_diff_ci_low']:+.2f}, "
            f"{100 * v['accuracy_diff_ci_high']:+.2f}], p={v['mcnemar_p']:.3g}")


def cell(v: dict, key: str, fmt) -> str:
    """A table cell: ``fmt`` is a format string for ``v[key]`` (``n/a`` when None) or a function of the row."""
    if callable(fmt):
        return fmt(v)
    return "n/a" if v[key] is None else fmt.format(v[key])


def markdown_table(metrics: dict, columns=TABLE_COLUMNS) -> str:
    """The variants of ``metrics.json`` as a Markdown table (one row per variant)."""
    head = "| variant | " + " | ".join(title for title, _, _ in columns) + " |"
    rule = "|---" * (len(columns) + 1) + "|"
    rows = [f"| {name} | " + " | ".join(cell(v, key, fmt) for _, key, fmt in columns) + " |"
            for name, v in metrics["variants"].items()]
    return "\n".join([head, rule, *rows])


SUMMARY_COLUMNS = (
    ("accuracy [95% CI]", "accuracy", accuracy_interval),
    ("vs baseline", "accuracy_vs_baseline", versus_baseline),
    ("p50 ms", "latency_p50_ms", "{:.3f}"),
    ("p90 ms", "latency_p90_ms", "{:.3f}"),
    ("CV", "latency_cv", "{:.2f}"),
    ("img/s", "throughput_ips", "{:.0f}"),
    ("size B", "size_bytes", "{:,}"),
    ("gzip B", "gzip_bytes", "{:,}"),
    ("sparsity", "sparsity", "{:.3f}"),
    ("GFLOP", "gflop", "{:.4f}"),
    ("% of peak", "peak_fraction", "{:.0%}"),  # n/a where no matching peak was measured (bf16)
    ("speedup p50 [95% CI]", "speedup_p50", lambda v: with_interval(v, "speedup_p50")),
    ("gzip ratio", "gzip_ratio", "{:.2f}x"),
    ("accuracy floor", "within_floor", lambda v: "within" if v.get("within_floor", True) else "**outside**"),
)


def best_line(metrics: dict) -> list[str]:
    """Which variant is best: the fastest within the accuracy floor (``evaluate.max_drop``), or a
    plain statement that none qualifies; the fastest variant outside the floor is named as such."""
    h, v = metrics.get("headline", {}), metrics["variants"]
    if "max_drop_points" not in h:
        return []
    floor = (f"the fastest variant that loses at most {h['max_drop_points']:g} point(s) of accuracy against the "
             "baseline on the test images and is not significantly worse by the paired test (`evaluate.max_drop`; "
             "of variants not measurably slower than the fastest, the most accurate)")
    fastest = h["fastest_variant"]
    outside = ([f"The fastest variant, `{fastest}` ({with_interval(v[fastest], 'speedup_p50')}), is **outside the "
                f"floor** ({versus_baseline(v[fastest])}, {v[fastest].get('accuracy_verdict', 'not tested')}): it is "
                "not called best.", ""] if not h["fastest_within_floor"] else [])
    if h["best_variant"] is None:
        return [f"**Best: none.** No variant qualifies as {floor}.", "", *outside]
    b = v[h["best_variant"]]
    return [f"**Best: `{h['best_variant']}`**, {with_interval(b, 'speedup_p50')} faster than the baseline (p50), "
            f"accuracy {versus_baseline(b)} ({b.get('accuracy_verdict', 'not tested')}): {floor}.", "", *outside]


def markdown(r: dict, plotted: dict, figures: str) -> str:
    """The whole report as Markdown.

    Args:
        r: The stages' reports, as :func:`train2infer.report.run.read_reports` reads them.
        plotted: What each figure shows (from :mod:`train2infer.report.plots`).
        figures: Path of the figures folder relative to the report.
    """
    out = summary(r["metrics"], r["benchmark"], r["prepare"]) + uncertainty(r["metrics"], r["benchmark"]["method"])
    out += method(r["benchmark"]["method"])
    out += tradeoffs(r["metrics"], r["benchmark"], plotted, figures) + work(r["metrics"], figures)
    out += runtimes(r["metrics"], r["benchmark"])
    out += memory(r["benchmark"]["memory"]) + ["## Size", "", f"![Sizes]({figures}/sizes.png)", ""]
    out += pruning(r["shrink"], r["channels"], r["prune"], r["sparsity"], figures) + control(r["metrics"])
    out += where_the_time_goes(r["latency"], figures)
    out += fusion(r["convert"]) + int8_control(r["convert"])
    out += xnnpack_markdown(r["metrics"], r["convert"], r["benchmark"])
    out += ["", "## Training", "", f"![Training]({figures}/training.png)", ""]
    out += per_class_markdown(r["benchmark"]["per_class"], r["prepare"])
    return "\n".join(out)


def summary(metrics: dict, bench: dict, prepare: dict) -> list[str]:
    """Title, data and machine line, the summary table and the noise verdict."""
    v, m = metrics["variants"], metrics["machine"]
    threshold = bench["method"]["cv_threshold"]
    flagged = [n for n in v if v[n]["latency_cv"] > threshold]
    mach, sizes = bench["machine"], prepare["sizes"]
    return [
        "# train2infer report", "",
        f"Data: `{prepare.get('source', '?')}`, images {prepare['image_shape']}, "
        f"train/val/test = {sizes['train']}/{sizes['val']}/{sizes['test']}. Machine: {mach['cpu']}"
        f"{' (' + mach['cpu_id'] + ')' if mach.get('cpu_id') else ''}, {mach['cpus']} cores; "
        f"TensorFlow {mach['tensorflow']}, LiteRT {mach['ai_edge_litert']}.", "",
        f"## Summary (baseline `{metrics['baseline']}`, batch 1, {m['threads']} thread(s))", "",
        markdown_table(metrics, SUMMARY_COLUMNS), "", *best_line(metrics),
        f"`img/s` is the best offline throughput over the batch sweep with {m['threads_all_cores']} threads; "
        f"`% of peak` compares achieved GFLOP/s with this machine's GEMM peak (float32 "
        f"{m['peak_gflops_float32']:.0f} GFLOP/s, int8 {m['peak_gops_int8']:.0f} GOP/s).", "",
        (f"**Noisy:** latency CV above {threshold:.0%} for {', '.join(f'`{n}`' for n in flagged)}: compare their "
         "p50s with care (the interleaved method still exposes every variant to the same noise)."
         if flagged else f"Every variant's latency CV is within {threshold:.0%}."), "",
    ] + machine_state(mach.get("state"))


def machine_state(state: dict | None) -> list[str]:
    """The machine's load during the measurement, with a warning when other work competed."""
    if not state:
        return []
    load = "load average (1/5/15 min) before {} and after {}".format(
        *("/".join(f"{x:.2f}" for x in state[k]) for k in ("loadavg_before", "loadavg_after")))
    gov = f"frequency governor `{state['governor']}`" if state["governor"] else "frequency governor not exposed"
    if state["others_fraction"] is None:
        return [f"Machine state: {load}; {gov}; CPU time of other processes not readable (/proc/stat).", ""]
    share = (f"other processes used {state['others_fraction']:.1%} of all CPUs' time over the "
             f"{state['wall_s']:.0f} s of measurement (this run {state['own_fraction']:.1%})")
    if state["busy"]:
        return [f"**Busy machine:** {share}, above the {state['busy_threshold']:.0%} threshold; {load}; {gov}. "
                "Latencies are slower and noisier than on a quiet machine: re-measure with "
                "`dvc repro --force --single-item evaluate report` when it is idle.", ""]
    return [f"Machine state: quiet; {share}; {load}; {gov}.", ""]


def uncertainty(metrics: dict, meth: dict) -> list[str]:
    """Accuracy against the baseline on the same test images: intervals, McNemar, verdicts; how
    the speedup intervals were made (``meth``: the evaluate method of ``benchmark.json``)."""
    v, base = metrics["variants"], metrics["baseline"]
    if "mcnemar_p" not in v[base]:
        return []
    share = metrics.get("machine", {}).get("quiet_rounds")
    quiet = (f"{share:.0%} of the rounds, the baseline within {meth.get('quiet_tolerance', 0):.0%} of its fastest"
             if share is not None else "all rounds")
    out = ["## Accuracy against the baseline (paired, same test images)", "",
           "| variant | accuracy [95% CI] | difference [95% CI] | only baseline right | only variant right | "
           "McNemar p | at 5 % |", "|---|---|---|---:|---:|---:|---|"]
    out += [f"| {n} | {accuracy_interval(r)} | {versus_baseline(r).split(', p=')[0]} | {r['mcnemar_only_baseline']} "
            f"| {r['mcnemar_only_variant']} | {r['mcnemar_p']:.3g} | {r['accuracy_verdict']} |"
            for n, r in v.items() if n != base]
    h = metrics.get("headline", {})
    return out + [
        "", "Accuracy interval: Wilson score, 95 %. Difference: variant minus baseline in points, with a paired "
        "bootstrap 95 % interval (10,000 resamples of the test images, both models' answers kept together). "
        "McNemar: exact two-sided binomial test on the images exactly one of the two models gets right. Speedups "
        f"(summary table): ratio of p50s over the rounds in which the machine was quiet ({quiet}), with a 95 % "
        f"moving-block bootstrap interval over those rounds (runs of {meth.get('bootstrap_block', 1)} rounds, "
        "the same rounds for both models: calls within a round share the machine's state, so rounds, not calls, "
        f"are resampled), widened by this machine's session-to-session spread of {meth.get('session_cv', 0):.0%} "
        "(`evaluate.session_cv`; docs/method.md). The exact test is "
        "conservative when few images disagree: a difference interval that excludes 0 beside p ≥ 0.05 (e.g. 5 "
        "images one way, 0 the other: p = 0.0625) is borderline evidence, reported as no significant difference.",
        *([f"Largest accuracy drop of any variant: {100 * h['max_accuracy_drop']:.2f} points; the data cannot rule "
           f"out a drop of up to {100 * h['max_accuracy_drop_upper']:.2f} points (upper 95 % bound)."]
          if "max_accuracy_drop_upper" in h else []),
        "Per-image predictions of every variant: `reports/evaluate/predictions.json` (a DVC output).", "",
    ]


def method(meth: dict) -> list[str]:
    """How latency, throughput, work, peak and memory were measured."""
    return [
        "## Method", "",
        f"MLPerf-style single-stream latency and offline throughput. For each thread count "
        f"({', '.join(str(t) for t in meth['threads_resolved'])}) every variant runs in a **fresh process of its "
        "own** (a LiteRT process never imports TensorFlow) with a fresh interpreter. After "
        f"{meth['warmup_runs']} untimed warm-up calls, the variants are timed **interleaved**: in rounds whose "
        f"order rotates, each variant runs {meth['block_warmup']} untimed then {meth['runs_per_round']} "
        f"individually timed batch-1 calls (input set, invoke, output read), until every variant has at least "
        f"{meth['min_runs']} timed calls and the rounds lasted at least {meth['min_seconds']} s (at "
        f"{meth['threads_resolved'][0]} thread(s), whose latencies the speedups and their intervals use; "
        f"{meth.get('min_seconds_others', meth['min_seconds'])} s at each other count). "
        f"Single-thread workers are pinned to one core. Throughput: images/s over at least "
        f"{meth['throughput_seconds']} s per variant and batch size, in two windows a pass over the variants apart "
        f"({', '.join(str(b) for b in meth['batch_sizes'])}; batch 1: "
        "1,000 / the mean latency in ms of the all-cores rounds, which timed back-to-back batch-1 calls). "
        "Work: multiply-adds of Conv2D / DepthwiseConv2D / Dense layers counted from the Keras model "
        "(FLOPs = 2 x MACs; `gflop_effective` skips zero weights). Peak: the best p50 rate of 1x1 and 3x3 "
        "convolution GEMMs on LiteRT at the same thread count, float32 or int8 as the variant computes (used as "
        "this machine's peak for every runtime). Memory: the peak resident set of each "
        "variant's own process after its latency rounds.", "",
    ]


def tradeoffs(metrics: dict, bench: dict, plotted: dict, figures: str) -> list[str]:
    """Accuracy vs latency (Pareto frontier) and throughput vs batch size."""
    meth = bench["method"]
    widest = bench["runs"][str(metrics["machine"]["threads_all_cores"])]
    out = [
        "## Accuracy vs latency", "", f"![Pareto]({figures}/pareto.png)", "",
        "Pareto frontier (no other variant is both faster and at least as accurate): "
        + ", ".join(f"`{n}`" for n in plotted["pareto"]["frontier"]) + ".", "",
        "## Throughput vs batch size", "", f"![Throughput]({figures}/throughput.png)", "",
        "| variant | " + " | ".join(f"batch {b}" for b in meth["batch_sizes"]) + " | saturates at batch |",
        "|---" * (len(meth["batch_sizes"]) + 2) + "|",
    ]
    for n, r in widest["variants"].items():
        cells = " | ".join(f"{r['throughput'][str(b)]:.0f}" for b in meth["batch_sizes"])
        sat = r["saturation_batch"] or f"not within the sweep (still growing at {max(meth['batch_sizes'])})"
        out.append(f"| {n} | {cells} | {sat} |")
    return out + ["", "Images/s with all cores; a variant saturates at the smallest batch within 5 % of its best "
                  "(and not while the last step of the sweep still gains more than 5 %).", ""]


UNREACHED = {"floors": "every group at its floor",  # shrink's chooser: why it stopped above the budget
             "no saving": "by the latency tables, no further cut of a group above its floor makes the model faster"}

RUNTIME_NAMES = {"tensorflow": "TensorFlow", "litert": "LiteRT (XNNPACK)", "openvino": "OpenVINO"}


def runtimes(metrics: dict, bench: dict) -> list[str]:
    """Every model on every runtime, fastest first, and which runtime wins per model."""
    v = metrics["variants"]
    info = {d["name"]: d for d in bench["variants"]}
    out = ["## Runtimes", "",
           "Each model (source) on every runtime it was given to, in the same interleaved session, fastest first. "
           "Precision `float` is float32 everywhere (OpenVINO's precision hint is set explicitly: its default on a "
           "BF16-capable CPU is bf16).", "",
           "| model | variant | runtime | precision | p50 ms | speedup p50 | accuracy |",
           "|---|---|---|---|---:|---:|---:|"]
    verdicts = []
    for source in dict.fromkeys(d["source"] for d in info.values()):
        names = sorted((n for n, d in info.items() if d["source"] == source), key=lambda n: v[n]["latency_p50_ms"])
        out += [f"| {source} | `{n}` | {RUNTIME_NAMES[info[n]['runtime']]} | {info[n]['precision']} | "
                f"{v[n]['latency_p50_ms']:.3f} | {with_interval(v[n], 'speedup_p50')} | {v[n]['accuracy']:.4f} |"
                for n in names]
        floats = [n for n in names if info[n]["precision"] == "float" and not info[n]["sparse"]]
        at_float = f"; at float32 `{floats[0]}` ({RUNTIME_NAMES[info[floats[0]]['runtime']]})" if floats else ""
        verdicts.append(f"`{source}`: fastest `{names[0]}` ({RUNTIME_NAMES[info[names[0]]['runtime']]}){at_float}")
    out += ["", "Fastest runtime per model: " + "; ".join(verdicts) + "."]
    out += [f"Left out: {what}: {why}." for what, why in bench.get("left_out", {}).items()]
    return out + [""]


def work(metrics: dict, figures: str) -> list[str]:
    """Work per variant against the machine's GEMM peak."""
    out = ["## Work and the physical limit", "", f"![Roofline]({figures}/roofline.png)", "",
           "| variant | GFLOP dense | GFLOP effective | achieved GFLOP/s | % of peak | limited by |",
           "|---|---|---|---|---|---|"]
    for n, r in metrics["variants"].items():
        share = r["peak_fraction"]
        bound = ("n/a: no bf16 peak measured" if share is None else
                 "work (near the GEMM peak)" if share >= 0.5 else "overhead (far below the peak)")
        out.append(f"| {n} | {r['gflop']:.4f} | {r['gflop_effective']:.4f} | {r['gflops_achieved']:.1f} | "
                   f"{'n/a' if share is None else f'{share:.0%}'} | {bound} |")
    return out + [""]


def memory(mem_by_variant: dict) -> list[str]:
    """Peak and component memory of each variant's own process."""
    def kib(mem, key):
        return f"{mem[key] / 1024:.0f}" if key in mem else "n/a"

    out = ["## Memory", "",
           "| variant | peak RSS MiB | runtime alone MiB | interpreter load KiB | allocate (arena) KiB | "
           "activation tensors KiB |", "|---|---|---|---|---|---|"]
    for n, mem in mem_by_variant.items():
        out.append(f"| {n} | {mem['peak_rss_bytes'] / 2**20:.0f} | {mem['runtime_rss_bytes'] / 2**20:.0f} | "
                   f"{kib(mem, 'load_rss_bytes')} | {kib(mem, 'allocate_rss_bytes')} | "
                   f"{kib(mem, 'activation_bytes')} |")
    return out + [
        "",
        "Runtime alone: the process after importing its runtime, before loading the model. Interpreter load and "
        "allocate: resident memory growth while creating the LiteRT interpreter and in `allocate_tensors()`, "
        "where the tensor arena is allocated (with XNNPACK's packed weights; LiteRT's Python API does not "
        "report the arena itself). Activation tensors: the sum of all non-constant tensors, an upper bound "
        "of the arena, which reuses memory between tensors whose lifetimes do not overlap.", "",
    ]


def pruning(shrink: dict, channels: dict, prune: dict, sparsity: dict, figures: str) -> list[str]:
    """Channel pruning (shrink) and magnitude pruning (prune)."""
    left: dict[str, list[str]] = {}
    for r in sparsity.get("not_pruned", []):
        left.setdefault(r["reason"], []).append(f"`{r['layer']}`")
    listed = "; ".join(f"{len(names)} ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''}): {why}"
                       for why, names in left.items())
    return ["## Pruning", ""] + channel_markdown(shrink, channels) + [
        f"Magnitude pruning (TF-MOT, pattern `{prune.get('pattern', 'unstructured')}`, policy "
        f"`{prune.get('policy', 'none')}`, from the {prune.get('start_from', 'trained')} model): target sparsity "
        f"{prune.get('target_sparsity')}, achieved overall {prune.get('sparsity', 0):.4f}, lowest pruned kernel "
        f"{prune.get('min_kernel_sparsity', 0):.4f}." + (f" Layers with weights left dense: {listed}." if left else ""),
        "", f"![Sparsity]({figures}/sparsity.png)", "",
    ]


def control(metrics: dict) -> list[str]:
    """The scratch control: the shrunk architecture trained from random weights against the shrunk
    model, paired on the same test images (Liu et al., "Rethinking the Value of Network Pruning")."""
    rows = metrics.get("scratch_control") or {}
    if not rows:
        return []
    out = ["## Did pruning earn its keep? (the scratch control)", "",
           "`scratch_*`: the shrunk architecture with fresh random weights, trained with train's recipe for as many "
           "epochs as the shrunk model had in all (`reports/scratch/`). Difference: scratch minus shrunk accuracy, "
           "in points, paired on the same test images.", "",
           "| scratch variant | against | difference [95% CI] | McNemar p | at 5 % |", "|---|---|---|---:|---|"]
    out += [f"| {n} | {c['against']} | {100 * c['difference']:+.2f} [{100 * c['difference_ci_low']:+.2f}, "
            f"{100 * c['difference_ci_high']:+.2f}] | {c['mcnemar_p']:.3g} | {c['verdict']} |" for n, c in rows.items()]
    verdicts = {c["verdict"] for c in rows.values()}
    said = ("training the small network from scratch did **better**: pruning did not earn its keep here"
            if verdicts == {"significantly better"} else
            "pruning + fine-tuning beat training the small network from scratch" if verdicts == {"significantly worse"}
            else "no consistent significant difference between pruning and training the small network from scratch")
    return out + ["", f"Verdict: {said}.", ""]


def fusion(convert: dict) -> list[str]:
    """Per source: layers -> ops, the BatchNorm fold, Grappler; the first source's fusion table."""
    out = ["## Fusion (Keras layers -> TFLite ops)", ""]
    sources = {k: v for k, v in convert.items() if k != "skipped"}
    tables = []
    for model, entry in sources.items():
        f = next(e for e in entry["tflite"].values() if e["precision"] == "float" and not e["sparse"])
        tables.append(f["fusion"])
        diffs = ", ".join(f"`{e['variant']}` {e['max_abs_diff']:.1e}" for e in entry["tflite"].values())
        fold, graph = entry["keras_fold"], entry["saved_model_graph"]
        out += [
            f"`{model}`: {entry['keras_layers']} Keras layers -> {f['ops']} TFLite ops "
            f"({', '.join(f'{k} x{c}' for k, c in f['op_types'].items())}); max |TFLite - Keras| {diffs}.",
            f"Keras-level BatchNorm folding: {fold['layers_before']} -> {fold['layers_after']} layers, "
            f"max |folded - unfused| {fold['max_abs_diff']:.1e} in float64 (float32: "
            f"{fold['max_abs_diff_float32']:.1e}, logits up to {fold['max_abs_logit']:.1f}).",
            f"SavedModel (folded) graph through Grappler: {graph['nodes_before']} -> {graph['nodes_after']} compute "
            f"nodes ({', '.join(f'{k} x{c}' for k, c in graph['ops_after'].items())}).", "",
        ]
    out += ["| TFLite op | Keras layers |", "|---|---|"]
    out += [f"| {r['op']} | {' + '.join(r['keras_layers'])} |" for r in tables[0]["ops"]]
    return out + [f"| (none) | {u['layer']} ({u['reason']}) |" for u in tables[0]["unmapped"]]


def int8_control(convert: dict) -> list[str]:
    """What accuracy-controlled int8 (``convert.max_drop``) measured and kept in float, per variant."""
    rows = [(name, r) for entry in convert.values() if isinstance(entry, dict) and "tflite" in entry
            for name, v in entry["tflite"].items() if (r := v.get("accuracy_control"))]
    if not rows:
        return []
    out = ["", "## int8 accuracy control", "",
           f"Full int8 against float32 TFLite on validation images (`convert.max_drop` = {rows[0][1]['max_drop']:g} "
           "points); beyond it, the ops that cost the most (each measured kept in float alone) stay float.", "",
           "| variant | float accuracy | int8 accuracy | drop (points) | ops kept in float | drop after | within "
           "| p50 ms full int8 → with float ops |", "|---|---|---|---|---|---|---|---|"]
    for name, r in rows:
        kept = ", ".join(f"`{op}`" for op in r["float_ops"]) or ("none helped" if r["candidates"] else "none needed")
        if (q := r.get("qat")) and q["taken"]:
            kept = f"none: quantization-aware training ({q['epochs']} epochs) instead"
        ms = r.get("latency_ms")
        cost = f"{ms['full_int8']:.4f} → {ms.get('with_float_ops', ms.get('qat_int8')):.4f}" if ms else "—"
        out.append(f"| `{name}` | {r['float_accuracy']:.4f} | {r['int8_accuracy']:.4f} | {r['drop_before']:+.2f} | "
                   f"{kept} | {r['drop_after']:+.2f} | {'yes' if r['within'] else '**no**'} | {cost} |")
    return out


def xnnpack_markdown(metrics: dict, convert: dict, bench: dict) -> list[str]:
    """Did XNNPACK's sparse inference speed up the sparse-format model? (``convert.sparse_format``)

    Compares ``pruned_tflite_float_sparse`` with ``pruned_tflite_float`` (the same weights stored
    dense), says whether the delegate took the sparse weights (read from the delegated
    interpreter by :func:`train2infer.litert.delegation`), and, when it did but nothing
    got faster, gives XNNPACK's own rule: on x86 its sparse (NCHW) path is used only on CPUs
    without AVX, where its SSE sparse kernels beat the dense ones.
    """
    v = metrics["variants"]
    if "pruned_tflite_float_sparse" not in v or "pruned_tflite_float" not in v:
        return []
    sparse, dense = v["pruned_tflite_float_sparse"], v["pruned_tflite_float"]
    info = convert["pruned"]["tflite"]["pruned_tflite_float_sparse"]["xnnpack"]
    ratio = dense["latency_p50_ms"] / sparse["latency_p50_ms"]
    flags = bench.get("machine", {}).get("cpu_flags", [])
    lines = ["", "## XNNPACK sparse inference", "",
             f"`pruned_tflite_float_sparse` (weights in TFLite's sparse format, {sparse['sparsity']:.0%} zeros "
             "over all kernels) "
             f"p50 {sparse['latency_p50_ms']:.3f} ms vs `pruned_tflite_float` (the same weights stored dense) "
             f"{dense['latency_p50_ms']:.3f} ms: **{ratio:.2f}x**.", ""]
    taken = info.get("sparse_weights_taken")
    left = info.get("not_delegated") or {}
    lines.append(f"Read from the delegate: {info.get('delegate_nodes', '?')} XNNPACK node(s); ops left to TFLite: "
                 f"{', '.join(f'{k} x{c}' for k, c in left.items()) or 'none'}; sparse weights (`DENSIFY` inputs) "
                 + ("entered the XNNPACK node, so it was asked for sparse inference." if taken
                    else "were not taken by XNNPACK."))
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


def channel_markdown(shrink: dict, channels: dict) -> list[str]:
    """The report's channel-pruning paragraph and per-layer width table."""
    c = shrink
    if not c or c.get("skipped"):
        return [f"Channel pruning: skipped, {c.get('skipped', 'shrink.criterion=none')}; `shrunk_*` variants are "
                "not exported.", ""]
    rows = [
        f"Channel pruning (`{c['criterion']}`, keep {c.get('keep')}): {c['dead_channels']} dead channels found; "
        f"multiply-adds per image {c['macs_before']:,} -> {c['macs_after']:,} (**{c['flops_ratio']:.2f}x fewer**), "
        f"parameters {c['params_before']:,} -> {c['params_after']:,}; validation accuracy "
        f"{c['val_accuracy_trained']:.4f} -> {c['val_accuracy_cut']:.4f} right after the cut -> "
        f"{c['val_accuracy_fine_tuned']:.4f} after fine-tuning (`models/shrunk.keras`, variants `shrunk_*`).",
        "",
    ]
    groups = channels.get("groups") or []
    if groups:
        pinned = [g for g in groups if g["pinned"]]
        rows += [f"{len(groups)} channel groups (channels coupled through adds, concatenations, squeeze-excite "
                 f"must go together; `reports/shrink/channels.json` lists their layers), {len(pinned)} pinned:", "",
                 "| group | width | kept | dead | created by | pinned because |", "|---|---:|---:|---:|---|---|"]
        rows += [f"| {g['name']} | {g['width']} | {g['kept']} | {g['dead']} | {', '.join(g['sources']) or '-'} | "
                 f"{g['pinned'] or ''} |" for g in groups]
        rows.append("")
    return rows


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




def where_the_time_goes(latency: dict, figures: str) -> list[str]:
    """The latency tables' per-layer breakdown, their prediction beside the measured totals, and
    the latency budget when shrink had one."""
    out = ["## Where the time goes", ""]
    if not latency.get("timed"):
        return out + [f"Not measured: {latency.get('why', 'no latency tables')}. `dvc exp run -S "
                      "shrink.time_layers=true` (or `shrink.target=latency`) measures them.", ""]
    m, fixed = latency["models"], latency["fixed_ms"]
    out += [f"Per-layer latency tables (LiteRT, {latency['precision']}, batch 1, 1 thread; "
            f"{latency['grid_points']} widths per axis, bilinear between; {latency['table_entries']['measured']} "
            f"one-layer models timed, {latency['table_entries']['cached']} from the cache) predict each model as "
            f"the sum S of its kernel layers scaled ×{latency.get('calibration', 1.0):.3f}, plus "
            f"{latency.get('quadratic', 0.0):.3f} × S² (fitted so that the dense model is predicted exactly and its "
            f"uniform cuts at keep {' and '.join(map(str, latency.get('calibration_keeps', [])))} as closely as "
            "they can be: element-wise ops, copies and cache spills follow the widths, not always in proportion), "
            f"plus the per-call overhead {fixed:.4f} ms. "
            "Dense and shrunk were then timed whole in one interleaved run, the tables scaled by how the dense "
            f"model's time moved since they were measured (×{latency['drift_scale']:.3f}; dense is the reference, "
            "its error 0 by construction):", "",
            "| model | predicted ms | measured p50 ms | error |", "|---|---:|---:|---:|"]
    out += [f"| {n} | {v['predicted_ms']:.4f} | {v['measured_ms']:.4f} | {100 * v['error']:+.1f} % |"
            for n, v in m.items()]
    t = latency.get("target")
    if t:
        unit, why = t["unit"], UNREACHED[t["steps"][-1].get("stopped", "floors")]
        out += ["", f"Budget (`shrink.target={t['kind']}`): {t['budget']:,.4g} {unit} of the dense model's "
                f"{t['dense']:,.4g} {unit}; measured, the shrunk model takes {t['measured_fraction']:.3f} of the "
                f"dense model's time" + ("." if all(s["reached"] for s in t["steps"]) else
                                          f" (the budget was not reachable: {why}).")]
    top = sorted(latency["layers"], key=lambda r: -r["dense_ms"])[:5]
    out += ["", "The most expensive layers of the dense model (predicted): " + ", ".join(
        f"`{r['layer']}` {r['dense_ms']:.4f} ms ({r['dense_widths'][0]}→{r['dense_widths'][1]}; shrunk "
        f"{r['shrunk_widths'][0]}→{r['shrunk_widths'][1]}: {r['shrunk_ms']:.4f} ms)" for r in top) + ".", "",
        f"![Where the time goes]({figures}/layer_times.png)", ""]
    return out
