"""The shrink stage's work: plan the channels, cut them out, fine-tune, report."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from train2infer.core.publish import write_json
from train2infer.prepared import load_meta, load_prepared, to_float

if TYPE_CHECKING:  # TensorFlow loads inside run(), not when the stage script imports this module
    from train2infer.shrink.channels import Plan


def run(cfg, train_cfg, seed: int, data: str | Path, model_in: str | Path, model_out: Path, reports: Path,
        latency_cache: Path | None = None) -> dict:
    """Channel-prune ``model_in`` as ``cfg`` (the ``shrink`` section) says.

    Args:
        cfg: The ``shrink`` section.
        train_cfg: The ``train`` section (device strategy and determinism of fine-tuning).
        seed: Global seed.
        data: Prepared-data folder (training images probe for dead channels and fine-tune).
        model_in: The trained ``.keras`` model.
        model_out: ``.keras`` file to write: the smaller dense model (the trained model
            itself with ``criterion: none`` or when no channel can go; the summary's
            ``skipped`` says why).
        reports: Folder to write: DVCLive fine-tuning metrics (``metrics.json``: the summary,
            ``plots/metrics/``), ``channels.json`` (every group: width, kept, dead, its layers,
            why pinned) and ``latency.json`` (:func:`.target.where_the_time_goes`, when timed).
        latency_cache: The latency tables' cache file (read, rewritten); None: none.

    Returns:
        The summary (how it cut, MACs, parameters, validation accuracy trained / cut / fine-tuned,
        dead channels, latency predicted and measured when timed) and ``chief``.
    """
    from dvclive import Live

    from train2infer import distribute, fit
    from train2infer.models import io
    from train2infer.shrink import target

    strategy = fit.setup(train_cfg, seed)  # first TF call (multi-worker needs it)
    chief = distribute.is_chief(strategy)
    trained = io.load_model(model_in)  # fail fast, before any work, on a bad file
    target.keep_cache(latency_cache)
    Path(reports).mkdir(parents=True, exist_ok=True)
    write_json(Path(reports) / "latency.json", {"timed": False, "why": "shrink.target is not latency and "
                                                "shrink.time_layers is false: no latency tables measured"})
    train_xy, val_xy = load_prepared(data, "train"), load_prepared(data, "val")
    probe = to_float(train_xy[0][: cfg.probe_images])
    with Live(dir=str(reports), dvcyaml=None, save_dvc_exp=False) as live:
        chosen, lat, aim = None, None, None
        skipped = "shrink.criterion=none" if cfg.criterion == "none" else None
        if not skipped:
            timed = cfg.target == "latency" or cfg.time_layers
            lat = target.tables(cfg, trained, latency_cache) if timed else None
            aim = target.goal(cfg, trained, lat)
            chosen, trace = target.plan_step(cfg, trained, probe, lat, aim, 0)
            if not chosen.removed:
                skipped = "no channel can be removed (every group is pinned, or kept whole)"
        if skipped:
            untuned(live, fit.accuracy(trained, *val_xy))
            return pass_on(live, cfg, skipped, chosen, model_in, model_out, reports) | {"chief": chief}
        ctx = {"strategy": strategy, "train": train_xy, "val": val_xy, "seed": seed, "live": live,
               "teacher": lambda: io.load_model(model_in), "probe": probe, "lat": lat, "aim": aim,
               "recipe": fit.recipe(train_cfg, load_meta(data)["source"], warmup=False)}
        shrunk, acc_cut, rows, traces = steps(trained, chosen, trace, cfg, ctx)
        io.save_for_inference(shrunk, model_out)
        live.summary.update(compare(trained, shrunk, val_xy, acc_cut, rows) | settings(cfg))
        if lat is not None:
            live.summary.update(time_both(cfg, trained, shrunk, lat, aim, traces, reports))
        write_json(Path(reports) / "channels.json", describe_groups(chosen))
        return {**live.summary, "chief": chief}


def steps(trained, chosen: Plan, trace, cfg, ctx: dict) -> tuple:
    """Every gradual step: cut (the first step's plan is ``chosen``), fine-tune. Returns the shrunk
    model, the validation accuracy right after the first cut, the first plan's rows and the
    chooser's traces."""
    from train2infer.shrink import target

    shrunk, acc_cut, rows, traces = trained, None, [], []
    for step, epochs in enumerate(cfg.step_epochs()):
        if step:
            chosen, trace = target.plan_step(cfg, shrunk, ctx["probe"], ctx["lat"], ctx["aim"], step)
        traces.append(trace)
        shrunk, acc = cut_and_tune(shrunk, chosen, cfg, epochs, sum(cfg.step_epochs()[:step]), ctx)
        acc_cut = acc if acc_cut is None else acc_cut
        rows = rows or chosen.groups
    return shrunk, acc_cut, rows, traces


def settings(cfg) -> dict:
    """The summary's record of how shrink was asked to cut."""
    return {"criterion": cfg.criterion, "keep": cfg.keep, "ranking": cfg.ranking, "round_to": cfg.round_to,
            "steps": cfg.steps, "epochs": cfg.epochs, "distill_weight": cfg.distill_weight, "target": cfg.target,
            "budget": cfg.budget_ms if cfg.budget_ms else cfg.budget}


def time_both(cfg, trained, shrunk, lat: dict, aim, traces: list, reports: Path) -> dict:
    """Write ``latency.json`` (:func:`.target.where_the_time_goes`); its figures for the summary."""
    from train2infer.shrink import target

    timed = target.where_the_time_goes(cfg, trained, shrunk, lat, aim, traces)
    write_json(Path(reports) / "latency.json", timed)
    d, s = timed["models"]["dense"], timed["models"]["shrunk"]
    return {"latency_dense_ms": d["measured_ms"], "latency_shrunk_ms": s["measured_ms"],
            "latency_predicted_shrunk_ms": s["predicted_ms"], "latency_error": s["error"],
            "latency_fraction": s["measured_ms"] / d["measured_ms"]}


def offset_logger(live, offset: int):
    """A :class:`train2infer.fit.LiveLogger` whose epochs count on from ``offset``: gradual shrinking
    logs every step's fine-tuning on one curve. (Defined here, lazily: fit loads TensorFlow.)"""
    from train2infer import fit

    class OffsetLogger(fit.LiveLogger):
        def on_epoch_begin(self, epoch, logs=None):
            super().on_epoch_begin(epoch + offset, logs)

        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch + offset, logs)

    return OffsetLogger(live)


