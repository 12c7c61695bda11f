"""train: fit the configured model on the prepared training split.

Reads:   params.yaml (sections ``model``, ``train``, ``seed``); --data prepared folder.
Writes:  --model ``.keras`` file (float32, no optimizer state); --reports folder with
         DVCLive per-epoch metrics (``metrics.json``, ``plots/metrics/``).
Devices: ``train.strategy`` picks a tf.distribute strategy from the visible devices (GPU
         when present); the batch size is per replica.
Run:     dvc repro train
         python stages/train.py --params params.yaml --data data/prepared \
             --model models/trained.keras --reports reports/train
"""

from __future__ import annotations

import time

import train2infer  # noqa: F401  (first: fixes the Keras flavour before TensorFlow loads)
from train2infer import cli, config
from train2infer.io import publish


def main(argv: list[str] | None = None) -> None:
    ap = cli.parser(__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", required=True, help="output .keras file")
    ap.add_argument("--reports", required=True, help="DVCLive folder")
    args = ap.parse_args(argv)

    params = config.load_checked(args.params)
    mcfg = config.section(params, "model")
    tcfg = config.section(params, "train")
    seed = config.seed(params)

    from train2infer import data

    meta = data.load_meta(args.data)
    train_xy = data.load_prepared(args.data, "train")
    val_xy = data.load_prepared(args.data, "val")

    import tf_keras as keras
    from dvclive import Live

    from train2infer import distribute, models, training

    keras.utils.set_random_seed(seed)
    strategy = distribute.select_strategy(tcfg.strategy)
    mixed = distribute.use_mixed_precision(tcfg.mixed_precision)
    options = {k: v for k, v in config.as_dict(mcfg).items() if k != "name"}

    def build():
        return models.build_model(
            mcfg.name, train_xy[0].shape[1:], len(meta["class_names"]), seed, **options
        )

    with publish(args.model, args.reports) as staged:
        with Live(dir=str(staged(args.reports)), dvcyaml=None, save_dvc_exp=False) as live:
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
                callbacks=[training.LiveLogger(live)],
            )
            seconds = time.perf_counter() - t0
            model = training.as_float32(model, build)
            val_acc = training.accuracy(model, *val_xy)
            live.summary.update(
                {
                    "val_accuracy_inference": val_acc,
                    "replicas": info["replicas"],
                    "global_batch_size": info["global_batch_size"],
                    "train_seconds": round(seconds, 2),
                    "images_per_second": round(tcfg.epochs * len(train_xy[0]) / seconds, 1),
                    "mixed_precision": int(mixed),
                }
            )
        models.save_for_inference(model, staged(args.model))
    desc = distribute.describe(strategy)
    print(f"train: {desc['strategy']} x{desc['replicas']}, {tcfg.epochs} epochs in {seconds:.1f}s, "
          f"val accuracy {val_acc:.4f} -> {args.model}")


if __name__ == "__main__":
    cli.run(main)
