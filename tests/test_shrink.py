"""shrink: channel pruning that removes work, on real trained models."""

from __future__ import annotations

import json

import numpy as np
import pytest

from train2infer.models import graph, groups, io, work
from train2infer.prepared import to_float
from train2infer.shrink import channels


def _kill(model, layer_bn: str, channels) -> None:
    """Make channels dead for every input: BN scale 0 and a negative shift before the ReLU."""
    bn = model.get_layer(layer_bn)
    gamma, beta, mean, var = bn.get_weights()
    gamma[channels], beta[channels] = 0.0, -1.0
    bn.set_weights([gamma, beta, mean, var])


def _widths(model) -> dict[str, int]:
    return {layer.name: layer.output_shape[-1] for layer in model.layers if groups.is_reader(layer)}


def test_removing_only_dead_channels_keeps_the_outputs(trained, digits):
    """The chain CNN is one case of the general grouping: each conv's channels are one group."""
    splits, _ = digits
    model = io.clone(trained)
    _kill(model, "s0c0_bn", [1, 5])
    _kill(model, "s1c0_bn", [0, 3, 9])
    x = to_float(splits["train"][0])
    chosen = channels.plan(model, x, "dead", keep=1.0)
    rows = {r["name"]: r for r in chosen.groups}
    assert rows["s0c0_conv"]["dead"] >= 2 and rows["s1c0_conv"]["dead"] >= 3
    assert rows["s0c0_conv"]["tensors"] == ["s0c0_conv", "s0c0_bn", "s0c0_relu", "s0_pool"]
    assert not {1, 5} & set(np.flatnonzero(chosen.deps.kept(chosen.removed)["s0c0_conv"] == 0))
    shrunk = groups.slice_model(model, chosen.deps, chosen.removed)
    widths = _widths(shrunk)
    assert widths == {n: r["kept"] for n, r in rows.items() if not r["pinned"]} | {"logits": 10}
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
    chosen = channels.plan(trained, x, criterion, keep=0.5, min_channels=2, exclude=["hidden"])
    rows = {r["name"]: r for r in chosen.groups}
    assert rows["hidden"]["pinned"] == "shrink.exclude matches 'hidden'"
    assert rows["logits"]["pinned"] == "logits: the model's output"  # the classifier is never pruned
    shrunk = groups.slice_model(trained, chosen.deps, chosen.removed)
    assert _widths(shrunk) == {"s0c0_conv": 4, "s1c0_conv": 8, "hidden": 32, "logits": 10}
    # the kept filters are exactly the surviving weights of the original, the ones with the largest norms
    kept = chosen.deps.kept(chosen.removed)["s0c0_conv"]
    k0 = trained.get_layer("s0c0_conv").get_weights()[0]
    np.testing.assert_array_equal(shrunk.get_layer("s0c0_conv").get_weights()[0], k0[..., kept])
    bn = graph.bn_scale(trained.get_layer("s0c0_bn"))
    norms = channels.filter_norms(trained.get_layer("s0c0_conv"), 1 if criterion == "l1" else 2, bn)
    deps = chosen.deps
    alive = channels.alive_classes(trained, deps, x)
    live = np.array([c in alive for c in deps.index["s0c0_conv"]])
    dropped = np.setdiff1d(np.flatnonzero(live), kept)
    assert norms[kept].min() >= norms[dropped].max(initial=0)


