"""Channel pruning that shrinks the network, and BatchNorm folding, on real trained models."""

from __future__ import annotations

import numpy as np
import pytest

from train2infer import Train2InferError, benchmark, data, models, surgery


def _kill(model, layer_bn: str, channels) -> None:
    """Make channels dead for every input: BN scale 0 and a negative shift before the ReLU."""
    bn = model.get_layer(layer_bn)
    gamma, beta, mean, var = bn.get_weights()
    gamma[channels], beta[channels] = 0.0, -1.0
    bn.set_weights([gamma, beta, mean, var])


def test_removing_only_dead_channels_keeps_the_outputs(trained, digits):
    splits, _ = digits
    model = models.clone(trained)
    _kill(model, "s0c0_bn", [1, 5])
    _kill(model, "s1c0_bn", [0, 3, 9])
    x = data.to_float(splits["train"][0])
    plan = surgery.plan(model, x, "dead", keep=1.0)
    dead = {n: e["width"] - len(e["keep"]) for n, e in plan.items()}
    assert dead["s0c0_conv"] >= 2 and dead["s1c0_conv"] >= 3
    assert not {1, 5} & set(plan["s0c0_conv"]["keep"].tolist())
    shrunk = surgery.shrink(model, {n: e["keep"] for n, e in plan.items()})
    widths = surgery.widths(shrunk)
    assert widths == {n: len(e["keep"]) for n, e in plan.items()} | {"logits": 10}
    assert shrunk.get_layer("s0c0_bn").get_weights()[0].shape == (widths["s0c0_conv"],)
    assert shrunk.get_layer("s1c0_conv").get_weights()[0].shape[2] == widths["s0c0_conv"]  # next layer's inputs
    x_test = data.to_float(splits["test"][0])
    np.testing.assert_allclose(shrunk.predict(x_test, verbose=0), model.predict(x_test, verbose=0), atol=1e-5)
    macs = lambda m: sum(r["macs"] for r in benchmark.layer_macs(m))  # noqa: E731
    assert macs(shrunk) < macs(model)


@pytest.mark.parametrize("criterion", ["l1", "l2"])
def test_norm_criteria_keep_the_requested_widths(trained, digits, criterion):
    splits, _ = digits
    x = data.to_float(splits["train"][0][:500])
    plan = surgery.plan(trained, x, criterion, keep=0.5, min_channels=2, exclude=["hidden"])
    assert set(plan) == {"s0c0_conv", "s1c0_conv"}  # hidden excluded, the classifier never pruned
    shrunk = surgery.shrink(trained, {n: e["keep"] for n, e in plan.items()})
    assert surgery.widths(shrunk) == {"s0c0_conv": 4, "s1c0_conv": 8, "hidden": 32, "logits": 10}
    # the kept filters are exactly the surviving weights of the original
    k0 = trained.get_layer("s0c0_conv").get_weights()[0]
    np.testing.assert_array_equal(shrunk.get_layer("s0c0_conv").get_weights()[0], k0[..., plan["s0c0_conv"]["keep"]])
    norms = surgery.channel_norms(surgery.producers(trained)[0], 1 if criterion == "l1" else 2)
    kept = plan["s0c0_conv"]["keep"]
    dropped = np.setdiff1d(np.arange(8), kept)
    alive = np.flatnonzero(surgery.channel_activity(trained, surgery.producers(trained)[:1], x)["s0c0_conv"] > 0)
    assert norms[kept].min() >= norms[np.intersect1d(dropped, alive)].max(initial=0)


def test_channel_pruning_refuses_what_it_cannot_follow():
    import tf_keras as keras

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, name="c")(inputs)
    x = keras.layers.Flatten(name="flat")(x)
    outputs = keras.layers.Dense(2, name="out")(keras.layers.Dense(3, name="d")(x))
    with pytest.raises(Train2InferError, match="cannot prune channels of c: flat"):
        surgery.producers(keras.Model(inputs, outputs))
    a = keras.Input((4,))
    b = keras.layers.Dense(4)(a)
    with pytest.raises(Train2InferError, match="chain model"):
        surgery.chain(keras.Model(a, keras.layers.Add()([a, b])))


def test_folded_batchnorm_matches_the_unfused_model(trained, digits):
    splits, _ = digits
    x = data.to_float(splits["test"][0])
    folded = surgery.fold_batchnorm(trained)
    kinds = [type(layer).__name__ for layer in folded.layers]
    assert "BatchNormalization" not in kinds and "ReLU" not in kinds
    assert len(folded.layers) == len(trained.layers) - 4  # 2 blocks: BN and ReLU gone from each
    assert folded.get_layer("s0c0_conv").get_config()["activation"] == "relu"
    x64 = x.astype(np.float64)  # the fold's algebra is exact: in float64 only rounding at 1e-12 is left
    t64 = surgery.to_float64(trained)
    np.testing.assert_allclose(surgery.fold_batchnorm(t64).predict(x64, verbose=0), t64.predict(x64, verbose=0),
                               atol=1e-9)
    np.testing.assert_allclose(folded.predict(x, verbose=0), trained.predict(x, verbose=0), atol=1e-4)


def test_folding_a_mobilenet_with_real_statistics():
    rng = np.random.default_rng(0)
    model = models.build_mobilenet((16, 16, 3), 5, stem_filters=8, filters=(8, 16), blocks_per_stage=2)
    for layer in model.layers:  # non-trivial inference statistics in every BatchNorm
        if type(layer).__name__ == "BatchNormalization":
            n = layer.get_weights()[0].shape[0]
            layer.set_weights([rng.uniform(0.5, 2, n), rng.normal(0, 0.5, n), rng.normal(0, 0.5, n), rng.uniform(0.2, 3, n)])
    x = rng.random((8, 16, 16, 3), dtype=np.float32)
    folded = surgery.fold_batchnorm(model)
    assert len(folded.layers) < len(model.layers) - 10
    x64 = x.astype(np.float64)
    m64 = surgery.to_float64(model)
    np.testing.assert_allclose(surgery.fold_batchnorm(m64).predict(x64, verbose=0), m64.predict(x64, verbose=0),
                               atol=1e-9)
    np.testing.assert_allclose(folded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-4)
    # a wrong fold (BN applied twice, or to the wrong channel) is off by far more than that
    broken = surgery.fold_batchnorm(model)
    k = broken.get_layer("s0b0_pw").get_weights()
    broken.get_layer("s0b0_pw").set_weights([k[0][..., ::-1], k[1]])
    assert np.abs(broken.predict(x, verbose=0) - model.predict(x, verbose=0)).max() > 1e-2
