"""shrink: channel pruning that removes work, on real trained models."""

from __future__ import annotations

import numpy as np
import pytest

import json

from train2infer import Train2InferError
from train2infer.models import graph, io, work
from train2infer.prepared import to_float
from train2infer.shrink import channels


def _kill(model, layer_bn: str, channels) -> None:
    """Make channels dead for every input: BN scale 0 and a negative shift before the ReLU."""
    bn = model.get_layer(layer_bn)
    gamma, beta, mean, var = bn.get_weights()
    gamma[channels], beta[channels] = 0.0, -1.0
    bn.set_weights([gamma, beta, mean, var])


def test_removing_only_dead_channels_keeps_the_outputs(trained, digits):
    splits, _ = digits
    model = io.clone(trained)
    _kill(model, "s0c0_bn", [1, 5])
    _kill(model, "s1c0_bn", [0, 3, 9])
    x = to_float(splits["train"][0])
    plan = channels.plan(model, x, "dead", keep=1.0)
    dead = {n: e["width"] - len(e["keep"]) for n, e in plan.items()}
    assert dead["s0c0_conv"] >= 2 and dead["s1c0_conv"] >= 3
    assert not {1, 5} & set(plan["s0c0_conv"]["keep"].tolist())
    shrunk = graph.slice_channels(model, {n: e["keep"] for n, e in plan.items()})
    widths = graph.widths(shrunk)
    assert widths == {n: len(e["keep"]) for n, e in plan.items()} | {"logits": 10}
    assert shrunk.get_layer("s0c0_bn").get_weights()[0].shape == (widths["s0c0_conv"],)
    assert shrunk.get_layer("s1c0_conv").get_weights()[0].shape[2] == widths["s0c0_conv"]  # next layer's inputs
    x_test = to_float(splits["test"][0])
    np.testing.assert_allclose(shrunk.predict(x_test, verbose=0), model.predict(x_test, verbose=0), atol=1e-5)
    macs = lambda m: sum(r["macs"] for r in work.layer_macs(m))  # noqa: E731
    assert macs(shrunk) < macs(model)


@pytest.mark.parametrize("criterion", ["l1", "l2"])
def test_norm_criteria_keep_the_requested_widths(trained, digits, criterion):
    splits, _ = digits
    x = to_float(splits["train"][0][:500])
    plan = channels.plan(trained, x, criterion, keep=0.5, min_channels=2, exclude=["hidden"])
    assert set(plan) == {"s0c0_conv", "s1c0_conv"}  # hidden excluded, the classifier never pruned
    shrunk = graph.slice_channels(trained, {n: e["keep"] for n, e in plan.items()})
    assert graph.widths(shrunk) == {"s0c0_conv": 4, "s1c0_conv": 8, "hidden": 32, "logits": 10}
    # the kept filters are exactly the surviving weights of the original
    k0 = trained.get_layer("s0c0_conv").get_weights()[0]
    np.testing.assert_array_equal(shrunk.get_layer("s0c0_conv").get_weights()[0], k0[..., plan["s0c0_conv"]["keep"]])
    norms = channels.channel_norms(channels.producers(trained)[0], 1 if criterion == "l1" else 2)
    kept = plan["s0c0_conv"]["keep"]
    dropped = np.setdiff1d(np.arange(8), kept)
    alive = np.flatnonzero(channels.channel_activity(trained, channels.producers(trained)[:1], x)["s0c0_conv"] > 0)
    assert norms[kept].min() >= norms[np.intersect1d(dropped, alive)].max(initial=0)


def test_channel_pruning_refuses_what_it_cannot_follow():
    import tf_keras as keras

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, name="c")(inputs)
    x = keras.layers.Flatten(name="flat")(x)
    outputs = keras.layers.Dense(2, name="out")(keras.layers.Dense(3, name="d")(x))
    with pytest.raises(Train2InferError, match="cannot prune channels of c: flat"):
        channels.producers(keras.Model(inputs, outputs))
    a = keras.Input((4,))
    b = keras.layers.Dense(4)(a)
    with pytest.raises(Train2InferError, match="chain model"):
        graph.chain(keras.Model(a, keras.layers.Add()([a, b])))




@pytest.mark.slow
def test_shrink_run_writes_a_smaller_model_and_its_reports(tmp_path, tiny, prepared, trained_file):
    from train2infer.shrink.run import run

    summary = run(tiny.shrink, tiny.train, tiny.seed, prepared, trained_file, tmp_path / "s.keras", tmp_path / "r")
    trained, shrunk = io.load_model(trained_file), io.load_model(tmp_path / "s.keras")
    assert summary["chief"] and summary["criterion"] == "l1"
    assert summary["macs_before"] == work.total_macs(work.layer_macs(trained))
    assert summary["macs_after"] == work.total_macs(work.layer_macs(shrunk)) < summary["macs_before"]
    assert summary["params_after"] == shrunk.count_params() < trained.count_params()
    layers = json.loads((tmp_path / "r" / "channels.json").read_text())["layers"]
    assert {n: e["kept"] for n, e in layers.items()} == {n: w for n, w in graph.widths(shrunk).items() if n in layers}
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["flops_ratio"] == pytest.approx(summary["macs_before"] / summary["macs_after"])
    assert (tmp_path / "r" / "plots" / "metrics" / "val" / "accuracy.tsv").is_file()  # one fine-tuning epoch


def test_shrink_off_passes_the_trained_model_on(tmp_path, tiny, prepared, trained_file):
    import dataclasses

    from train2infer.shrink.run import run

    off = dataclasses.replace(tiny.shrink, criterion="none")
    summary = run(off, tiny.train, tiny.seed, prepared, trained_file, tmp_path / "s.keras", tmp_path / "r")
    assert summary["criterion"] == "none"
    assert (tmp_path / "s.keras").read_bytes() == trained_file.read_bytes()
    assert json.loads((tmp_path / "r" / "channels.json").read_text()) == {"layers": {}, "skipped": "shrink.criterion=none"}
    rows = (tmp_path / "r" / "plots" / "metrics" / "val" / "accuracy.tsv").read_text().splitlines()  # declared output
    assert len(rows) == 2 and float(rows[1].split("\t")[-1]) == pytest.approx(summary["val"]["accuracy"])
