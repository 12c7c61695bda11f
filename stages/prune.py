"""prune: channel pruning that shrinks the network, then TF-MOT magnitude pruning.

1. Channels (``prune.channels``, skipped with ``criterion: none``): remove the dead filters
   and units (never positive on the training data) and, with ``l1``/``l2``, all but the
   ``keep`` fraction with the largest BatchNorm-scaled filter norms; rebuild a physically
   smaller dense model with the surviving weights (train2infer.surgery); fine-tune it.
2. Magnitude (TF-MOT ``prune_low_magnitude``) on the trained model, or on the smaller one
   with ``prune.start_from: shrunk``: ``prune.pattern``
   unstructured, ``m_by_n`` or ``block``; ``prune.policy`` none or ``xnnpack``
   (``PruneForLatencyOnXNNPack``); ``prune.include`` / ``prune.exclude`` layer patterns.

Reads:   params.yaml (sections ``prune``, ``train`` for the device strategy and
         determinism, ``seed``);
         --data prepared folder; --model-in trained ``.keras``.
Writes:  --shrunk ``.keras`` (channel-pruned, dense; the trained model itself when channel
         pruning is off); --model-out stripped ``.keras`` file (zeros in place, no
         wrappers); --reports folder with DVCLive fine-tuning metrics of step 2,
         ``metrics.json`` (achieved sparsity, accuracy, channel widths and FLOPs before and
         after), ``channels.json`` (width, kept and dead channels per layer) and
         ``sparsity.json`` (per pruned kernel).
Fails:   if any pruned kernel is more than ``prune.tolerance`` below its target
         (``final_sparsity``, or m/n for ``m_by_n``), if an ``m_by_n`` kernel breaks the
         pattern, or if ``prune.frequency`` never updates the masks.
Run:     dvc repro prune
         python stages/prune.py --params params.yaml --data data/prepared \
             --model-in models/trained.keras --shrunk models/shrunk.keras \
             --model-out models/pruned.keras --reports reports/prune
"""

from __future__ import annotations

import math
import shutil

import train2infer  # noqa: F401  (first: fixes the Keras flavour before TensorFlow loads)
from train2infer import Train2InferError, cli, config
from train2infer.io import publish, write_json

PROBE_IMAGES = 2000  # training images on which dead channels are looked for


