"""convert: TFLite matches Keras, Conv+BN+ReLU is fused, sparsity survives conversion."""

from __future__ import annotations

import numpy as np
import pytest

from train2infer import Train2InferError, fit, litert
from train2infer.convert import saved_model, tflite
from train2infer.core.variants import Variant, read_manifest
from train2infer.models import builders, graph, io, work
from train2infer.prepared import to_float


@pytest.fixture(scope="module")
def tflite_float(trained):
    return tflite.to_tflite(trained, "float")


def test_float_tflite_matches_keras(trained, tflite_float, digits):
    splits, _ = digits
    x = to_float(splits["test"][0][:40])
    got = litert.predict(tflite_float, x)
    want = trained.predict(x, verbose=0)
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_dynamic_range_tflite_keeps_the_answers(trained, digits):
    splits, _ = digits
    x = to_float(splits["test"][0])
    got = litert.predict(tflite.to_tflite(trained, "dynamic"), x)
    want = trained.predict(x, verbose=0)
    agreement = np.mean(np.argmax(got, -1) == np.argmax(want, -1))
    assert agreement >= 0.95, agreement
    assert np.max(np.abs(got - want)) > 0  # it really is quantized


def test_dynamic_range_skips_tensors_under_1024_elements():
    """Measured pitfall: a 3x3x1x8 kernel (72 weights) stays float, 3x3x16x16 goes int8."""
    m = builders.build_cnn((12, 12, 1), 3, filters=(8, 16), convs_per_stage=1, dense_units=0, dropout=0)
    interp = litert.interpreter(tflite.to_tflite(m, "dynamic"), delegates=False)
    dtypes = []
    for op in interp._get_ops_details():
        if op["op_name"] == "CONV_2D":
            w = interp.get_tensor(int(op["inputs"][1]))
            dtypes.append((w.size, w.dtype))
    assert dtypes == [(72, np.float32), (1152, np.int8)]


def test_conv_bn_relu_fuse_into_one_conv_op(trained, tflite_float):
    ops = litert.ops(tflite_float)
    table = tflite.fusion_table(trained, ops)
    convs = [r for r in table["ops"] if r["op"] == "CONV_2D"]
    n_conv = sum(1 for layer in trained.layers if layer.name.endswith("_conv"))
    assert len(convs) == n_conv
    for row in convs:
        stem = row["keras_layers"][0][: -len("_conv")]
        assert row["keras_layers"] == [f"{stem}_conv", f"{stem}_bn", f"{stem}_relu"]
    assert not any("BATCH" in op["op"] or op["op"] == "RELU" for op in ops)
    assert len(ops) < len(tflite.keras_layers(trained))
    assert table["unmapped"] == [{"layer": "dropout", "reason": "identity at inference"}]
    # every op is credited with at least one layer
    assert all(r["keras_layers"] for r in table["ops"])


def test_sparsity_is_read_back_from_the_tflite_file(trained):
    import tf_keras as keras

    m = io.clone(trained)
    rng = np.random.default_rng(0)
    for layer in m.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            w = layer.get_weights()
            w[0] = w[0] * (rng.random(w[0].shape) > 0.75)
            layer.set_weights(w)
    want = work.overall_sparsity(m)
    assert want == pytest.approx(0.75, abs=0.03)
    assert litert.sparsity(tflite.to_tflite(m, "float")) == pytest.approx(want, abs=1e-9)
    # int8 keeps every zero (symmetric quantization), and may round tiny weights to zero
    assert litert.sparsity(tflite.to_tflite(m, "dynamic")) >= want - 1e-9


