"""models: builders, graph surgery (BatchNorm folding) and work counting, on real models."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import arch_params
from train2infer.models import builders, graph, work
from train2infer.models.config import ARCHS
from train2infer.prepared import to_float


def test_cnn_is_made_of_conv_bn_relu_blocks():
    import tf_keras as keras

    m = builders.build_cnn((16, 16, 1), 10, filters=(8, 16), convs_per_stage=2, dense_units=0, dropout=0)
    kinds = [type(layer).__name__ for layer in m.layers]
    for i, kind in enumerate(kinds):
        if kind == "Conv2D":
            assert kinds[i + 1 : i + 3] == ["BatchNormalization", "ReLU"]
    assert kinds.count("Conv2D") == 4
    assert m.output_shape == (None, 10)
    assert all(layer.momentum == 0.9 for layer in m.layers if isinstance(layer, keras.layers.BatchNormalization))


def test_folded_batchnorm_matches_the_unfused_model(trained, digits):
    splits, _ = digits
    x = to_float(splits["test"][0])
    folded = graph.fold_batchnorm(trained)
    kinds = [type(layer).__name__ for layer in folded.layers]
    assert "BatchNormalization" not in kinds and "ReLU" not in kinds
    assert len(folded.layers) == len(trained.layers) - 4  # 2 blocks: BN and ReLU gone from each
    assert folded.get_layer("s0c0_conv").get_config()["activation"] == "relu"
    x64 = x.astype(np.float64)  # the fold's algebra is exact: in float64 only rounding at 1e-12 is left
    t64 = graph.to_float64(trained)
    np.testing.assert_allclose(graph.fold_batchnorm(t64).predict(x64, verbose=0), t64.predict(x64, verbose=0),
                               atol=1e-9)
    np.testing.assert_allclose(folded.predict(x, verbose=0), trained.predict(x, verbose=0), atol=1e-4)


def test_folding_a_mobilenet_with_real_statistics():
    rng = np.random.default_rng(0)
    model = builders.build_mobilenet((16, 16, 3), 5, stem_filters=8, filters=(8, 16), blocks_per_stage=2)
    for layer in model.layers:  # non-trivial inference statistics in every BatchNorm
        if type(layer).__name__ == "BatchNormalization":
            n = layer.get_weights()[0].shape[0]
            layer.set_weights([rng.uniform(0.5, 2, n), rng.normal(0, 0.5, n), rng.normal(0, 0.5, n),
                               rng.uniform(0.2, 3, n)])
    x = rng.random((8, 16, 16, 3), dtype=np.float32)
    folded = graph.fold_batchnorm(model)
    assert len(folded.layers) < len(model.layers) - 10
    x64 = x.astype(np.float64)
    m64 = graph.to_float64(model)
    np.testing.assert_allclose(graph.fold_batchnorm(m64).predict(x64, verbose=0), m64.predict(x64, verbose=0),
                               atol=1e-9)
    np.testing.assert_allclose(folded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-4)
    # a wrong fold (BN applied twice, or to the wrong channel) is off by far more than that
    broken = graph.fold_batchnorm(model)
    k = broken.get_layer("s0b0_pw").get_weights()
    broken.get_layer("s0b0_pw").set_weights([k[0][..., ::-1], k[1]])
    assert np.abs(broken.predict(x, verbose=0) - model.predict(x, verbose=0)).max() > 1e-2


def test_multiply_adds_are_counted_per_layer_by_hand():
    m = builders.build_cnn((8, 8, 1), 3, filters=(4,), convs_per_stage=1, kernel_size=3, dense_units=5, dropout=0)
    rows = {r["layer"]: r for r in work.layer_macs(m)}
    assert rows["s0c0_conv"]["macs"] == 8 * 8 * 4 * 3 * 3 * 1  # same padding: 8x8 outputs, 4 filters of 3x3x1
    assert rows["hidden"]["macs"] == 4 * 5 and rows["logits"]["macs"] == 5 * 3
    k = m.get_layer("hidden").get_weights()
    k[0][:2] = 0
    m.get_layer("hidden").set_weights(k)
    assert work.kernel_sparsity(m)["hidden"] == 0.5
    zeros = 10 / sum(w.size for w in (m.get_layer(n).get_weights()[0] for n in ("s0c0_conv", "hidden", "logits")))
    assert work.overall_sparsity(m) == zeros
    assert work.summary(m)["macs_nonzero"] == round(work.total_macs(work.layer_macs(m), nonzero=True))


def _saved(tmp_path, model, name="m.keras"):
    model.save(tmp_path / name)
    return tmp_path / name


@pytest.mark.parametrize("case, message", [
    ("corrupt", "cannot load model"),
    ("not_a_model", "not a Keras model file (neither a .keras zip archive nor HDF5; 19 bytes): truncated"),
    ("h5_garbage", "not a Keras model file"),
    ("folder", "a folder, but not a SavedModel (no saved_model.pb in it)"),
    ("lambda", "it holds a Lambda layer (Python code, which Keras does not load from a file unless trusted): "
               "replace the Lambda with a layer class, or re-save the model without it"),
    ("two_outputs", "has 1 inputs and 2 outputs; the pipeline takes one image input and one logits output"),
    ("classes", "outputs shape (7,) per image, the data has 10 classes"),
    ("nested", "layer 'inner' is a nested model; save a flat functional model"),
    ("missing", "model not found"),
])
def test_a_users_model_that_does_not_fit_is_one_line(tmp_path, case, message):
    import tf_keras as keras

    from train2infer import Train2InferError
    from train2infer.models import io

    L = keras.layers
    x = keras.Input((16, 16, 1))
    flat = L.Flatten()(x)
    if case == "corrupt":
        path = tmp_path / "m.keras"
        path.write_bytes(b"PK\x03\x04 not a model")
    elif case in ("not_a_model", "h5_garbage"):
        path = tmp_path / ("m.keras" if case == "not_a_model" else "m.h5")
        path.write_bytes(b"just some text here")  # the h5py "file signature not found"
    elif case == "folder":
        path = tmp_path / "exported"
        (path / "variables").mkdir(parents=True)
    elif case == "lambda":
        path = _saved(tmp_path, keras.Model(x, L.Dense(10)(L.Lambda(lambda t: t * 2.0)(flat))))
    elif case == "two_outputs":
        path = _saved(tmp_path, keras.Model(x, [L.Dense(10)(flat), L.Dense(10)(flat)]))
    elif case == "classes":
        path = _saved(tmp_path, keras.Model(x, L.Dense(7)(flat)))
    elif case == "nested":
        inner = keras.Model(x, L.Conv2D(4, 3)(x), name="inner")
        y = keras.Input((16, 16, 1))
        path = _saved(tmp_path, keras.Model(y, L.Dense(10)(L.Flatten()(inner(y)))))
    else:
        path = tmp_path / "gone.keras"
    with pytest.raises(Train2InferError) as err:
        io.load_user_model(path, (16, 16, 1), 10)
    assert message in str(err.value) and str(path.name) in str(err.value) and "\n" not in str(err.value)


def test_a_users_sequential_model_with_free_size_and_softmax_becomes_a_logits_graph(tmp_path):
    """Sequential -> functional, (None, None, 1) input fixed to the data's, softmax removed:
    same argmax, and logits that softmax back to the user's probabilities."""
    import tf_keras as keras

    from train2infer.models import io

    L = keras.layers
    seq = keras.Sequential([keras.Input((None, None, 1)), L.Conv2D(4, 3), L.GlobalAveragePooling2D(), L.Dense(10),
                            L.Softmax()])
    model, notes = io.load_user_model(_saved(tmp_path, seq), (16, 16, 1), 10)
    assert model.input_shape == (None, 16, 16, 1) and len(notes) == 2
    x = np.random.default_rng(0).random((4, 16, 16, 1)).astype("float32")
    np.testing.assert_allclose(keras.activations.softmax(model(x)).numpy(), seq(x).numpy(), atol=1e-6)


