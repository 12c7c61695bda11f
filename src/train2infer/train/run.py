"""The train stage's work: build, fit (resumably), measure throughput, save."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np

from train2infer.core import resume
from train2infer.core.params import as_dict
from train2infer.core.publish import write_json
from train2infer.prepared import load_meta, load_prepared


def run(model_cfg, cfg, seed: int, data: str | Path, model_out: Path, reports: Path, backup: str | Path) -> dict:
    """Fit ``model_cfg``'s model with ``cfg`` (the ``train`` section) on ``data``.

    Args:
        model_cfg: The ``model`` section.
        cfg: The ``train`` section.
        seed: Global seed.
        data: Prepared-data folder.
        model_out: ``.keras`` file to write (float32, no optimizer state).
        reports: Folder to write: DVCLive per-epoch metrics (``metrics.json``,
            ``plots/metrics/``; the same on a re-run with the same seed) and ``throughput.json``
            (every measured time and rate: ``train_seconds``, images/s, devices).
        backup: Folder for the resumable state (``BackupAndRestore`` checkpoint and the
            DVCLive logs), kept until the run succeeds.

    With ``cfg.epochs == 0`` nothing is fitted: the model (``model=file``, or an application
    with weights) is checked, its validation accuracy logged, and it is passed on as it is.

    Returns:
        ``chief`` (only the chief's outputs are to be published), strategy, replicas,
        seconds, validation accuracy, ``resumed_from_epoch``, ``speed``, ``epochs_run``,
        ``best_epoch`` (early stopping's restored epoch, or None) and ``notes`` (what was
        changed in a user's model).
    """
    from train2infer import distribute, fit
    from train2infer.models.io import save_for_inference

    meta = load_meta(data)
    train_xy, val_xy = load_prepared(data, "train"), load_prepared(data, "val")
    strategy = fit.setup(cfg, seed)
    mixed = distribute.use_mixed_precision(cfg.mixed_precision)
    chief = distribute.is_chief(strategy)
    build, notes = builder(model_cfg, train_xy[0].shape[1:], len(meta["class_names"]), seed)
    desc = distribute.describe(strategy)
    workdir = None  # the resumable state, removed only once the model is saved
    if cfg.epochs == 0:
        model, extra = passed_on(build(), val_xy, Path(reports))
        info = {"global_batch_size": 0}
    else:
        key = fit.run_key({"model": as_dict(model_cfg), "train": as_dict(cfg), "seed": seed, "data": meta,
                           "n": [len(train_xy[0]), len(val_xy[0])], "replicas": strategy.num_replicas_in_sync,
                           "file": file_digest(model_cfg.path) if model_cfg.name == "file" else None,
                           "code": resume.code_digest()})
        workdir, state = resume.checkpoint_dir(backup, key, chief)
        announce(state, workdir, chief)
        rec = fit.recipe(cfg, meta["source"])
        model, info, extra = fit_logged(build, strategy, train_xy, val_xy, cfg, seed, workdir, mixed, rec)
        shutil.copytree(workdir / "live", reports, dirs_exist_ok=True)
    write_json(Path(reports) / "throughput.json", {**desc, "train_seconds": round(extra["seconds"], 2),
                                                   **extra["speed"], "jit_compile": cfg.jit_compile,
                                                   "global_batch_size": info["global_batch_size"],
                                                   "mixed_precision": mixed, "model_notes": notes})
    save_for_inference(model, model_out)
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)
    return {"chief": chief, "strategy": desc["strategy"], "replicas": desc["replicas"], "epochs": cfg.epochs,
            "notes": notes, **extra}


def announce(state: str, workdir: Path, chief: bool) -> None:
    """Say before training whether an interrupted run's checkpoint is resumed or was dropped."""
    if not chief or state == "new":
        return
    if state == "resume":
        print(f"train: resuming the interrupted run of these settings from {workdir}", flush=True)
    else:
        print(f"train: removed a checkpoint of these settings ({workdir}): DVC has recorded the stage "
              "since it was written (it completed, or its outputs were restored); starting afresh",
              file=sys.stderr, flush=True)


def builder(model_cfg, input_shape, num_classes: int, seed: int):
    """A function that returns a fresh model (called inside the strategy's scope), and notes.

    ``model=file`` is loaded and checked against the data here, before any training.
    """
    from train2infer.models import builders, config as model_config, io

    if model_cfg.name == "file":
        _, notes = io.load_user_model(model_cfg.path, input_shape, num_classes)  # fail fast, one line
        return (lambda: io.load_user_model(model_cfg.path, input_shape, num_classes)[0]), notes
    return (lambda: builders.build_model(model_cfg.name, input_shape, num_classes, seed,
                                         **model_config.options(model_cfg))), []


def file_digest(path) -> str:
    """MD5 of a model file, or of every file under a SavedModel folder (keys the resumable state)."""
    import hashlib

    p, digest = Path(path), hashlib.md5()
    for f in sorted([p] if p.is_file() else [q for q in p.rglob("*") if q.is_file()]):
        digest.update(f.read_bytes())
    return digest.hexdigest()


def passed_on(model, val_xy, reports: Path):
    """``train.epochs=0``: the model as it is, its validation accuracy logged as the one point."""
    from dvclive import Live

    from train2infer import fit

    val_acc = fit.accuracy(model, *val_xy)
    with Live(dir=str(reports), dvcyaml=None, save_dvc_exp=False) as live:
        live.log_metric("val/accuracy", val_acc)
        live.summary.update(val_accuracy_inference=val_acc, epochs_run=0)
        live.make_summary()
    speed = {"images_per_second": 0.0, "images_per_second_per_replica": 0.0, "epochs_timed": 0,
             "median_epoch_seconds": 0.0, "input_images_per_second": 0.0, "input_headroom": 0.0}
    return model, {"seconds": 0.0, "val_accuracy": val_acc, "resumed_from_epoch": 0, "speed": speed,
                   "best_epoch": None, "epochs_run": 0}


def fit_logged(build, strategy, train_xy, val_xy, cfg, seed: int, workdir: Path, mixed: bool, rec):
    """Fit with DVCLive logs and a ``BackupAndRestore`` checkpoint under ``workdir`` (resumable);
    returns the float32 model, the fit info, and seconds, accuracy, resume epoch and speed."""
    import tf_keras as keras
    from dvclive import Live

    from train2infer import fit

    with Live(dir=str(workdir / "live"), resume=True, dvcyaml=None, save_dvc_exp=False) as live:
        logger, timer = fit.LiveLogger(live), fit.EpochTimer()
        stop = ([keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=True)]
                if cfg.patience else [])
        t0 = time.perf_counter()
        model, info = fit.fit_classifier(
            build, strategy, train_xy, val_xy, epochs=cfg.epochs, batch_size=cfg.batch_size,
            learning_rate=cfg.learning_rate, scale_learning_rate=cfg.scale_learning_rate, seed=seed,
            callbacks=[timer, logger, keras.callbacks.BackupAndRestore(str(workdir / "checkpoint")), *stop],
            jit_compile=cfg.jit_compile, rec=rec)
        seconds = time.perf_counter() - t0
        model = fit.as_float32(model, build)
        val_acc = fit.accuracy(model, *val_xy)
        speed = measure_speed(timer, train_xy, info, seed)
        losses = info["history"].get("val_loss", [])
        best = int(np.argmin(losses)) + logger.resumed_from_epoch if cfg.patience and losses else None
        live.summary.update(val_accuracy_inference=val_acc, resumed_from_epoch=logger.resumed_from_epoch,
                            epochs_run=len(timer.seconds) + logger.resumed_from_epoch, best_epoch=best,
                            replicas=info["replicas"], global_batch_size=info["global_batch_size"],
                            mixed_precision=int(mixed), augment_flip=int(rec.flip),
                            augment_translate=rec.translate)  # timings go to throughput.json, not here
    return model, info, {"seconds": seconds, "val_accuracy": val_acc, "resumed_from_epoch": logger.resumed_from_epoch,
                         "speed": speed, "best_epoch": best, "epochs_run": live.summary["epochs_run"]}


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
    notes = "".join(f"; {n}" for n in result["notes"])
    if result["epochs"] == 0:
        return f"train: epochs=0, the model is passed on as it is{notes}; val accuracy {result['val_accuracy']:.4f}"
    resumed = f" (resumed at epoch {result['resumed_from_epoch']})" if result["resumed_from_epoch"] else ""
    best = f", best epoch {result['best_epoch'] + 1} restored" if result["best_epoch"] is not None else ""
    s = result["speed"]
    return (f"train: {result['strategy']} x{result['replicas']}, {result['epochs_run']}/{result['epochs']} epochs"
            f"{best}{notes} in "
            f"{result['seconds']:.1f}s{resumed}, {s['images_per_second_per_replica']:.0f} images/s per replica "
            f"(input pipeline {s['input_images_per_second']:,.0f} images/s, {s['input_headroom']:.0f}x), "
            f"val accuracy {result['val_accuracy']:.4f}")
