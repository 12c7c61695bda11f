"""convert: trained and pruned Keras models -> TFLite (float32, dynamic-range int8) and SavedModel.

Reads:   params.yaml (section ``convert``); --data prepared folder (test images for the
         output check, training images to calibrate full-integer int8); --trained and
         --pruned ``.keras`` files.
Writes:  --out folder: ``{trained,pruned}_tflite_float.tflite``, one quantized variant each
         per ``convert.quantization`` (``_int8`` dynamic-range, ``_float16``, ``_fullint8``), and
         ``{trained,pruned}_saved_model/``; --summary JSON per model: Keras layer count,
         TFLite op count and op types, the fusion table (Keras layers -> TFLite op) and
         the max abs difference of TFLite vs Keras logits on test images.
Fails:   if a float32 TFLite model differs from its Keras model by more than
         ``convert.float_atol``.
Run:     dvc repro convert
         python stages/convert.py --params params.yaml --data data/prepared \
             --trained models/trained.keras --pruned models/pruned.keras \
             --out models/export --summary reports/convert/summary.json
"""

from __future__ import annotations

from collections import Counter

import train2infer  # noqa: F401  (first: fixes the Keras flavour before TensorFlow loads)
from train2infer import Train2InferError, cli, config
from train2infer.io import publish, write_json

def main(argv: list[str] | None = None) -> None:
    ap = cli.parser(__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", required=True)
    ap.add_argument("--trained", required=True)
    ap.add_argument("--pruned", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--summary", required=True)
    args = ap.parse_args(argv)

    params = config.load_checked(args.params)
    cfg = config.section(params, "convert")

    from train2infer import data

    x_test, _ = data.load_prepared(args.data, "test")
    x_check = data.to_float(x_test[: cfg.check_images])
    quantizations = ["float"] + ([] if cfg.quantization == "none" else [cfg.quantization])
    representative = None
    if cfg.quantization == "int8":
        x_train, _ = data.load_prepared(args.data, "train")
        representative = data.to_float(x_train[: cfg.representative_images])

    import numpy as np

    from train2infer import conversion, models

    sources = {"trained": models.load_model(args.trained), "pruned": models.load_model(args.pruned)}
    summary = {}
    with publish(args.out, args.summary) as staged:
        out = staged(args.out)
        out.mkdir()
        for name, model in sources.items():
            reference = model.predict(x_check, batch_size=256, verbose=0)
            conversion.export_saved_model(model, out / f"{name}_saved_model")
            entry = {"keras_layers": len(conversion.keras_layers(model)), "tflite": {}}
            for quant in quantizations:
                suffix = conversion.SUFFIX[quant]
                variant = f"{name}_tflite_{suffix}"
                content = conversion.to_tflite(model, quant, representative)
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
                }
            summary[name] = entry
        write_json(staged(args.summary), summary)
    for name, entry in summary.items():
        f = entry["tflite"]["float"]
        diffs = ", ".join(f"{k} {v['max_abs_diff']:.1e}" for k, v in entry["tflite"].items())
        print(f"convert: {name}: {entry['keras_layers']} Keras layers -> {f['ops']} TFLite ops, max |diff| {diffs}")


if __name__ == "__main__":
    cli.run(main)