def _random_batchnorm(model, seed=1):
    """BatchNorm statistics far from the identity, so a wrong fold shows."""
    import tf_keras as keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape) if i in (0, 3) else rng.normal(0, 0.3, w.shape)
                               for i, w in enumerate(layer.get_weights())])
    return model


def _check_fold_and_count(model, x):
    """BatchNorm folding is exact in float64; every layer's multiply-adds equal TensorFlow's own
    op statistics within 2 % (the issue's bar; they agree exactly where both count the same ops)."""
    m64 = graph.to_float64(model)
    folded = graph.fold_batchnorm(m64)
    assert len(folded.layers) < len(m64.layers)
    diff = np.max(np.abs(folded(x.astype("float64")).numpy() - m64(x.astype("float64")).numpy()))
    assert diff < 1e-10, diff
    ours = {r["layer"]: r["macs"] for r in work.layer_macs(model)}
    traced = work.traced_macs(model)
    assert set(traced) == set(ours), sorted(set(traced) ^ set(ours))[:5]
    for name, macs in ours.items():
        assert macs == pytest.approx(traced[name], rel=0.02), name


def test_fold_and_counts_on_every_kind_of_arithmetic_layer():
    """A functional model with a residual Add, Subtract, Multiply, Average, Maximum, a
    concatenation, separable and transposed convolutions, swish and x + 3. (Grouped
    convolutions run in an XLA call on CPU, which TensorFlow's statistics cannot see into.)"""
    import tf_keras as keras

    L = keras.layers
    x0 = keras.Input((12, 12, 3))
    a = L.BatchNormalization()(L.Conv2D(8, 3, padding="same", use_bias=False)(x0))
    b = L.ReLU()(L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(x0)))
    b = L.Conv2D(8, 1)(b)
    x = L.Add()([a, b])
    x = L.Concatenate()([L.Subtract()([x, a]), L.Multiply()([x, b]), L.Average()([a, b, x])])
    x = L.Maximum()([L.SeparableConv2D(8, 3, padding="same")(x), L.Activation("swish")(a)])
    x = L.Dense(5)(L.GlobalAveragePooling2D()(x + 3.0))
    model = _random_batchnorm(keras.Model(x0, x))
    kinds = {r["type"] for r in work.layer_macs(model)}
    assert {"Add", "Subtract", "Multiply", "Average", "Maximum", "SeparableConv2D", "TFOpLambda",
            "Activation"} <= kinds
    _check_fold_and_count(model, np.random.default_rng(0).random((3, 12, 12, 3)))


