"""models: builders, graph surgery (BatchNorm folding) and work counting, on real models."""

from __future__ import annotations

import numpy as np

from train2infer.models import builders, graph, work
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
            layer.set_weights([rng.uniform(0.5, 2, n), rng.normal(0, 0.5, n), rng.normal(0, 0.5, n), rng.uniform(0.2, 3, n)])
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