def cut_and_tune(model, chosen: Plan, cfg, epochs: int, offset: int, ctx: dict):
    """One step: slice ``chosen``'s channels out of ``model``, then fine-tune it for ``epochs``
    (distilling from the trained model when ``cfg.distill_weight``). Returns the model and its
    validation accuracy right after the cut."""
    from train2infer import distill, fit
    from train2infer.models import groups

    deps, removed = chosen.deps, chosen.removed
    cut = groups.slice_model(model, deps, removed)
    acc_cut = fit.accuracy(cut, *ctx["val"])
    if not epochs:
        untuned(ctx["live"], acc_cut)
        return cut, acc_cut
    rec = ctx["recipe"]
    build = distill.wrap(lambda: groups.slice_model(model, deps, removed), ctx["teacher"], cfg.distill_weight,
                         cfg.temperature, rec.label_smoothing)
    tuned, _ = fit.fit_classifier(
        build, ctx["strategy"], ctx["train"], ctx["val"], epochs=epochs, batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate, scale_learning_rate=False, seed=ctx["seed"],
        callbacks=[offset_logger(ctx["live"], offset)], rec=rec)
    return distill.student_of(tuned), acc_cut


def pass_on(live, cfg, skipped: str, chosen: Plan | None, model_in, model_out: Path, reports: Path) -> dict:
    """Nothing to cut: the trained model goes on as it is, and the reports say why."""
    shutil.copyfile(model_in, model_out)
    live.summary.update({"criterion": cfg.criterion, "skipped": skipped})
    write_json(Path(reports) / "channels.json", describe_groups(chosen) | {"skipped": skipped})
    return dict(live.summary)


def describe_groups(chosen: Plan | None) -> dict:
    """``channels.json``: every group (width, kept, dead, the layers it runs through, why pinned)
    and every pinned layer with its reason."""
    if chosen is None:
        return {"groups": [], "pinned": {}}
    return {"groups": chosen.groups, "pinned": chosen.deps.pinned}


def compare(trained, shrunk, val_xy, acc_cut: float, rows: list[dict]) -> dict:
    """Work, size and validation accuracy before and after channel pruning."""
    from train2infer import fit
    from train2infer.models import work

    before, after = work.summary(trained), work.summary(shrunk)
    return {"macs_before": before["macs"], "macs_after": after["macs"], "params_before": before["params"],
            "params_after": after["params"], "flops_ratio": before["macs"] / after["macs"],
            "val_accuracy_trained": fit.accuracy(trained, *val_xy), "val_accuracy_cut": acc_cut,
            "val_accuracy_fine_tuned": fit.accuracy(shrunk, *val_xy),
            "dead_channels": sum(r["dead"] for r in rows), "groups": len(rows),
            "groups_pruned": sum(r["kept"] < r["width"] for r in rows),
            "groups_pinned": sum(bool(r["pinned"]) for r in rows)}


def untuned(live, val_accuracy: float) -> None:
    """With no fine-tuning, the curve (a declared output) is one point: the passed-on model's
    validation accuracy at step 0."""
    live.log_metric("val/accuracy", val_accuracy)
    live.make_summary()


def describe(summary: dict) -> str:
    """The stage's closing line."""
    if summary.get("skipped"):
        return f"shrink: skipped, {summary['skipped']}: the trained model is passed on unchanged"
    s = summary
    steps = f" in {s['steps']} steps" if s.get("steps", 1) > 1 else ""
    tuned = (f"{s['val_accuracy_fine_tuned']:.4f} (fine-tuned {s['epochs']} epochs"
             f"{', distilled' if s.get('distill_weight') else ''})" if s.get("epochs") else "no fine-tuning")
    how = f"keep {s['keep']}" if s.get("target", "keep") == "keep" else f"{s['target']} budget {s['budget']}"
    timed = (f"; latency {s['latency_dense_ms']:.3f} -> {s['latency_shrunk_ms']:.3f} ms measured "
             f"({s['latency_fraction']:.2f} of dense; predicted {s['latency_predicted_shrunk_ms']:.3f} ms, "
             f"{100 * s['latency_error']:+.1f} %)" if "latency_shrunk_ms" in s else "")
    return (f"shrink: {s['criterion']} {how}{steps}: MACs {s['macs_before']:,} -> {s['macs_after']:,} "
            f"({s['flops_ratio']:.2f}x fewer), val accuracy {s['val_accuracy_trained']:.4f} -> "
            f"{s['val_accuracy_cut']:.4f} (cut) -> {tuned}{timed}")
