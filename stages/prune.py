"""prune: TF-MOT magnitude pruning of the trained model, fine-tuning, strip.

Reads:   params.yaml (sections ``prune``, ``train`` for the device strategy and
         determinism, ``seed``);
         --data prepared folder; --model-in trained ``.keras``.
Writes:  --model-out stripped ``.keras`` file (zeros in place, no wrappers); --reports
         folder with DVCLive fine-tuning metrics, ``metrics.json`` (achieved sparsity,
         accuracy) and ``sparsity.json`` (per pruned kernel).
Fails:   if any pruned kernel is more than ``prune.tolerance`` below
         ``prune.final_sparsity``, or if ``prune.frequency`` never updates the masks.
Run:     dvc repro prune
         python stages/prune.py --params params.yaml --data data/prepared \
             --model-in models/trained.keras --model-out models/pruned.keras \
             --reports reports/prune
"""

from __future__ import annotations

import math

import train2infer  # noqa: F401  (first: fixes the Keras flavour before TensorFlow loads)
from train2infer import cli, config
from train2infer.io import publish, write_json


def main(argv: list[str] | None = None) -> None:
    ap = cli.parser(__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", required=True)
    ap.add_argument("--model-in", required=True)
    ap.add_argument("--model-out", required=True)
    ap.add_argument("--reports", required=True)
    args = ap.parse_args(argv)

    params = config.load_checked(args.params)
    pcfg = config.section(params, "prune")
    tcfg = config.section(params, "train")
    seed = config.seed(params)

    from train2infer import data, pruning

    train_xy = data.load_prepared(args.data, "train")
    val_xy = data.load_prepared(args.data, "val")
    import tensorflow as tf
    import tf_keras as keras
    from dvclive import Live

    from train2infer import distribute, models, training

    strategy = distribute.select_strategy(tcfg.strategy)  # first TF call (multi-worker needs it)
    if tcfg.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(seed)
    models.load_model(args.model_in)  # fail fast, before any work, on a bad file
    global_batch = pcfg.batch_size * strategy.num_replicas_in_sync
    total = pcfg.epochs * math.ceil(len(train_xy[0]) / global_batch)
    begin, end = pruning.schedule_steps(total, pcfg.begin_fraction, pcfg.end_fraction, pcfg.frequency)

    def build():
        schedule = pruning.make_schedule(
            pcfg.schedule, pcfg.initial_sparsity, pcfg.final_sparsity, begin, end, pcfg.frequency
        )
        # A fresh load each time: the wrapper shares layers with the model it wraps.
        return pruning.wrap(models.load_model(args.model_in), schedule)

    chief = distribute.is_chief(strategy)
    with publish(args.model_out, args.reports, keep=chief) as staged:
        with Live(dir=str(staged(args.reports)), dvcyaml=None, save_dvc_exp=False) as live:
            wrapped, info = training.fit_classifier(
                build,
                strategy,
                train_xy,
                val_xy,
                epochs=pcfg.epochs,
                batch_size=pcfg.batch_size,
                learning_rate=pcfg.learning_rate,
                scale_learning_rate=False,
                seed=seed,
                callbacks=pruning.callbacks() + [training.LiveLogger(live)],
            )
            stripped = pruning.strip(wrapped)
            per_kernel = pruning.kernel_sparsity(stripped)
            pruning.check_sparsity(per_kernel, pcfg.final_sparsity, pcfg.tolerance)
            val_acc = training.accuracy(stripped, *val_xy)
            live.summary.update(
                {
                    "sparsity": pruning.overall_sparsity(stripped),
                    "min_kernel_sparsity": min(per_kernel.values()),
                    "target_sparsity": pcfg.final_sparsity,
                    "val_accuracy_inference": val_acc,
                    "begin_step": begin,
                    "end_step": end,
                    "total_steps": total,
                }
            )
        write_json(
            staged(args.reports) / "sparsity.json",
            [{"layer": k, "sparsity": round(v, 6)} for k, v in per_kernel.items()],
        )
        models.save_for_inference(stripped, staged(args.model_out))
    if chief:
        print(f"prune: target {pcfg.final_sparsity}, kernels {min(per_kernel.values()):.3f}.."
              f"{max(per_kernel.values()):.3f}, val accuracy {val_acc:.4f} -> {args.model_out}")


if __name__ == "__main__":
    cli.run(main)