def test_bad_model_files_fail_clearly(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(Train2InferError, match="not a valid TFLite model.*bad.tflite"):
        litert.interpreter(bad)
    with pytest.raises(Train2InferError, match="not found"):
        litert.interpreter(tmp_path / "missing.tflite")
    (tmp_path / "bad.keras").write_bytes(b"garbage")
    with pytest.raises(Train2InferError, match="cannot load model.*bad.keras"):
        io.load_model(tmp_path / "bad.keras")


@pytest.mark.parametrize("quantization, weight_dtype", [("float16", np.float16), ("int8", np.int8)])
def test_float16_and_full_integer_quantization(trained, digits, quantization, weight_dtype):
    splits, _ = digits
    x = to_float(splits["test"][0])
    content = tflite.to_tflite(trained, quantization, representative=to_float(splits["train"][0][:100]))
    interp = litert.interpreter(content, delegates=False)
    ops = interp._get_ops_details()
    producer = {int(i): op for op in ops for i in op["outputs"]}
    conv = next(op for op in ops if op["op_name"] == "CONV_2D")
    w = int(conv["inputs"][1])
    if w in producer:  # float16 weights reach the conv through a DEQUANTIZE
        w = int(producer[w]["inputs"][0])
    assert interp.get_tensor(w).dtype == weight_dtype
    if quantization == "int8":  # activations are int8 too, with float I/O at the edges
        assert interp.get_tensor_details()[int(conv["inputs"][0])]["dtype"] == np.int8
        assert interp.get_input_details()[0]["dtype"] == np.float32
    got = litert.predict(content, x)
    want = trained.predict(x, verbose=0)
    assert np.mean(np.argmax(got, -1) == np.argmax(want, -1)) >= 0.95
    with pytest.raises(ValueError, match="representative"):
        tflite.to_tflite(trained, "int8")


def test_full_integer_with_int8_io(trained, digits):
    splits, _ = digits
    x = to_float(splits["test"][0])
    content = tflite.to_tflite(trained, "int8", to_float(splits["train"][0][:100]), int8_io=True)
    interp = litert.interpreter(content)
    assert interp.get_input_details()[0]["dtype"] == np.int8 and interp.get_output_details()[0]["dtype"] == np.int8
    got = litert.predict(content, x)  # quantizes inputs, dequantizes logits
    agreement = np.mean(np.argmax(got, -1) == np.argmax(trained.predict(x, verbose=0), -1))
    assert agreement >= 0.9, agreement


@pytest.mark.slow  # 6 s of quantization-aware fine-tuning: in `make test`, not in `make test-fast`
def test_pqat_keeps_the_pruned_zeros(trained, digits):
    """Pruning-preserving QAT: fine-tuning moves the weights but not the zeros."""
    from train2infer import distribute

    splits, _ = digits
    pruned = io.clone(trained)
    kernel = pruned.get_layer("s1c0_conv").get_weights()
    mask = np.abs(kernel[0]) < np.quantile(np.abs(kernel[0]), 0.7)
    kernel[0][mask] = 0.0
    pruned.get_layer("s1c0_conv").set_weights(kernel)
    qat, _ = fit.fit_classifier(
        lambda: tflite.quantize_aware(io.clone(pruned), preserve_sparsity=True),
        distribute.select_strategy("default"), splits["train"], splits["val"], epochs=1, batch_size=32,
        learning_rate=1e-3, scale_learning_rate=False, seed=0, verbose=0)
    inner = next(layer for layer in qat.layers if getattr(layer, "layer", None) is not None
                 and layer.layer.name == "s1c0_conv")
    tuned = next(w for w in inner.weights if w.name.split("/")[-1].startswith("kernel")).numpy()
    assert np.all(tuned[mask] == 0) and not np.allclose(tuned[~mask], kernel[0][~mask])
    content = tflite.to_tflite(qat, "pqat")
    assert litert.sparsity(content) > 0.5 * mask.mean() * 0.5
    x = to_float(splits["test"][0])
    acc = np.mean(np.argmax(litert.predict(content, x), -1) == splits["test"][1])
    assert acc > 0.5, acc


def test_sparse_format_and_graph_optimization(tmp_path):
    """EXPERIMENTAL_SPARSITY stores pruned 1x1 kernels sparse (DENSIFY ops); same outputs.
    Grappler fuses conv + bias + ReLU of the folded SavedModel."""
    rng = np.random.default_rng(0)
    model = builders.build_mobilenet((16, 16, 3), 4, stem_filters=8, filters=(16, 32), blocks_per_stage=1)
    for layer in model.layers:
        if layer.name.endswith("_pw"):
            k = layer.get_weights()[0]
            k[rng.random(k.shape) < 0.8] = 0.0
            layer.set_weights([k])
        if type(layer).__name__ == "BatchNormalization":  # a non-zero folded bias, as after training
            n = layer.get_weights()[0].shape[0]
            layer.set_weights([rng.uniform(0.5, 2, n), rng.normal(0, 0.5, n), rng.normal(0, 0.5, n),
                               rng.uniform(0.2, 3, n)])
    x = rng.random((6, 16, 16, 3), dtype=np.float32)
    dense, sparse = tflite.to_tflite(model, "float"), tflite.to_tflite(model, "float", sparse=True)
    ops = {op["op_name"] for op in litert.interpreter(sparse, delegates=False)._get_ops_details()}
    assert "DENSIFY" in ops
    assert "DENSIFY" not in {op["op_name"] for op in litert.interpreter(dense, delegates=False)._get_ops_details()}
    np.testing.assert_allclose(litert.predict(sparse, x), litert.predict(dense, x), atol=1e-4)
    zeros = litert.sparsity(dense)
    assert zeros > 0.3 and litert.sparsity(sparse) == pytest.approx(zeros)
    assert litert.delegation(sparse)["sparse_weights_taken"] and not litert.delegation(dense)["sparse_weights_taken"]

    saved_model.export_saved_model(graph.fold_batchnorm(model), tmp_path / "sm")
    g = saved_model.graph_optimization(tmp_path / "sm")
    assert "FusedBatchNormV3" not in g["ops_before"]  # folded at the Keras level
    assert g["ops_after"].get("_FusedConv2D", 0) >= 3 and g["nodes_after"] < g["nodes_before"]


def test_int8_input_is_quantized_by_the_one_runner(trained, digits):
    """litert.runner, used by the measurement worker, feeds int8 models quantized input."""
    splits, _ = digits
    x = to_float(splits["test"][0][:1])
    content = tflite.to_tflite(trained, "int8", to_float(splits["train"][0][:50]), int8_io=True)
    interp = litert.interpreter(content)
    raw = litert.runner(interp, x)()
    detail = interp.get_input_details()[0]
    assert interp.get_tensor(detail["index"]).dtype == np.int8
    out = litert.from_output(raw[0], interp.get_output_details()[0])
    np.testing.assert_allclose(out, litert.predict(content, x)[0])


@pytest.mark.slow
def test_convert_run_exports_every_listed_precision_and_a_manifest(tmp_path, tiny, prepared, trained_file):
    """convert.run: float + every convert.quantization, per source; the manifest is the truth."""
    import dataclasses
    import json

    from train2infer.convert.run import run

    # (no int8 accuracy control: the tests below are about it; here it would fine-tune and time)
    cfg = dataclasses.replace(tiny.convert, quantization=["dynamic", "int8"], max_drop=None)
    sources = {"trained": trained_file, "shrunk": trained_file, "pruned": trained_file}
    summary = run(cfg, tiny.seed, prepared, sources, tmp_path / "export", tmp_path / "summary.json")
    assert summary["skipped"] == {"shrunk": "identical to trained (the shrink stage passed it on unchanged)"}
    variants, facts = read_manifest(tmp_path / "export")
    names = [v.name for v in variants]
    assert names == ["trained_tflite_float", "trained_tflite_dynamic", "trained_tflite_int8",
                     "trained_saved_model_float", "pruned_tflite_float", "pruned_tflite_dynamic", "pruned_tflite_int8",
                     "pruned_saved_model_float"]
    assert set(facts) == {"trained", "pruned"} and facts["trained"]["macs"] > 0
    for v in variants:
        assert (tmp_path / "export" / v.path.split("export/")[-1]).exists(), v
    entry = json.loads((tmp_path / "summary.json").read_text())["trained"]
    assert [e["precision"] for e in entry["tflite"].values()] == ["float", "dynamic", "int8"]
    assert entry["tflite"]["trained_tflite_float"]["max_abs_diff"] <= cfg.float_atol
    assert entry["keras_fold"]["max_abs_diff"] <= cfg.fold_atol


def test_variant_names_follow_one_rule_and_manifest_problems_are_clear(tmp_path):
    from train2infer.core.variants import BASELINE, write_manifest

    assert BASELINE.name == "trained_keras_float"
    v = Variant("pruned", "tflite", "float", sparse=True, path="x.tflite")
    assert v.name == "pruned_tflite_float_sparse" and v.float_twin == "pruned_tflite_float" and not v.integer
    assert Variant("shrunk", "tflite", "dynamic").integer and Variant("shrunk", "tflite", "pqat").integer
    with pytest.raises(ValueError, match="precision 'int4'"):
        Variant("trained", "tflite", "int4")
    with pytest.raises(Train2InferError, match="export manifest not found"):
        read_manifest(tmp_path)
    write_manifest(tmp_path, [v], {"pruned": {}})
    with pytest.raises(Train2InferError, match="exported model not found.*x.tflite"):
        read_manifest(tmp_path)
    (tmp_path / "x.tflite").write_bytes(b"")
    assert read_manifest(tmp_path)[0][0].path == str(tmp_path / "x.tflite")
    (tmp_path / "manifest.json").write_text('{"variants": [{"source": "mine"}], "sources": {}}')
    with pytest.raises(Train2InferError, match="malformed"):
        read_manifest(tmp_path)


def _badly_quantizing_model():
    """A hand-built classifier whose int8 output collapses: a fourth logit parked at -1000 (never the
    answer) stretches the output tensor's range so far that one int8 step (~4) swallows the
    differences between the three real logits. Labels: the float model's own answers, kept only where
    its margin is wide (so float accuracy is 1 and quantizing the inner tensors changes no answer)."""
    import tf_keras as keras

    rng = np.random.default_rng(0)
    inp = keras.Input((6, 6, 3), name="image")
    h = keras.layers.Conv2D(8, 1, activation="relu", name="mix")(inp)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    model = keras.Model(inp, keras.layers.Dense(4, name="logits")(h))
    model.get_layer("mix").set_weights([rng.normal(0, 1, (1, 1, 3, 8)), np.zeros(8)])
    kernel = rng.normal(0, 1, (8, 4))
    model.get_layer("logits").set_weights([kernel, np.array([0.0, 0.0, 0.0, -1000.0])])
    x = rng.random((3000, 6, 6, 3)).astype(np.float32)
    logits = model(x).numpy()[:, :3]
    top = np.sort(logits, -1)
    wide = (top[:, -1] - top[:, -2]) > 0.1 * (logits.max() - logits.min())
    return model, x[wide][:400], np.argmax(logits[wide][:400], -1)


def test_accuracy_control_keeps_the_harmful_op_in_float_and_restores_float_accuracy():
    from train2infer.convert import control

    model, x, y = _badly_quantizing_model()
    rep, val = x[:100], (x[100:], y[100:])
    full = tflite.to_tflite(model, "int8", rep)
    float_right = control.correct(tflite.to_tflite(model, "float"), *val)
    float_acc = float(np.mean(float_right))
    assert float_acc == 1.0 and control.accuracy(full, *val) < 0.8  # int8 really breaks it
    content, report = control.within_floor(model, full, float_right, val, rep, max_drop=1.0, max_float_layers=3)
    assert report["within"] and report["drop_before"] > 20 and report["drop_after"] == 0.0
    assert report["mcnemar_p"] < 1e-6
    assert control.accuracy(content, *val) == float_acc  # exactly the float answers back
    assert len(report["float_ops"]) == 1 and report["float_ops"][0].startswith("FULLY_CONNECTED")
    ops = [op["op"] for op in litert.ops(content)]
    assert "CONV_2D" in ops and "DEQUANTIZE" in ops  # the rest stays int8; the float island has its own Q/DQ
    assert set(report["latency_ms"]) == {"full_int8", "with_float_ops"}  # what it costs, timed side by side
    assert min(report["latency_ms"].values()) > 0
    alone = {c["op"]: c["drop_alone"] for c in report["candidates"]}
    assert alone["FULLY_CONNECTED"] == 0.0 and alone["CONV_2D"] > 20  # measured one by one
    # within the floor already: the full int8 model is kept as it is, nothing measured op by op
    same, quiet = control.within_floor(model, full, float_right, val, rep, max_drop=100.0, max_float_layers=3)
    assert same == full and quiet["candidates"] == [] and quiet["within"]
    # a big drop on a handful of images is no evidence: 4 images, 2 wrong, p = 0.5 -> left alone
    few = (val[0][:4], val[1][:4])
    same, small = control.within_floor(model, full, float_right[:4], few, rep, max_drop=1.0, max_float_layers=3)
    assert same == full and small["candidates"] == [] and small["mcnemar_p"] >= 0.05


def _outlier_pair_model():
    """Two 1x1 convolutions whose float function is ordinary but whose first output has one channel
    1,000x larger than the rest (its kernel and bias scaled; the second conv's matching input
    weights divided: ReLU commutes with a positive factor), as tools/outlier_channel.py makes. Int8
    gives that tensor one scale, so the other channels round to zero: only keeping *both* convs in
    float restores the answers (the writer alone re-quantizes the tensor for the reader)."""
    import tf_keras as keras

    rng = np.random.default_rng(1)
    inp = keras.Input((6, 6, 3), name="image")
    h = keras.layers.Conv2D(8, 1, activation="relu", name="c0")(inp)
    h = keras.layers.Conv2D(8, 1, activation="relu", name="c1")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    model = keras.Model(inp, keras.layers.Dense(3, name="logits")(h))
    k0, b0 = rng.normal(0, 1, (1, 1, 3, 8)), rng.normal(0, 0.1, 8)
    k0[..., 0] *= 1000
    b0[0] *= 1000
    k1 = rng.normal(0, 1, (1, 1, 8, 8))
    k1[:, :, 0, :] /= 1000
    model.get_layer("c0").set_weights([k0, b0])
    model.get_layer("c1").set_weights([k1, rng.normal(0, 0.1, 8)])
    kernel = rng.normal(0, 1, (8, 3))
    # images that differ in colour more than in texture, so that the pooled features spread
    x = ((rng.random((3000, 1, 1, 3)) + 0.1 * rng.random((3000, 6, 6, 3))) / 1.1).astype(np.float32)
    model.get_layer("logits").set_weights([kernel, np.zeros(3)])
    model.get_layer("logits").set_weights([kernel, -model(x).numpy().mean(0)])  # every class answered
    logits = model(x).numpy()
    top = np.sort(logits, -1)
    wide = (top[:, -1] - top[:, -2]) > 0.1 * (logits.max() - logits.min())
    y = np.argmax(logits, -1)
    keep = np.concatenate([np.flatnonzero(wide & (y == k))[:120] for k in range(3)])  # balanced
    return model, x[keep], y[keep]


def test_accuracy_control_gives_back_ops_that_only_a_pair_needed_in_float():
    """No op alone is enough (the damage needs two in float together), so the accumulation keeps
    what it tried until the pair is in; the give-back returns the rest to int8."""
    from train2infer.convert import control

    model, x, y = _outlier_pair_model()
    rep, val = x[:100], (x[100:], y[100:])
    full = tflite.to_tflite(model, "int8", rep)
    float_right = control.correct(tflite.to_tflite(model, "float"), *val)
    assert float(np.mean(float_right)) == 1.0 and control.accuracy(full, *val) < 0.8
    content, report = control.within_floor(model, full, float_right, val, rep, max_drop=1.0, max_float_layers=5)
    drops = {c["op"] + " " + c["tensor"]: c["drop_alone"] for c in report["candidates"]}
    assert min(drops.values()) > 5  # no op kept float alone reaches the floor
    assert report["within"] and report["drop_after"] <= 1.0
    assert [op.split()[0] for op in report["float_ops"]] == ["CONV_2D", "CONV_2D"], report["float_ops"]
    assert report["given_back"]  # what the accumulation took beyond the pair went back to int8
    assert control.accuracy(content, *val) >= 0.99
    kinds = [op["op"] for op in litert.ops(content)]
    assert "FULLY_CONNECTED" in kinds and "QUANTIZE" in kinds  # the head stayed int8


@pytest.mark.slow
def test_qat_takes_over_when_the_float_fallback_is_not_allowed_enough_ops(tmp_path, tiny, prepared, trained):
    """The tiny CNN with an outlier channel (tools/outlier_channel.py: same float function) loses
    most of its answers in full int8; with one op allowed in float the fallback cannot fix it (the
    writer and the reader of the outlier are both needed), so quantization-aware fine-tuning runs,
    and its int8 model is taken because it loses less."""
    import dataclasses
    import json

    from outlier_channel import scale_channel

    from train2infer.convert.run import run
    from train2infer.models.io import save_for_inference

    path = tmp_path / "outlier.keras"
    save_for_inference(scale_channel(trained, "s0c0_bn", "s1c0_conv", 0, 1000.0), path)
    cfg = dataclasses.replace(tiny.convert, quantization=["int8"], max_float_layers=1, qat_fallback=True)
    run(cfg, tiny.seed, prepared, {"trained": path}, tmp_path / "export", tmp_path / "summary.json")
    r = json.loads((tmp_path / "summary.json").read_text())["trained"]["tflite"]["trained_tflite_int8"]
    r = r["accuracy_control"]
    assert r["drop_before"] > 20 and len(r["candidates"]) > 1  # int8 really breaks, the fallback was tried
    assert r["qat"]["taken"] and r["qat"]["drop"] == r["drop_after"] < r["drop_before"] - 20
    assert r["float_ops"] == [] and set(r["latency_ms"]) == {"full_int8", "qat_int8"}
    content = (tmp_path / "export" / "trained_tflite_int8.tflite").read_bytes()
    kinds = [op["op"] for op in litert.ops(content)]
    assert kinds[0] == "QUANTIZE" and "CONV_2D" in kinds  # an integer model, what the QAT converted to
