"""convert: trained, shrunk and pruned Keras models -> TFLite and SavedModel, fusion checked.

Reads:   params.yaml (section ``convert``, and ``seed``); --data prepared folder (test
         images for the output checks, training images to calibrate full-integer int8
         and for PQAT); --trained, --shrunk (channel-pruned) and --pruned ``.keras`` files.
         A shrunk model identical to the trained one (``prune.channels.criterion=none``)
         is not exported twice.
Writes:  --out folder: ``{source}_tflite_float.tflite``, one quantized variant per source
         per ``convert.quantization`` (``_int8`` dynamic-range, ``_float16``, ``_fullint8``
         full integer, ``_pqat`` pruning-preserving quantization-aware training), with
         ``convert.sparse_format`` also ``pruned_tflite_sparse`` (same weights in TFLite's
         sparse format, for XNNPACK's sparse kernels), and ``{source}_saved_model/`` (of
         the BatchNorm-folded model, so that Grappler fuses each conv, bias and ReLU);
         --summary JSON per source: Keras layer count, the Keras-level BatchNorm fold
         (layers before/after, max |difference|), TFLite op count and types, the fusion
         table (Keras layers -> TFLite op), max |TFLite - Keras| logits on test images,
         and the SavedModel graph before and after TF's graph optimizations.
Fails:   if a float32 TFLite model differs from its Keras model by more than
         ``convert.float_atol``, or the folded Keras model from the unfused one by more than
         ``convert.fold_atol`` (the fold of the float64 copy against that copy: the algebra
         must be exact; the float32 difference, rounding that grows with the logits and
         with small BatchNorm variances, is reported beside it).
Run:     dvc repro convert
         python stages/convert.py --params params.yaml --data data/prepared \
             --trained models/trained.keras --shrunk models/shrunk.keras \
             --pruned models/pruned.keras --out models/export --summary reports/convert/summary.json
"""

from __future__ import annotations

from collections import Counter

import train2infer  # noqa: F401  (first: fixes the Keras flavour before TensorFlow loads)
from train2infer import Train2InferError, cli, config
from train2infer.io import publish, write_json


def same_weights(a, b) -> bool:
    """Whether two models have the same weight shapes and values."""
    import numpy as np

    wa, wb = a.get_weights(), b.get_weights()
    return len(wa) == len(wb) and all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(wa, wb))


