"""The train stage's work: build, fit (resumably), measure throughput, save."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from train2infer.core.params import as_dict
from train2infer.core.publish import write_json
from train2infer.prepared import load_meta, load_prepared


def backup_dir(root: str | Path, key: str, chief: bool) -> Path:
    """This run's resumable state under ``root``; backups of runs with other settings go."""
    root = Path(root)
    if chief and root.is_dir():
        for stale in root.iterdir():
            if stale.name != key:
                shutil.rmtree(stale, ignore_errors=True)
    return root / (key if chief else f"{key}-worker")


def run(model_cfg, cfg, seed: int, data: str | Path, model_out: Path, reports: Path, backup: str | Path) -> dict:
    """Fit ``model_cfg``'s model with ``cfg`` (the ``train`` section) on ``data``.

    Args:
        model_cfg: The ``model`` section.
        cfg: The ``train`` section.
        seed: Global seed.
        data: Prepared-data folder.
        model_out: ``.keras`` file to write (float32, no optimizer state).
        reports: Folder to write: DVCLive per-epoch metrics (``metrics.json``,
            ``plots/metrics/``) and ``throughput.json``.
        backup: Folder for the resumable state (``BackupAndRestore`` checkpoint and the
            DVCLive logs), kept until the run succeeds.

    Returns:
        ``chief`` (only the chief's outputs are to be published), strategy, replicas,
        seconds, validation accuracy, ``resumed_from_epoch``, ``speed``.
    """
    from train2infer import distribute, fit
    from train2infer.models import builders, config as model_config
    from train2infer.models.io import save_for_inference

    meta = load_meta(data)
    train_xy, val_xy = load_prepared(data, "train"), load_prepared(data, "val")
    strategy = fit.setup(cfg, seed)
    mixed = distribute.use_mixed_precision(cfg.mixed_precision)
    chief = distribute.is_chief(strategy)

    def build():
        return builders.build_model(model_cfg.name, train_xy[0].shape[1:], len(meta["class_names"]), seed,
                                    **model_config.options(model_cfg))

    key = fit.run_key({"model": as_dict(model_cfg), "train": as_dict(cfg), "seed": seed, "data": meta,
                       "n": [len(train_xy[0]), len(val_xy[0])], "replicas": strategy.num_replicas_in_sync})
    workdir = backup_dir(backup, key, chief)
    model, info, extra = fit_logged(build, strategy, train_xy, val_xy, cfg, seed, workdir, mixed)
    shutil.copytree(workdir / "live", reports, dirs_exist_ok=True)
    desc = distribute.describe(strategy)
    write_json(Path(reports) / "throughput.json", {**desc, **extra["speed"], "jit_compile": cfg.jit_compile,
                                                   "global_batch_size": info["global_batch_size"],
                                                   "mixed_precision": mixed})
    save_for_inference(model, model_out)
    shutil.rmtree(workdir, ignore_errors=True)
    return {"chief": chief, "strategy": desc["strategy"], "replicas": desc["replicas"], "epochs": cfg.epochs, **extra}


def fit_logged(build, strategy, train_xy, val_xy, cfg, seed: int, workdir: Path, mixed: bool):
    """Fit with DVCLive logs and a ``BackupAndRestore`` checkpoint under ``workdir`` (resumable);
    returns the float32 model, the fit info, and seconds, accuracy, resume epoch and speed."""
    import tf_keras as keras
    from dvclive import Live

    from train2infer import fit

    with Live(dir=str(workdir / "live"), resume=True, dvcyaml=None, save_dvc_exp=False) as live:
        logger, timer = fit.LiveLogger(live), fit.EpochTimer()
        t0 = time.perf_counter()
        model, info = fit.fit_classifier(
            build, strategy, train_xy, val_xy, epochs=cfg.epochs, batch_size=cfg.batch_size,
            learning_rate=cfg.learning_rate, scale_learning_rate=cfg.scale_learning_rate, seed=seed,
            callbacks=[timer, logger, keras.callbacks.BackupAndRestore(str(workdir / "checkpoint"))],
            jit_compile=cfg.jit_compile)
        seconds = time.perf_counter() - t0
        model = fit.as_float32(model, build)
        val_acc = fit.accuracy(model, *val_xy)
        speed = measure_speed(timer, train_xy, info, seed)
        live.summary.update(val_accuracy_inference=val_acc, resumed_from_epoch=logger.resumed_from_epoch,
                            replicas=info["replicas"], global_batch_size=info["global_batch_size"],
                            train_seconds=round(seconds, 2), images_per_second=speed["images_per_second"],
                            mixed_precision=int(mixed))
    return model, info, {"seconds": seconds, "val_accuracy": val_acc, "resumed_from_epoch": logger.resumed_from_epoch,
                         "speed": speed}


def measure_speed(timer, train_xy, info: dict, seed: int) -> dict:
    """Training images/s from the epoch times, and what the same input pipeline delivers alone."""
    from train2infer import fit

    speed = fit.throughput(timer.seconds, len(train_xy[0]), info["replicas"])
    feed = fit.input_throughput(fit.make_dataset(*train_xy, info["global_batch_size"], shuffle=True, seed=seed),
                                min_seconds=1.0)
    speed["input_images_per_second"] = feed["images_per_second"]
    speed["input_headroom"] = round(feed["images_per_second"] / speed["images_per_second"], 1)
    return speed


def describe(result: dict) -> str:
    """The stage's closing line."""
    resumed = f" (resumed at epoch {result['resumed_from_epoch']})" if result["resumed_from_epoch"] else ""
    s = result["speed"]
    return (f"train: {result['strategy']} x{result['replicas']}, {result['epochs']} epochs in "
            f"{result['seconds']:.1f}s{resumed}, {s['images_per_second_per_replica']:.0f} images/s per replica "
            f"(input pipeline {s['input_images_per_second']:,.0f} images/s, {s['input_headroom']:.0f}x), "
            f"val accuracy {result['val_accuracy']:.4f}")
