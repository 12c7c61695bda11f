"""The convert stage's work: per source model, fold and check, export, convert, check, list."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from train2infer import CheckFailed
from train2infer.core.publish import write_json
from train2infer.core.variants import Variant, write_manifest
from train2infer.prepared import load_prepared, to_float


def run(cfg, seed: int, data: str | Path, sources: dict[str, str | Path], out: Path, summary_path: Path) -> dict:
    """Export every source model as every variant ``cfg`` (the ``convert`` section) asks for.

    Args:
        cfg: The ``convert`` section.
        seed: Global seed (PQAT fine-tuning).
        data: Prepared-data folder (test images for the output checks, training images to
            calibrate full integer int8 and for PQAT).
        sources: Source name (``trained``, ``shrunk``, ``pruned``) -> ``.keras`` file. A
            shrunk model identical to the trained one is not exported twice.
        out: Folder to write: ``{variant}.tflite``, ``{source}_saved_model/`` (of the
            BatchNorm-folded model) and ``manifest.json``.
        summary_path: JSON to write, per source: Keras layers, the BatchNorm fold, the
            SavedModel graph before/after Grappler, and per TFLite variant its ops, fusion
            table, XNNPACK delegation and max |TFLite - Keras| logits.

    Returns:
        The summary.

    Raises:
        CheckFailed: If a float32 TFLite model differs from its Keras model by more than
            ``float_atol``, or the folded model from the unfolded one by more than
            ``fold_atol`` (in float64, where the algebra must be exact).
    """
    from train2infer.core.progress import Phase
    from train2infer.models import io, work

    x_test, y_test = load_prepared(data, "test")
    ctx = {"cfg": cfg, "seed": seed, "data": data, "x_check": to_float(x_test[: cfg.check_images]),
           "test": (to_float(x_test), y_test), "representative": None, "val": None}
    if cfg.max_drop is not None and "int8" in cfg.quantization:
        x_val, y_val = load_prepared(data, "val")
        ctx["val"] = (to_float(x_val[: cfg.control_images]), y_val[: cfg.control_images])
    if {"int8", "pqat"} & set(cfg.quantization):
        ctx["representative"] = to_float(load_prepared(data, "train")[0][: cfg.representative_images])
    models = {name: io.load_model(path) for name, path in sources.items()}
    summary: dict = {"skipped": {}}
    if "shrunk" in models and io.same_weights(models["shrunk"], models["trained"]):
        summary["skipped"]["shrunk"] = "identical to trained (the shrink stage passed it on unchanged)"
        del models["shrunk"]
    out.mkdir(parents=True, exist_ok=True)
    variants, phase = [], Phase("convert", f"{len(models)} models to SavedModel and TFLite", unit="model")
    for k, (name, model) in enumerate(models.items()):
        phase.update(k, len(models))
        summary[name], exported = export_source(name, model, out, ctx)
        variants += exported
    phase.end(f"{len(variants)} variants")
    write_manifest(out, variants, {name: work.summary(m) for name, m in models.items()})
    write_json(summary_path, summary)
    return summary


def plan(source: str, cfg) -> list[Variant]:
    """The TFLite variants of one source: float32, each listed quantization, and with
    ``sparse_format`` the pruned model's float weights in TFLite's sparse format."""
    found = [Variant(source, "tflite", p) for p in ["float", *cfg.quantization]]
    if cfg.sparse_format and source == "pruned":
        found.append(Variant(source, "tflite", "float", sparse=True))
    return [Variant(v.source, v.format, v.precision, v.sparse, f"{v.name}.tflite") for v in found]


def export_source(name: str, model, out: Path, ctx: dict) -> tuple[dict, list[Variant]]:
    """Fold-check, SavedModel-export and TFLite-convert one source model."""
    from train2infer.convert import saved_model
    from train2infer.models import graph

    cfg, x_check = ctx["cfg"], ctx["x_check"]
    reference = outputs(model, x_check)
    folded = graph.fold_batchnorm(model)
    fold = fold_check(name, model, folded, x_check, reference, cfg.fold_atol)
    sm = Variant(name, "saved_model", path=f"{name}_saved_model")
    saved_model.export_saved_model(folded, out / sm.path)  # BN folded: Grappler fuses more
    entry = {"keras_layers": fold["layers_before"], "keras_fold": fold,
             "saved_model_graph": saved_model.graph_optimization(out / sm.path), "tflite": {}}
    exported, float_content = plan(name, cfg), None
    for v in exported:
        content, extra = convert_one(v, model, ctx, float_content)
        if v.precision == "float" and not v.sparse:
            float_content = content  # the int8 control compares against it: converted once
        (out / v.path).write_bytes(content)
        entry["tflite"][v.name] = {**check_tflite(v, content, model, x_check, reference, cfg.float_atol), **extra}
    return entry, exported + [sm]


def outputs(model, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """The model's outputs in inference mode, called eagerly batch by batch (``predict`` would
    trace a new function per model, and TensorFlow warns about retracing after five)."""
    return np.concatenate([np.asarray(model(x[i:i + batch], training=False)) for i in range(0, len(x), batch)])


def fold_check(name: str, model, folded, x, reference, atol: float) -> dict:
    """Max |folded - unfolded| logits, judged in float64 (exact algebra) against ``atol``;
    the float32 difference (rounding that grows with the logits) is reported beside it."""
    from train2infer.convert import tflite
    from train2infer.models import graph

    diff32 = float(np.max(np.abs(outputs(folded, x) - reference)))
    x64, model64 = x.astype(np.float64), graph.to_float64(model)
    diff = float(np.max(np.abs(outputs(graph.fold_batchnorm(model64), x64) - outputs(model64, x64))))
    if diff > atol:
        raise CheckFailed(f"the BatchNorm-folded Keras model of {name} differs from the unfolded one by {diff:.2e} "
                          f"(float64), more than convert.fold_atol={atol}: folding is wrong for a layer of this model")
    return {"layers_before": len(tflite.keras_layers(model)), "layers_after": len(tflite.keras_layers(folded)),
            "max_abs_diff": diff, "max_abs_diff_float32": diff32, "max_abs_logit": float(np.max(np.abs(reference)))}


def convert_one(v: Variant, model, ctx: dict, float_content: bytes | None = None) -> tuple[bytes, dict]:
    """The ``.tflite`` bytes of one variant (PQAT fine-tunes a copy first), and extras;
    ``float_content``: the model's float32 ``.tflite`` if already converted."""
    from train2infer import litert
    from train2infer.convert import tflite

    cfg = ctx["cfg"]
    if v.precision == "int8" and cfg.max_drop is not None:
        return controlled_int8(model, ctx, float_content, v.source)
    if v.precision != "pqat":
        return tflite.to_tflite(model, v.precision, ctx["representative"], int8_io=cfg.int8_io, sparse=v.sparse), {}
    qmodel, history = pqat(model, ctx, preserve_sparsity=(v.source == "pruned"))
    content = tflite.to_tflite(qmodel, "pqat", int8_io=cfg.int8_io)
    x, y = ctx["test"]
    accuracy = float(np.mean(np.argmax(litert.predict(content, x), -1) == y))
    return content, {"pqat_history": history, "pqat_test_accuracy": accuracy}


