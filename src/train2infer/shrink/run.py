"""The shrink stage's work: plan the channels, cut them out, fine-tune, report."""

from __future__ import annotations

import shutil
from pathlib import Path

from train2infer.core.publish import write_json
from train2infer.prepared import load_prepared, to_float


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
    from train2infer.models import groups, io
    from train2infer.shrink import channels

    strategy = fit.setup(train_cfg, seed)  # first TF call (multi-worker needs it)
    chief = distribute.is_chief(strategy)
    trained = io.load_model(model_in)  # fail fast, before any work, on a bad file
    train_xy, val_xy = load_prepared(data, "train"), load_prepared(data, "val")
    with Live(dir=str(reports), dvcyaml=None, save_dvc_exp=False) as live:
        chosen, skipped = None, "shrink.criterion=none" if cfg.criterion == "none" else None
        if not skipped:
            chosen = channels.plan(trained, to_float(train_xy[0][: cfg.probe_images]), cfg.criterion, cfg.keep,
                                   cfg.min_channels, cfg.exclude, cfg.round_to, cfg.ranking)
            if not chosen["removed"]:
                skipped = "no channel can be removed (every group is pinned, or kept whole)"
        if skipped:
            untuned(live, fit.accuracy(trained, *val_xy))
            return pass_on(live, cfg, skipped, chosen, model_in, model_out, reports) | {"chief": chief}
        deps, removed = chosen["deps"], chosen["removed"]
        shrunk = groups.slice_model(trained, deps, removed)
        acc_cut = fit.accuracy(shrunk, *val_xy)
        if cfg.epochs:
            shrunk, _ = fit.fit_classifier(
                lambda: groups.slice_model(io.load_model(model_in), deps, removed), strategy, train_xy, val_xy,
                epochs=cfg.epochs, batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
                scale_learning_rate=False, seed=seed, callbacks=[fit.LiveLogger(live)])
        else:
            untuned(live, acc_cut)
        io.save_for_inference(shrunk, model_out)
        live.summary.update(compare(trained, shrunk, val_xy, acc_cut, chosen["groups"])
                            | {"criterion": cfg.criterion, "keep": cfg.keep, "ranking": cfg.ranking,
                               "round_to": cfg.round_to})
        write_json(Path(reports) / "channels.json", describe_groups(chosen))
        return {**live.summary, "chief": chief}


def pass_on(live, cfg, skipped: str, chosen: dict | None, model_in, model_out: Path, reports: Path) -> dict:
    """Nothing to cut: the trained model goes on as it is, and the reports say why."""
    shutil.copyfile(model_in, model_out)
    live.summary.update({"criterion": cfg.criterion, "skipped": skipped})
    write_json(Path(reports) / "channels.json", describe_groups(chosen) | {"skipped": skipped})
    return dict(live.summary)


def describe_groups(chosen: dict | None) -> dict:
    """``channels.json``: every group (width, kept, dead, the layers it runs through, why pinned)
    and every pinned layer with its reason."""
    if chosen is None:
        return {"groups": [], "pinned": {}}
    return {"groups": chosen["groups"], "pinned": chosen["deps"].pinned}


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
            "groups_pruned": sum(r["kept"] < r["width"] for r in rows), "groups_pinned": sum(bool(r["pinned"]) for r in rows)}


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
    return (f"shrink: {s['criterion']} keep {s['keep']}: MACs {s['macs_before']:,} -> {s['macs_after']:,} "
            f"({s['flops_ratio']:.2f}x fewer), val accuracy {s['val_accuracy_trained']:.4f} -> "
            f"{s['val_accuracy_cut']:.4f} (cut) -> {s['val_accuracy_fine_tuned']:.4f} (fine-tuned)")
