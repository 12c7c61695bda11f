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
            itself with ``criterion: none`` or on a graph channel pruning cannot handle yet;
            the summary's ``skipped`` says why).
        reports: Folder to write: DVCLive fine-tuning metrics (``metrics.json`` with the
            summary below, ``plots/metrics/``) and ``channels.json`` (width, kept and dead
            channels per layer).

    Returns:
        The summary: criterion, keep, MACs and parameters before and after, validation
        accuracy trained / right after the cut / fine-tuned, dead channels; and ``chief``.
    """
    from dvclive import Live

    from train2infer import distribute, fit
    from train2infer.models import graph, io
    from train2infer.shrink import channels

    strategy = fit.setup(train_cfg, seed)  # first TF call (multi-worker needs it)
    chief = distribute.is_chief(strategy)
    trained = io.load_model(model_in)  # fail fast, before any work, on a bad file
    train_xy, val_xy = load_prepared(data, "train"), load_prepared(data, "val")
    with Live(dir=str(reports), dvcyaml=None, save_dvc_exp=False) as live:
        skipped = "shrink.criterion=none" if cfg.criterion == "none" else None
        if not skipped:
            try:
                chosen = channels.plan(trained, to_float(train_xy[0][: cfg.probe_images]), cfg.criterion, cfg.keep,
                                       cfg.min_channels, cfg.exclude)
            except graph.GraphNotSupported as exc:
                skipped = f"channel pruning of this graph is not supported yet ({exc})"
        if skipped:
            shutil.copyfile(model_in, model_out)
            untuned(live, fit.accuracy(trained, *val_xy))
            live.summary.update({"criterion": cfg.criterion, "skipped": skipped})
            write_json(Path(reports) / "channels.json", {"layers": {}, "skipped": skipped})
            return {**live.summary, "chief": chief}
        keep = {name: entry["keep"] for name, entry in chosen.items()}
        shrunk = graph.slice_channels(trained, keep)
        acc_cut = fit.accuracy(shrunk, *val_xy)
        if cfg.epochs:
            shrunk, _ = fit.fit_classifier(
                lambda: graph.slice_channels(io.load_model(model_in), keep), strategy, train_xy, val_xy,
                epochs=cfg.epochs, batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
                scale_learning_rate=False, seed=seed, callbacks=[fit.LiveLogger(live)])
        else:
            untuned(live, acc_cut)
        io.save_for_inference(shrunk, model_out)
        layers = {n: {"width": e["width"], "kept": len(e["keep"]), "dead": e["dead"]} for n, e in chosen.items()}
        live.summary.update(compare(trained, shrunk, val_xy, acc_cut, layers) | {"criterion": cfg.criterion,
                                                                                 "keep": cfg.keep})
        write_json(Path(reports) / "channels.json", {"layers": layers})
        return {**live.summary, "chief": chief}


def compare(trained, shrunk, val_xy, acc_cut: float, layers: dict) -> dict:
    """Work, size and validation accuracy before and after channel pruning."""
    from train2infer import fit
    from train2infer.models import work

    before, after = work.summary(trained), work.summary(shrunk)
    return {"macs_before": before["macs"], "macs_after": after["macs"], "params_before": before["params"],
            "params_after": after["params"], "flops_ratio": before["macs"] / after["macs"],
            "val_accuracy_trained": fit.accuracy(trained, *val_xy), "val_accuracy_cut": acc_cut,
            "val_accuracy_fine_tuned": fit.accuracy(shrunk, *val_xy),
            "dead_channels": sum(e["dead"] for e in layers.values())}


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
