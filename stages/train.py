"""train: fit the configured model on the prepared training split.

Reads:   params.yaml (sections ``model``, ``train``, ``seed``); --data prepared folder.
Writes:  --model ``.keras`` file (float32, no optimizer state); --reports folder with
         DVCLive per-epoch metrics (``metrics.json``, ``plots/metrics/``) and
         ``throughput.json`` (steady-state training images/s, per replica, and the
         images/s the input pipeline alone delivers: the trainer's headroom).
Devices: ``train.strategy`` picks a tf.distribute strategy (GPU when present); the batch
         size is per replica and the learning rate scales with the replica count. With
         ``multi_worker`` run the same command on every worker with its ``TF_CONFIG``;
         only the chief publishes outputs.
Resume:  a ``BackupAndRestore`` checkpoint and the DVCLive logs are kept under --backup
         (keyed by a hash of the run's settings) until the stage succeeds; a killed run
         re-run with the same settings resumes from its last finished epoch.
Run:     dvc repro train
         python stages/train.py --params params.yaml --data data/prepared \
             --model models/trained.keras --reports reports/train --backup models/.backup/train
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import train2infer  # noqa: F401  (first: fixes the Keras flavour before TensorFlow loads)
from train2infer import cli, config
from train2infer.io import publish, write_json


def main(argv: list[str] | None = None) -> None:
    ap = cli.parser(__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", required=True, help="output .keras file")
    ap.add_argument("--reports", required=True, help="DVCLive folder")
    ap.add_argument("--backup", required=True, help="resumable state (not a DVC output)")
    args = ap.parse_args(argv)

    params = config.load_checked(args.params)
    mcfg = config.section(params, "model")
    tcfg = config.section(params, "train")
    seed = config.seed(params)

    from train2infer import data

    meta = data.load_meta(args.data)
    train_xy = data.load_prepared(args.data, "train")
    val_xy = data.load_prepared(args.data, "val")

    import tensorflow as tf
    import tf_keras as keras
    from dvclive import Live

    from train2infer import distribute, models, training

    strategy = distribute.select_strategy(tcfg.strategy)  # first TF call: multi-worker needs it so
    if tcfg.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(seed)
    mixed = distribute.use_mixed_precision(tcfg.mixed_precision)
    chief = distribute.is_chief(strategy)
    options = {k: v for k, v in config.as_dict(mcfg).items() if k != "name"}

    def build():
        return models.build_model(
            mcfg.name, train_xy[0].shape[1:], len(meta["class_names"]), seed, **options
        )

    key = training.run_key(
        {"model": config.as_dict(mcfg), "train": config.as_dict(tcfg), "seed": seed, "data": meta,
         "n": [len(train_xy[0]), len(val_xy[0])], "replicas": strategy.num_replicas_in_sync}
    )
    backup_root = Path(args.backup)
    workdir = backup_root / (key if chief else f"{key}-worker")
    if chief and backup_root.is_dir():
        for stale in backup_root.iterdir():  # backups of runs with other settings
            if stale.name != key:
                shutil.rmtree(stale, ignore_errors=True)

    with publish(args.model, args.reports, keep=chief) as staged:
        with Live(dir=str(workdir / "live"), resume=True, dvcyaml=None, save_dvc_exp=False) as live:
            logger, timer = training.LiveLogger(live), training.EpochTimer()
            backup = keras.callbacks.BackupAndRestore(str(workdir / "checkpoint"))
            t0 = time.perf_counter()
            model, info = training.fit_classifier(
                build,
                strategy,
                train_xy,
                val_xy,
                epochs=tcfg.epochs,
                batch_size=tcfg.batch_size,
                learning_rate=tcfg.learning_rate,
                scale_learning_rate=tcfg.scale_learning_rate,
                seed=seed,
                callbacks=[timer, logger, backup],
                jit_compile=tcfg.jit_compile,
            )
            seconds = time.perf_counter() - t0
            model = training.as_float32(model, build)
            val_acc = training.accuracy(model, *val_xy)
            speed = training.throughput(timer.seconds, len(train_xy[0]), info["replicas"])
            feed = data.input_throughput(  # the same pipeline fit() read, timed alone
                data.make_dataset(*train_xy, info["global_batch_size"], shuffle=True, seed=seed), min_seconds=1.0)
            speed["input_images_per_second"] = feed["images_per_second"]
            speed["input_headroom"] = round(feed["images_per_second"] / speed["images_per_second"], 1)
            live.summary.update(
                {
                    "val_accuracy_inference": val_acc,
                    "resumed_from_epoch": logger.resumed_from_epoch,
                    "replicas": info["replicas"],
                    "global_batch_size": info["global_batch_size"],
                    "train_seconds": round(seconds, 2),
                    "images_per_second": speed["images_per_second"],
                    "mixed_precision": int(mixed),
                }
            )
        shutil.copytree(workdir / "live", staged(args.reports))
        write_json(
            staged(args.reports) / "throughput.json",
            {**distribute.describe(strategy), **speed, "global_batch_size": info["global_batch_size"],
             "jit_compile": tcfg.jit_compile, "mixed_precision": mixed},
        )
        models.save_for_inference(model, staged(args.model))
    shutil.rmtree(workdir, ignore_errors=True)
    if chief:
        desc = distribute.describe(strategy)
        resumed = f" (resumed at epoch {logger.resumed_from_epoch})" if logger.resumed_from_epoch else ""
        print(f"train: {desc['strategy']} x{desc['replicas']}, {tcfg.epochs} epochs in {seconds:.1f}s"
              f"{resumed}, {speed['images_per_second_per_replica']:.0f} images/s per replica (input pipeline "
              f"{speed['input_images_per_second']:,.0f} images/s, {speed['input_headroom']:.0f}x), "
              f"val accuracy {val_acc:.4f} -> {args.model}")


if __name__ == "__main__":
    cli.run(main)