def test_kept_widths_round_up_to_a_multiple_and_global_ranking_spreads_the_cut(trained, digits):
    x = to_float(digits[0]["train"][0][:200])
    for keep, round_to in [(0.3, 1), (0.3, 4), (0.6, 8)]:
        rows = {r["name"]: r for r in channels.plan(trained, x, "l1", keep, 1, (), round_to).groups}
        for name, width in {"s0c0_conv": 8, "s1c0_conv": 16, "hidden": 32}.items():
            live = width - rows[name]["dead"]
            want = min(width, -(-min(live, round(keep * width)) // round_to) * round_to)
            assert rows[name]["kept"] == want, (keep, round_to, name)
    chosen = channels.plan(trained, x, "l1", 0.5, 3, (), 1, "global")
    free = [r for r in chosen.groups if not r["pinned"]]
    assert all(r["kept"] >= 3 for r in free)  # no group emptied
    assert sum(r["kept"] for r in free) == pytest.approx(0.5 * sum(r["width"] for r in free), abs=3)


def test_a_graph_without_removable_channels_is_passed_on(tmp_path, tiny, prepared, trained_file):
    import dataclasses

    from train2infer.shrink.run import run

    everything = dataclasses.replace(tiny.shrink, exclude=["*"])
    summary = run(everything, tiny.train, tiny.seed, prepared, trained_file, tmp_path / "s.keras", tmp_path / "r")
    assert summary["skipped"].startswith("no channel can be removed")
    assert (tmp_path / "s.keras").read_bytes() == trained_file.read_bytes()
    report = json.loads((tmp_path / "r" / "channels.json").read_text())
    assert all(g["pinned"] for g in report["groups"]) and report["skipped"] == summary["skipped"]


@pytest.mark.slow
def test_shrink_run_writes_a_smaller_model_and_its_reports(tmp_path, tiny, prepared, trained_file):
    from train2infer.shrink.run import run

    summary = run(tiny.shrink, tiny.train, tiny.seed, prepared, trained_file, tmp_path / "s.keras", tmp_path / "r")
    trained, shrunk = io.load_model(trained_file), io.load_model(tmp_path / "s.keras")
    assert summary["chief"] and summary["criterion"] == "l1"
    assert summary["macs_before"] == work.total_macs(work.layer_macs(trained))
    assert summary["macs_after"] == work.total_macs(work.layer_macs(shrunk)) < summary["macs_before"]
    assert summary["params_after"] == shrunk.count_params() < trained.count_params()
    report = json.loads((tmp_path / "r" / "channels.json").read_text())
    assert {g["name"]: g["kept"] for g in report["groups"] if g["sources"]} == _widths(shrunk)
    assert report["pinned"] == {"image": "the model's input"}
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
    assert json.loads((tmp_path / "r" / "channels.json").read_text()) == {"groups": [], "pinned": {},
                                                                          "skipped": "shrink.criterion=none"}
    rows = (tmp_path / "r" / "plots" / "metrics" / "val" / "accuracy.tsv").read_text().splitlines()  # declared output
    assert len(rows) == 2 and float(rows[1].split("\t")[-1]) == pytest.approx(summary["val"]["accuracy"])


def test_gradual_shrinking_cuts_in_steps_and_logs_one_curve(tmp_path, tiny, prepared, trained_file):
    """steps=2: two cuts of keep^(1/2) each (rounding as one cut does), each fine-tuned (distilled),
    their epochs on one curve; the final widths are those of the last step's plan."""
    import dataclasses

    from train2infer.shrink.run import run

    gradual = dataclasses.replace(tiny.shrink, keep=0.25, steps=2, epochs=2, round_to=1, min_channels=1,
                                  distill_weight=0.5)
    assert gradual.step_keep() == pytest.approx(0.5) and gradual.step_epochs() == [1, 1]
    summary = run(gradual, tiny.train, tiny.seed, prepared, trained_file, tmp_path / "s.keras", tmp_path / "r")
    shrunk = io.load_model(tmp_path / "s.keras")
    assert _widths(shrunk) == {"s0c0_conv": 2, "s1c0_conv": 4, "hidden": 8, "logits": 10}  # 8 -> 4 -> 2, 16 -> 8 -> 4
    assert summary["steps"] == 2 and summary["distill_weight"] == 0.5
    curve = (tmp_path / "r" / "plots" / "metrics" / "val" / "accuracy.tsv").read_text().splitlines()
    assert [ln.split("\t")[0] for ln in curve[1:]] == ["0", "1"]  # step 2's epoch follows step 1's
    assert "in 2 steps" in __import__("train2infer.shrink.run", fromlist=["describe"]).describe(summary)
