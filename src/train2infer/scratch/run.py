"""The scratch stage's work: the shrunk architecture, fresh weights, the train recipe, report."""

from __future__ import annotations

from pathlib import Path

from train2infer.core.publish import read_json
from train2infer.prepared import load_meta, load_prepared


def total_epochs(cfg, trained_metrics: str | Path, shrink_epochs: int) -> int:
    """``cfg.epochs``, or the shrunk model's epochs in all: train's epochs run (DVCLive's
    ``epochs_run`` in ``trained_metrics``) plus its fine-tuning (``shrink_epochs``)."""
    if cfg.epochs is not None:
        return cfg.epochs
    run = read_json(trained_metrics, "train metrics").get("epochs_run", 0)
    return max(1, int(run) + int(shrink_epochs))


def run(cfg, train_cfg, shrink_epochs: int, seed: int, data: str | Path, shrunk: str | Path,
        trained_metrics: str | Path, model_out: Path, reports: Path) -> dict:
    """Train ``shrunk``'s architecture from random weights with the ``train`` recipe.

    Args:
        cfg: The ``scratch`` section.
        train_cfg: The ``train`` section: recipe, batch size, rate, device strategy, determinism.
        shrink_epochs: ``shrink.epochs`` (counted into the default length).
        seed: Global seed.
        data: Prepared-data folder.
        shrunk: The shrunk ``.keras`` model whose architecture (not weights) is trained.
        trained_metrics: train's DVCLive ``metrics.json`` (``epochs_run``).
        model_out: ``.keras`` file to write.
        reports: Folder to write: DVCLive per-epoch metrics (``metrics.json``, ``plots/metrics/``).

    Returns:
        The summary (epochs, MACs, validation accuracy) and ``chief``.
    """
    import tf_keras as keras
    from dvclive import Live

    from train2infer import distribute, fit
    from train2infer.models import io, work

    strategy = fit.setup(train_cfg, seed)  # first TF call (multi-worker needs it)
    io.load_model(shrunk)  # fail fast on a bad file
    epochs = total_epochs(cfg, trained_metrics, shrink_epochs)
    train_xy, val_xy = load_prepared(data, "train"), load_prepared(data, "val")
    rec = fit.recipe(train_cfg, load_meta(data)["source"])
    with Live(dir=str(reports), dvcyaml=None, save_dvc_exp=False) as live:
        model, info = fit.fit_classifier(
            lambda: keras.models.clone_model(io.load_model(shrunk)),  # same layers, fresh initialisers
            strategy, train_xy, val_xy, epochs=epochs, batch_size=train_cfg.batch_size,
            learning_rate=train_cfg.learning_rate, scale_learning_rate=train_cfg.scale_learning_rate, seed=seed,
            callbacks=[fit.LiveLogger(live)], rec=rec)
        live.summary.update(epochs=epochs, macs=work.summary(model)["macs"],
                            val_accuracy_inference=fit.accuracy(model, *val_xy))
        summary = dict(live.summary)
    io.save_for_inference(model, model_out)
    return {**summary, "chief": distribute.is_chief(strategy)}


def describe(summary: dict) -> str:
    """The stage's closing line."""
    return (f"scratch: the shrunk architecture ({summary['macs']:,} MACs) trained from random weights for "
            f"{summary['epochs']} epochs, val accuracy {summary['val_accuracy_inference']:.4f}")