def controlled_int8(model, ctx: dict, float_content: bytes | None = None, source: str = "") -> tuple[bytes, dict]:
    """Full int8, with the ops that cost the most validation accuracy kept in float until the drop
    against float32 TFLite (``float_content``, converted here if None) is within ``convert.max_drop``
    points (:mod:`train2infer.convert.control`); still outside, and ``convert.qat_fallback``:
    the int8 model of a quantization-aware fine-tune when its drop is smaller."""
    from train2infer.convert import control, tflite

    cfg, rep = ctx["cfg"], ctx["representative"]
    full = tflite.to_tflite(model, "int8", rep, int8_io=cfg.int8_io)
    float_content = float_content if float_content is not None else tflite.to_tflite(model, "float")
    float_correct = control.correct(float_content, *ctx["val"])
    content, report = control.within_floor(model, full, float_correct, ctx["val"], rep, cfg.max_drop,
                                           cfg.max_float_layers, cfg.int8_io)
    if not report["within"] and cfg.qat_fallback:
        content, report["qat"] = qat_fallback(model, ctx, full, content, report, source == "pruned")
    return content, {"accuracy_control": report}


def qat_fallback(model, ctx: dict, full: bytes, content: bytes, report: dict,
                 preserve_sparsity: bool) -> tuple[bytes, dict]:
    """Quantization-aware fine-tuning of a copy of ``model`` (:func:`pqat`), converted to int8 and
    measured on the validation images like the float fallback: its bytes if its drop is smaller
    than ``report``'s ``drop_after`` (then timed beside ``full``, the full int8 model), else
    ``content``; and what it measured."""
    from train2infer.convert import control, tflite

    cfg = ctx["cfg"]
    qmodel, history = pqat(model, ctx, preserve_sparsity)
    trial = tflite.to_tflite(qmodel, "pqat", int8_io=cfg.int8_io)
    drop = control.drop_points(trial, report["float_accuracy"], ctx["val"])
    taken = drop < report["drop_after"]
    if taken:
        report["drop_after"], report["within"], report["float_ops"] = drop, drop <= cfg.max_drop, []
        report["latency_ms"] = control.latency_cost(full, trial, ctx["val"][0][:1], name="qat_int8")
    return (trial if taken else content), {"epochs": cfg.pqat_epochs, "drop": drop, "taken": taken,
                                           "history": history}