def main(argv: list[str] | None = None) -> None:
    ap = cli.parser(__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", required=True)
    ap.add_argument("--model-in", required=True)
    ap.add_argument("--shrunk", required=True)
    ap.add_argument("--model-out", required=True)
    ap.add_argument("--reports", required=True)
    args = ap.parse_args(argv)

    params = config.load_checked(args.params)
    pcfg = config.section(params, "prune")
    ccfg = pcfg.channels
    tcfg = config.section(params, "train")
    seed = config.seed(params)

    from train2infer import data, pruning

    train_xy = data.load_prepared(args.data, "train")
    val_xy = data.load_prepared(args.data, "val")
    import tensorflow as tf
    import tf_keras as keras
    from dvclive import Live

    from train2infer import benchmark, distribute, models, surgery, training

    strategy = distribute.select_strategy(tcfg.strategy)  # first TF call (multi-worker needs it)
    if tcfg.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(seed)
    trained = models.load_model(args.model_in)  # fail fast, before any work, on a bad file
    global_batch = pcfg.batch_size * strategy.num_replicas_in_sync
    total = pcfg.epochs * math.ceil(len(train_xy[0]) / global_batch)
    begin, end = pruning.schedule_steps(total, pcfg.begin_fraction, pcfg.end_fraction, pcfg.frequency)
    target = pcfg.target_sparsity

    chief = distribute.is_chief(strategy)
    with publish(args.shrunk, args.model_out, args.reports, keep=chief) as staged:
        # 1. channels
        macs_before = benchmark.layer_macs(trained)
        channels = {"criterion": ccfg.criterion}
        channel_details: dict = {}
        if ccfg.criterion == "none":
            shutil.copyfile(args.model_in, staged(args.shrunk))
        else:
            probe = data.to_float(train_xy[0][:PROBE_IMAGES])
            chosen = surgery.plan(trained, probe, ccfg.criterion, ccfg.keep, ccfg.min_channels, ccfg.exclude)
            keep = {name: entry["keep"] for name, entry in chosen.items()}
            shrunk = surgery.shrink(trained, keep)
            acc_cut = training.accuracy(shrunk, *val_xy)
            history = {}
            if ccfg.epochs:
                shrunk, info = training.fit_classifier(
                    lambda: surgery.shrink(models.load_model(args.model_in), keep),
                    strategy, train_xy, val_xy, epochs=ccfg.epochs, batch_size=pcfg.batch_size,
                    learning_rate=ccfg.learning_rate, scale_learning_rate=False, seed=seed,
                )
                history = info["history"]
            models.save_for_inference(shrunk, staged(args.shrunk))
            macs_after = benchmark.layer_macs(shrunk)
            layers = {n: {"width": e["width"], "kept": len(e["keep"]), "dead": e["dead"]} for n, e in chosen.items()}
            channel_details = {"layers": layers, "fine_tune_history": history}
            channels.update(
                keep=ccfg.keep,
                macs_before=benchmark.total_macs(macs_before),
                macs_after=benchmark.total_macs(macs_after),
                params_before=int(trained.count_params()),
                params_after=int(shrunk.count_params()),
                val_accuracy_trained=training.accuracy(trained, *val_xy),
                val_accuracy_cut=acc_cut,
                val_accuracy_fine_tuned=training.accuracy(shrunk, *val_xy),
                dead_channels=sum(e["dead"] for e in layers.values()),
            )
            channels["flops_ratio"] = channels["macs_before"] / channels["macs_after"]

        # 2. magnitude (TF-MOT) on the trained or the smaller model
        def build():
            schedule = pruning.make_schedule(
                pcfg.schedule, pcfg.initial_sparsity, pcfg.final_sparsity, begin, end, pcfg.frequency
            )
            # A fresh load each time: the wrapper shares layers with the model it wraps.
            start = staged(args.shrunk) if pcfg.start_from == "shrunk" else args.model_in
            return pruning.wrap(models.load_model(start), schedule, pcfg.pattern, pcfg.m_by_n,
                                pcfg.block_size, pcfg.policy, pcfg.include, pcfg.exclude)

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
            pruned_names = [layer.layer.name for layer in wrapped.layers if pruning.is_wrapper(layer)]
            stripped = pruning.strip(wrapped)
            per_kernel = {n: s for n, s in pruning.kernel_sparsity(stripped).items() if n in pruned_names}
            pruning.check_sparsity(per_kernel, target, pcfg.tolerance)
            if pcfg.pattern == "m_by_n":
                bad = {n: pruning.m_by_n_violations(stripped.get_layer(n).get_weights()[0], pcfg.m_by_n)
                       for n in per_kernel}
                if any(bad.values()):
                    raise Train2InferError(f"prune.m_by_n={list(pcfg.m_by_n)} pattern broken in: "
                                           + ", ".join(f"{n} ({v} groups)" for n, v in bad.items() if v))
            val_acc = training.accuracy(stripped, *val_xy)
            macs_final = benchmark.layer_macs(stripped)
            live.summary.update(
                {
                    "sparsity": pruning.overall_sparsity(stripped),
                    "min_kernel_sparsity": min(per_kernel.values()),
                    "target_sparsity": target,
                    "pattern": pcfg.pattern,
                    "policy": pcfg.policy,
                    "start_from": pcfg.start_from,
                    "val_accuracy_inference": val_acc,
                    "begin_step": begin,
                    "end_step": end,
                    "total_steps": total,
                    "macs_dense": benchmark.total_macs(macs_final),
                    "macs_nonzero": round(benchmark.total_macs(macs_final, nonzero=True)),
                    "channels": channels,
                }
            )
        write_json(staged(args.reports) / "channels.json", channel_details)
        write_json(
            staged(args.reports) / "sparsity.json",
            [{"layer": k, "sparsity": round(v, 6)} for k, v in per_kernel.items()],
        )
        models.save_for_inference(stripped, staged(args.model_out))
    if chief:
        if ccfg.criterion != "none":
            print(f"prune: channels {ccfg.criterion} keep {ccfg.keep}: MACs {channels['macs_before']:,} -> "
                  f"{channels['macs_after']:,} ({channels['flops_ratio']:.2f}x fewer), val accuracy "
                  f"{channels['val_accuracy_trained']:.4f} -> {channels['val_accuracy_cut']:.4f} (cut) -> "
                  f"{channels['val_accuracy_fine_tuned']:.4f} (fine-tuned) -> {args.shrunk}")
        print(f"prune: {pcfg.pattern} target {target:g}, {len(per_kernel)} kernels {min(per_kernel.values()):.3f}.."
              f"{max(per_kernel.values()):.3f}, val accuracy {val_acc:.4f} -> {args.model_out}")


if __name__ == "__main__":
    cli.run(main)