def main(argv: list[str] | None = None) -> None:
    ap = cli.parser(__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", required=True)
    ap.add_argument("--trained", required=True)
    ap.add_argument("--shrunk", required=True)
    ap.add_argument("--pruned", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--summary", required=True)
    args = ap.parse_args(argv)

    params = config.load_checked(args.params)
    cfg = config.section(params, "convert")
    seed = config.seed(params)

    from train2infer import data

    x_test, y_test = data.load_prepared(args.data, "test")
    x_check = data.to_float(x_test[: cfg.check_images])
    quantizations = ["float"] + ([] if cfg.quantization == "none" else [cfg.quantization])
    representative = train_xy = None
    if cfg.quantization in ("int8", "pqat"):
        train_xy = data.load_prepared(args.data, "train")
        representative = data.to_float(train_xy[0][: cfg.representative_images])

    import numpy as np

    from train2infer import conversion, models, surgery

    sources = {"trained": models.load_model(args.trained), "shrunk": models.load_model(args.shrunk),
               "pruned": models.load_model(args.pruned)}
    skipped = {}
    if same_weights(sources["shrunk"], sources["trained"]):
        skipped["shrunk"] = "identical to trained (prune.channels.criterion=none)"
        del sources["shrunk"]
    summary = {"skipped": skipped}
    with publish(args.out, args.summary) as staged:
        out = staged(args.out)
        out.mkdir()
        for name, model in sources.items():
            reference = model.predict(x_check, batch_size=256, verbose=0)
            folded = surgery.fold_batchnorm(model)
            fold_diff32 = float(np.max(np.abs(folded.predict(x_check, batch_size=256, verbose=0) - reference)))
            x64 = x_check.astype(np.float64)  # exactness is judged in float64, free of float32 rounding
            model64 = surgery.to_float64(model)
            fold_diff = float(np.max(np.abs(surgery.fold_batchnorm(model64).predict(x64, batch_size=256, verbose=0)
                                            - model64.predict(x64, batch_size=256, verbose=0))))
            if fold_diff > cfg.fold_atol:
                raise Train2InferError(f"{name}: BatchNorm-folded Keras model differs by {fold_diff:.2e} > "
                                       f"convert.fold_atol={cfg.fold_atol} (float64)")
            conversion.export_saved_model(folded, out / f"{name}_saved_model")  # BN folded: Grappler fuses more
            n_layers = len(conversion.keras_layers(model))
            entry = {
                "keras_layers": n_layers,
                "keras_fold": {"layers_before": n_layers,
                               "layers_after": len(conversion.keras_layers(folded)), "max_abs_diff": fold_diff,
                               "max_abs_diff_float32": fold_diff32,
                               "max_abs_logit": float(np.max(np.abs(reference)))},
                "saved_model_graph": conversion.graph_optimization(out / f"{name}_saved_model"),
                "tflite": {},
            }
            exports = [(q, False) for q in quantizations]
            if cfg.sparse_format and name == "pruned":
                exports.append(("float", True))
            for quant, sparse in exports:
                suffix = "sparse" if sparse else conversion.SUFFIX["qat" if quant == "pqat" else quant]
                variant = f"{name}_tflite_{suffix}"
                if quant == "pqat":
                    qmodel, history = pqat(model, train_xy, data.load_prepared(args.data, "val"), cfg, seed,
                                           preserve_sparsity=(name == "pruned"))
                    content = conversion.to_tflite(qmodel, "qat", int8_io=cfg.int8_io)
                    pqat_acc = float(np.mean(np.argmax(conversion.run_tflite(content, data.to_float(x_test)), -1)
                                             == y_test))
                else:
                    content = conversion.to_tflite(model, quant, representative, int8_io=cfg.int8_io, sparse=sparse)
                (out / f"{variant}.tflite").write_bytes(content)
                ops = conversion.tflite_ops(content)
                diff = float(np.max(np.abs(conversion.run_tflite(content, x_check) - reference)))
                if quant == "float" and diff > cfg.float_atol:
                    raise Train2InferError(
                        f"{variant}: TFLite logits differ from Keras by {diff:.2e} > "
                        f"convert.float_atol={cfg.float_atol}"
                    )
                entry["tflite"][suffix] = {
                    "variant": variant,
                    "ops": len(ops),
                    "op_types": dict(Counter(op["op"] for op in ops)),
                    "max_abs_diff": diff,
                    "fusion": conversion.fusion_table(model, ops),
                    "xnnpack": conversion.delegation(content),
                }
                if quant == "pqat":
                    entry["tflite"][suffix].update(pqat_history=history, pqat_test_accuracy=pqat_acc)
            summary[name] = entry
        write_json(staged(args.summary), summary)
    for name, entry in summary.items():
        if name == "skipped":
            continue
        f = entry["tflite"]["float"]
        diffs = ", ".join(f"{k} {v['max_abs_diff']:.1e}" for k, v in entry["tflite"].items())
        fold = entry["keras_fold"]
        graph = entry["saved_model_graph"]
        print(f"convert: {name}: {entry['keras_layers']} Keras layers -> {f['ops']} TFLite ops "
              f"(Keras fold {fold['layers_before']} -> {fold['layers_after']} layers, |diff| "
              f"{fold['max_abs_diff']:.1e}; SavedModel graph {graph['nodes_before']} -> {graph['nodes_after']} "
              f"nodes), max |diff| {diffs}")
    for name, why in skipped.items():
        print(f"convert: {name}: not exported, {why}")


def pqat(model, train_xy, val_xy, cfg, seed: int, preserve_sparsity: bool):
    """Quantization-aware fine-tuning (sparsity-preserving for pruned models) of a copy."""
    import tensorflow as tf

    from train2infer import conversion, models, training

    def build():
        return conversion.quantize_aware(models.clone(model), preserve_sparsity=preserve_sparsity)

    qmodel, info = training.fit_classifier(
        build, tf.distribute.get_strategy(), train_xy, val_xy, epochs=cfg.pqat_epochs,
        batch_size=cfg.batch_size, learning_rate=cfg.pqat_learning_rate, scale_learning_rate=False,
        seed=seed, verbose=0,
    )
    return qmodel, info["history"]


if __name__ == "__main__":
    cli.run(main)
