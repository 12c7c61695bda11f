"""The shrink stage's work: plan the channels, cut them out, fine-tune, report."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from train2infer.core.publish import write_json
from train2infer.prepared import load_meta, load_prepared, to_float

if TYPE_CHECKING:  # TensorFlow loads inside run(), not when the stage script imports this module
    from train2infer.shrink.channels import Plan


def run(cfg, train_cfg, seed: int, data: str | Path, model_in: str | Path, model_out: Path, reports: Path) -> dict:
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
        reports: Folder to write: DVCLive fine-tuning metrics (``metrics.json`` with the
            summary below, ``plots/metrics/``) and ``channels.json`` (every channel group: width,
            kept, dead, its layers, why pinned; every pinned layer with its reason).

    Returns:
        The summary: criterion, keep, MACs and parameters before and after, validation
        accuracy trained / right after the cut / fine-tuned, dead channels; and ``chief``.
    """
    from dvclive import Live

    from train2infer import distribute, fit
    from train2infer.models import io
    from train2infer.shrink import channels

    strategy = fit.setup(train_cfg, seed)  # first TF call (multi-worker needs it)
    chief = distribute.is_chief(strategy)
    trained = io.load_model(model_in)  # fail fast, before any work, on a bad file
    train_xy, val_xy = load_prepared(data, "train"), load_prepared(data, "val")
    probe = to_float(train_xy[0][: cfg.probe_images])
    with Live(dir=str(reports), dvcyaml=None, save_dvc_exp=False) as live:
        chosen, skipped = None, "shrink.criterion=none" if cfg.criterion == "none" else None
        if not skipped:
            chosen = channels.plan(trained, probe, cfg.criterion, cfg.step_keep(), cfg.min_channels, cfg.exclude,
                                   cfg.round_to, cfg.ranking)
            if not chosen.removed:
                skipped = "no channel can be removed (every group is pinned, or kept whole)"
        if skipped:
            untuned(live, fit.accuracy(trained, *val_xy))
            return pass_on(live, cfg, skipped, chosen, model_in, model_out, reports) | {"chief": chief}
        ctx = {"strategy": strategy, "train": train_xy, "val": val_xy, "seed": seed, "live": live,
               "teacher": lambda: io.load_model(model_in),
               "recipe": fit.recipe(train_cfg, load_meta(data)["source"], warmup=False)}
        shrunk, acc_cut, rows = trained, None, []
        for step, epochs in enumerate(cfg.step_epochs()):
            if step:
                chosen = channels.plan(shrunk, probe, cfg.criterion, cfg.step_keep(), cfg.min_channels, cfg.exclude,
                                       cfg.round_to, cfg.ranking)
            shrunk, acc = cut_and_tune(shrunk, chosen, cfg, epochs, sum(cfg.step_epochs()[:step]), ctx)
            acc_cut = acc if acc_cut is None else acc_cut
            rows = rows or chosen.groups
        io.save_for_inference(shrunk, model_out)
        live.summary.update(compare(trained, shrunk, val_xy, acc_cut, rows)
                            | {"criterion": cfg.criterion, "keep": cfg.keep, "ranking": cfg.ranking,
                               "round_to": cfg.round_to, "steps": cfg.steps, "epochs": cfg.epochs,
                               "distill_weight": cfg.distill_weight})
        write_json(Path(reports) / "channels.json", describe_groups(chosen))
        return {**live.summary, "chief": chief}


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
    return (f"shrink: {s['criterion']} keep {s['keep']}{steps}: MACs {s['macs_before']:,} -> {s['macs_after']:,} "
            f"({s['flops_ratio']:.2f}x fewer), val accuracy {s['val_accuracy_trained']:.4f} -> "
            f"{s['val_accuracy_cut']:.4f} (cut) -> {tuned}")
