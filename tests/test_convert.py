"""convert: TFLite matches Keras, Conv+BN+ReLU is fused, sparsity survives conversion."""

from __future__ import annotations

import numpy as np
import pytest

from train2infer import Train2InferError, conversion, data, models, pruning


@pytest.fixture(scope="module")
def tflite_float(trained):
    return conversion.to_tflite(trained, "float")


def test_float_tflite_matches_keras(trained, tflite_float, digits):
    splits, _ = digits
    x = data.to_float(splits["test"][0][:40])
    got = conversion.run_tflite(tflite_float, x)
    want = trained.predict(x, verbose=0)
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_dynamic_range_tflite_keeps_the_answers(trained, digits):
    splits, _ = digits
    x = data.to_float(splits["test"][0])
    got = conversion.run_tflite(conversion.to_tflite(trained, "dynamic"), x)
    want = trained.predict(x, verbose=0)
    agreement = np.mean(np.argmax(got, -1) == np.argmax(want, -1))
    assert agreement >= 0.95, agreement
    assert np.max(np.abs(got - want)) > 0  # it really is quantized


def test_dynamic_range_skips_tensors_under_1024_elements():
    """Measured pitfall: a 3x3x1x8 kernel (72 weights) stays float, 3x3x16x16 goes int8."""
    m = models.build_cnn((12, 12, 1), 3, filters=(8, 16), convs_per_stage=1, dense_units=0, dropout=0)
    interp = conversion.interpreter(conversion.to_tflite(m, "dynamic"), delegates=False)
    dtypes = []
    for op in interp._get_ops_details():
        if op["op_name"] == "CONV_2D":
            w = interp.get_tensor(int(op["inputs"][1]))
            dtypes.append((w.size, w.dtype))
    assert dtypes == [(72, np.float32), (1152, np.int8)]


def test_conv_bn_relu_fuse_into_one_conv_op(trained, tflite_float):
    ops = conversion.tflite_ops(tflite_float)
    table = conversion.fusion_table(trained, ops)
    convs = [r for r in table["ops"] if r["op"] == "CONV_2D"]
    n_conv = sum(1 for layer in trained.layers if layer.name.endswith("_conv"))
    assert len(convs) == n_conv
    for row in convs:
        stem = row["keras_layers"][0][: -len("_conv")]
        assert row["keras_layers"] == [f"{stem}_conv", f"{stem}_bn", f"{stem}_relu"]
    assert not any("BATCH" in op["op"] or op["op"] == "RELU" for op in ops)
    assert len(ops) < len(conversion.keras_layers(trained))
    assert table["unmapped"] == [{"layer": "dropout", "reason": "identity at inference"}]
    # every op is credited with at least one layer
    assert all(r["keras_layers"] for r in table["ops"])


def test_sparsity_is_read_back_from_the_tflite_file(trained):
    import tf_keras as keras

    m = models.clone(trained)
    rng = np.random.default_rng(0)
    for layer in m.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            w = layer.get_weights()
            w[0] = w[0] * (rng.random(w[0].shape) > 0.75)
            layer.set_weights(w)
    want = pruning.overall_sparsity(m)
    assert want == pytest.approx(0.75, abs=0.03)
    assert conversion.tflite_sparsity(conversion.to_tflite(m, "float")) == pytest.approx(want, abs=1e-9)
    # int8 keeps every zero (symmetric quantization), and may round tiny weights to zero
    assert conversion.tflite_sparsity(conversion.to_tflite(m, "dynamic")) >= want - 1e-9