def check_tflite(v: Variant, content: bytes, model, x, reference, float_atol: float) -> dict:
    """Ops, fusion table, XNNPACK delegation and max |TFLite - Keras| of one converted variant.

    Raises:
        CheckFailed: If a float32 variant is off by more than ``float_atol``.
    """
    from train2infer import litert
    from train2infer.convert import tflite

    ops = litert.ops(content)
    diff = float(np.max(np.abs(litert.predict(content, x) - reference)))
    if v.precision == "float" and diff > float_atol:
        raise CheckFailed(f"{v.name} logits differ from the Keras model's by {diff:.2e}, more than "
                          f"convert.float_atol={float_atol}: the converter computes an op differently; "
                          "raise the tolerance only after looking at which")
    return {"variant": v.name, "precision": v.precision, "sparse": v.sparse, "ops": len(ops),
            "op_types": dict(Counter(op["op"] for op in ops)), "max_abs_diff": diff,
            "fusion": tflite.fusion_table(model, ops), "xnnpack": litert.delegation(content)}


def pqat(model, ctx: dict, preserve_sparsity: bool):
    """Quantization-aware fine-tuning (sparsity-preserving for pruned models) of a copy."""
    import tensorflow as tf

    from train2infer import fit
    from train2infer.convert import tflite
    from train2infer.models import io

    cfg = ctx["cfg"]
    qmodel, info = fit.fit_classifier(
        lambda: tflite.quantize_aware(io.clone(model), preserve_sparsity=preserve_sparsity),
        tf.distribute.get_strategy(), load_prepared(ctx["data"], "train"), load_prepared(ctx["data"], "val"),
        epochs=cfg.pqat_epochs, batch_size=cfg.batch_size, learning_rate=cfg.pqat_learning_rate,
        scale_learning_rate=False, seed=ctx["seed"], verbose=0)
    return qmodel, info["history"]


def describe(summary: dict) -> list[str]:
    """The stage's closing lines, one per source."""
    lines = []
    for name, entry in summary.items():
        if name == "skipped":
            continue
        f = entry["tflite"][Variant(name, "tflite").name]
        diffs = ", ".join(f"{v['variant']} {v['max_abs_diff']:.1e}" for v in entry["tflite"].values())
        fold, graph = entry["keras_fold"], entry["saved_model_graph"]
        lines.append(f"convert: {name}: {entry['keras_layers']} Keras layers -> {f['ops']} TFLite ops (Keras fold "
                     f"{fold['layers_before']} -> {fold['layers_after']} layers, |diff| {fold['max_abs_diff']:.1e}; "
                     f"SavedModel graph {graph['nodes_before']} -> {graph['nodes_after']} nodes), max |diff| {diffs}")
        for v in entry["tflite"].values():
            if "accuracy_control" in v:
                lines.append(control_line(v["variant"], v["accuracy_control"]))
    lines += [f"convert: {name}: not exported, {why}" for name, why in summary["skipped"].items()]
    return lines


def control_line(variant: str, r: dict) -> str:
    """One line on what accuracy control did to an int8 variant."""
    d = r["drop_before"]
    head = (f"convert: {variant}: int8 {'loses' if d >= 0 else 'gains'} {abs(d):.2f} points against float on the "
            f"validation images (convert.max_drop={r['max_drop']:g})")
    if not r["candidates"]:
        return head + f" (McNemar p={r['mcnemar_p']:.2g}): kept full int8"
    verdict = "within the floor" if r["within"] else "STILL OUTSIDE the floor"
    q = r.get("qat")
    if q and q["taken"]:
        return (f"{head}: no op set within max_float_layers was enough; quantization-aware training ({q['epochs']} "
                f"epochs) took over, then loses {r['drop_after']:.2f}, {verdict}")
    kept = f"{len(r['float_ops'])} op{'s' if len(r['float_ops']) != 1 else ''} kept in float"
    back = f", {len(r['given_back'])} more tried and given back to int8" if r.get("given_back") else ""
    if q:
        back += f"; quantization-aware training ({q['epochs']} epochs) lost {q['drop']:.2f}, not taken"
    return (f"{head}: {kept} ({', '.join(r['float_ops']) or 'none helped'}){back}, then loses {r['drop_after']:.2f}, "
            f"{verdict}")