def test_a_transposed_convolution_counts_as_the_convolution_it_transposes():
    """Conv2DTranspose's output shape is dynamic in TensorFlow's graph (no statistic); its work
    equals that of the strided Conv2D whose gradient it is, which TensorFlow does count."""
    import tf_keras as keras

    x = keras.Input((6, 5, 3))
    up = keras.Model(x, keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same")(x))
    y = keras.Input((12, 10, 4))
    down = keras.Model(y, keras.layers.Conv2D(3, 3, strides=2, padding="same")(y))
    assert work.layer_macs(up)[0]["macs"] == sum(work.traced_macs(down).values()) == 6 * 5 * 3 * 9 * 4


@pytest.mark.slow
@pytest.mark.parametrize("arch", arch_params(ARCHS))
def test_fold_and_counts_on_every_listed_architecture(arch):
    model = builders.build_application((32, 32, 3), 5, arch=arch, alpha=0.35 if ARCHS[arch] else 1.0)
    _check_fold_and_count(_random_batchnorm(model), np.random.default_rng(0).random((2, 32, 32, 3)))


@pytest.mark.parametrize("suffix", [".keras", ".h5", ""])  # "": a SavedModel folder written by Keras
def test_a_users_model_loads_from_every_keras_format(tmp_path, suffix):
    import tf_keras as keras

    from train2infer.models import io

    x = keras.Input((8, 8, 1))
    model = keras.Model(x, keras.layers.Dense(3)(keras.layers.Flatten()(keras.layers.Conv2D(2, 3)(x))))
    path = tmp_path / f"mine{suffix}"
    model.save(path)
    loaded, notes = io.load_user_model(path, (8, 8, 1), 3)
    images = np.random.default_rng(0).random((2, 8, 8, 1)).astype("float32")
    np.testing.assert_array_equal(loaded(images).numpy(), model(images).numpy())
    assert notes == []


def test_resnet_is_resnet9_shaped_and_counts_by_hand():
    import tf_keras as keras

    m = builders.build_resnet((32, 32, 3), 10, filters=(16, 32, 64, 128), residual_blocks=(0, 1, 0, 1))
    kinds = [type(layer).__name__ for layer in m.layers]
    assert kinds.count("Conv2D") == 8 and kinds.count("Add") == 2 and kinds.count("MaxPooling2D") == 3
    assert m.get_layer("s1r0_add").output_shape == (None, 16, 16, 32)
    assert m.get_layer("s3r0_add").output_shape == (None, 4, 4, 128) and m.output_shape == (None, 10)
    macs = {r["layer"]: r["macs"] for r in work.layer_macs(m)}
    by_hand = {"s0_conv": 32 * 32 * 9 * 3 * 16, "s1_conv": 32 * 32 * 9 * 16 * 32, "s1r0c0_conv": 16 * 16 * 9 * 32 * 32,
               "s2_conv": 16 * 16 * 9 * 32 * 64, "s3_conv": 8 * 8 * 9 * 64 * 128, "s3r0c1_conv": 4 * 4 * 9 * 128 * 128}
    assert all(macs[k] == v for k, v in by_hand.items())
    assert 23e6 < work.summary(m)["macs"] < 25e6
    assert isinstance(m.get_layer("s3r0_add"), keras.layers.Add)