def test_bad_model_files_fail_clearly(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(Train2InferError, match="not a valid TFLite model.*bad.tflite"):
        conversion.interpreter(bad)
    with pytest.raises(Train2InferError, match="not found"):
        conversion.interpreter(tmp_path / "missing.tflite")
    (tmp_path / "bad.keras").write_bytes(b"garbage")
    with pytest.raises(Train2InferError, match="cannot load model.*bad.keras"):
        models.load_model(tmp_path / "bad.keras")


@pytest.mark.parametrize("quantization, weight_dtype", [("float16", np.float16), ("int8", np.int8)])
def test_float16_and_full_integer_quantization(trained, digits, quantization, weight_dtype):
    splits, _ = digits
    x = data.to_float(splits["test"][0])
    content = conversion.to_tflite(trained, quantization, representative=data.to_float(splits["train"][0][:100]))
    interp = conversion.interpreter(content, delegates=False)
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
    got = conversion.run_tflite(content, x)
    want = trained.predict(x, verbose=0)
    assert np.mean(np.argmax(got, -1) == np.argmax(want, -1)) >= 0.95
    with pytest.raises(ValueError, match="representative"):
        conversion.to_tflite(trained, "int8")


def test_full_integer_with_int8_io(trained, digits):
    splits, _ = digits
    x = data.to_float(splits["test"][0])
    content = conversion.to_tflite(trained, "int8", data.to_float(splits["train"][0][:100]), int8_io=True)
    interp = conversion.interpreter(content)
    assert interp.get_input_details()[0]["dtype"] == np.int8 and interp.get_output_details()[0]["dtype"] == np.int8
    got = conversion.run_tflite(content, x)  # quantizes inputs, dequantizes logits
    agreement = np.mean(np.argmax(got, -1) == np.argmax(trained.predict(x, verbose=0), -1))
    assert agreement >= 0.9, agreement


def test_pqat_keeps_the_pruned_zeros(trained, digits):
    """Pruning-preserving QAT: fine-tuning moves the weights but not the zeros."""
    from train2infer import distribute, training

    splits, _ = digits
    pruned = models.clone(trained)
    kernel = pruned.get_layer("s1c0_conv").get_weights()
    mask = np.abs(kernel[0]) < np.quantile(np.abs(kernel[0]), 0.7)
    kernel[0][mask] = 0.0
    pruned.get_layer("s1c0_conv").set_weights(kernel)
    qat, _ = training.fit_classifier(
        lambda: conversion.quantize_aware(models.clone(pruned), preserve_sparsity=True),
        distribute.select_strategy("default"), splits["train"], splits["val"], epochs=1, batch_size=32,
        learning_rate=1e-3, scale_learning_rate=False, seed=0, verbose=0)
    inner = next(layer for layer in qat.layers if getattr(layer, "layer", None) is not None
                 and layer.layer.name == "s1c0_conv")
    tuned = next(w for w in inner.weights if w.name.split("/")[-1].startswith("kernel")).numpy()
    assert np.all(tuned[mask] == 0) and not np.allclose(tuned[~mask], kernel[0][~mask])
    content = conversion.to_tflite(qat, "qat")
    assert conversion.tflite_sparsity(content) > 0.5 * mask.mean() * 0.5
    x = data.to_float(splits["test"][0])
    acc = np.mean(np.argmax(conversion.run_tflite(content, x), -1) == splits["test"][1])
    assert acc > 0.5, acc


def test_sparse_format_and_graph_optimization(tmp_path):
    """EXPERIMENTAL_SPARSITY stores pruned 1x1 kernels sparse (DENSIFY ops); same outputs.
    Grappler fuses conv + bias + ReLU of the folded SavedModel."""
    from train2infer import surgery

    rng = np.random.default_rng(0)
    model = models.build_mobilenet((16, 16, 3), 4, stem_filters=8, filters=(16, 32), blocks_per_stage=1)
    for layer in model.layers:
        if layer.name.endswith("_pw"):
            k = layer.get_weights()[0]
            k[rng.random(k.shape) < 0.8] = 0.0
            layer.set_weights([k])
        if type(layer).__name__ == "BatchNormalization":  # a non-zero folded bias, as after training
            n = layer.get_weights()[0].shape[0]
            layer.set_weights([rng.uniform(0.5, 2, n), rng.normal(0, 0.5, n), rng.normal(0, 0.5, n), rng.uniform(0.2, 3, n)])
    x = rng.random((6, 16, 16, 3), dtype=np.float32)
    dense, sparse = conversion.to_tflite(model, "float"), conversion.to_tflite(model, "float", sparse=True)
    ops = {op["op_name"] for op in conversion.interpreter(sparse, delegates=False)._get_ops_details()}
    assert "DENSIFY" in ops
    assert "DENSIFY" not in {op["op_name"] for op in conversion.interpreter(dense, delegates=False)._get_ops_details()}
    np.testing.assert_allclose(conversion.run_tflite(sparse, x), conversion.run_tflite(dense, x), atol=1e-4)
    zeros = conversion.tflite_sparsity(dense)
    assert zeros > 0.3 and conversion.tflite_sparsity(sparse) == pytest.approx(zeros)
    assert conversion.delegation(sparse)["sparse_weights_taken"] and not conversion.delegation(dense)["sparse_weights_taken"]

    conversion.export_saved_model(surgery.fold_batchnorm(model), tmp_path / "sm")
    graph = conversion.graph_optimization(tmp_path / "sm")
    assert "FusedBatchNormV3" not in graph["ops_before"]  # folded at the Keras level
    assert graph["ops_after"].get("_FusedConv2D", 0) >= 3 and graph["nodes_after"] < graph["nodes_before"]
