"""Latency tables, the cost model and the budget chooser (shrink.target: latency / macs).

No test asserts a latency: timing is the subject of benchmarks and reports. What is asserted is
structure (every kernel layer tabled, the cache reused, the prediction's fixed part) and exact
arithmetic (interpolation, widths after removing classes, MACs, the chooser's optimum).
"""

from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import pytest

from helpers import params
from train2infer.core.params import ParamError
from train2infer.models.cost import Block, Cost, Table
from train2infer.shrink.budget import Option, greedy


def test_table_is_bilinear_between_grid_points_and_constant_along_a_single_point_axis():
    t = Table([8, 16], [8, 24], [[1.0, 3.0], [2.0, 6.0]])
    assert t.at(8, 8) == 1.0 and t.at(16, 24) == 6.0
    assert t.at(12, 8) == pytest.approx(1.5) and t.at(8, 16) == pytest.approx(2.0)
    assert t.at(12, 16) == pytest.approx((1.0 + 3.0 + 2.0 + 6.0) / 4)  # the centre: mean of the corners
    assert t.at(40, 40) == 6.0  # outside: the nearest edge
    fixed_out = Table([8, 16], [10], [[1.0], [3.0]])
    assert fixed_out.at(12, 4) == pytest.approx(2.0)


def test_cost_counts_the_positions_each_removed_class_holds():
    """A Dense after Flatten holds H x W positions per channel class: removing one class of 4
    channels on a 2x2 map lowers its input width by 4."""
    flat = Block("dense", "Dense", 16, 10, {c: 4 for c in range(4)}, {c: 1 for c in range(10, 20)})
    conv = Block("conv", "Conv2D", 3, 4, {100: 3}, {c: 1 for c in range(4)})
    tables = {"dense": Table([0, 16], [10], [[0.0], [16.0]]), "conv": Table([3], [0, 4], [[0.0, 4.0]])}
    cost = Cost([flat, conv], tables, fixed=1.0)
    full = cost.widths()
    assert full.tolist() == [[16, 10], [3, 4]] and cost.total(full) == 1.0 + 16 + 4
    cut = cost.widths({2})
    assert cut.tolist() == [[12, 10], [3, 3]] and cost.total(cut) == pytest.approx(1.0 + 12 + 3)
    assert cost.remove(full, [2]).tolist() == cut.tolist()


def three_groups():
    """Groups a, b, c of two classes; each class costs 10, 1 and 5 ms; importances below."""
    groups = {"a": ([0, 1], [5.0, 1.0]), "b": ([2, 3], [0.1, 0.05]), "c": ([4, 5], [3.0, 0.5])}
    per = {"a": 10.0, "b": 1.0, "c": 5.0}
    blocks = [Block(g, "Conv2D", 1, 2, {}, {c: 1 for c in classes}) for g, (classes, _) in groups.items()]
    tables = {g: Table([1], [0, 2], [[0.0, 2 * per[g]]]) for g in groups}
    options = [Option(g, classes, np.array(scores), 1) for g, (classes, scores) in groups.items()]
    return options, Cost(blocks, tables), {c: s for classes, scores in groups.values() for c, s in zip(classes, scores)}


def test_the_chooser_finds_the_known_optimum_of_a_hand_built_three_group_example():
    """32 ms, budget 20. Cutting b first is cheapest per ms (0.05 per ms) but does not help enough;
    the optimum drops a's and c's weakest classes (importance 1.5 lost, 15 ms saved), and b keeps
    both: the cut of b the budget no longer needs is given back."""
    options, cost, score = three_groups()
    removed, trace = greedy(options, cost, budget=20.0, round_to=1)
    best = min((set(s) for n in range(4) for s in itertools.combinations([1, 3, 5], n)
                if cost.total(cost.widths(set(s))) <= 20.0), key=lambda s: sum(score[c] for c in s))
    assert removed == best == {1, 5}
    assert trace["reached"] and trace["cost_before"] == 32.0 and trace["cost_after"] == pytest.approx(17.0)


def test_the_chooser_trades_a_cut_for_a_cheaper_one_when_greedy_is_left_with_slack():
    """42 ms, budget 30. By price greedy cuts a (0.2 per ms) then b (0.21): 25 ms, 3.5 lost, and no
    cut can be given back. Trading b's cut for c's (1.0 lost, not 1.5) keeps 28 ms: the optimum."""
    groups = {"a": ([0, 1], [5.0, 2.0]), "b": ([2, 3], [5.0, 1.5]), "c": ([4, 5], [5.0, 1.0])}
    per = {"a": 10.0, "b": 7.0, "c": 4.0}
    blocks = [Block(g, "Conv2D", 1, 2, {}, {c: 1 for c in classes}) for g, (classes, _) in groups.items()]
    cost = Cost(blocks, {g: Table([1], [0, 2], [[0.0, 2 * per[g]]]) for g in groups})
    options = [Option(g, classes, np.array(scores), 1) for g, (classes, scores) in groups.items()]
    score = {c: s for classes, scores in groups.values() for c, s in zip(classes, scores)}
    removed, trace = greedy(options, cost, budget=30.0, round_to=1)
    best = min((set(s) for n in range(4) for s in itertools.combinations([1, 3, 5], n)
                if cost.total(cost.widths(set(s))) <= 30.0), key=lambda s: sum(score[c] for c in s))
    assert removed == best == {1, 5} and trace["cost_after"] == pytest.approx(28.0)
    assert [s["group"] for s in trace["steps"]] == ["a", "c"]


def test_the_chooser_stops_at_every_floor_when_the_budget_cannot_be_met():
    options, cost, _ = three_groups()
    removed, trace = greedy(options, cost, budget=1.0, round_to=1)
    assert removed == {1, 3, 5} and not trace["reached"] and trace["cost_after"] == pytest.approx(16.0)
    assert trace["stopped"] == "floors"
    assert greedy(options, cost, budget=20.0, round_to=1)[1]["stopped"] == "budget"


def test_the_chooser_says_when_the_tables_predict_no_saving_above_the_floors():
    """Measured tables of a tiny model can say a narrower layer is not faster: the chooser stops
    there (it never cuts for nothing) and says why, rather than claiming every group hit its floor."""
    options, cost, _ = three_groups()
    cost.tables["a"] = Table([1], [0, 1, 2], [[0.0, 25.0, 20.0]])  # a at one channel: slower than at two
    removed, trace = greedy(options, cost, budget=1.0, round_to=1)
    assert removed == {3, 5} and not trace["reached"] and trace["stopped"] == "no saving"


def test_macs_tables_predict_the_sliced_models_macs_exactly(trained, digits):
    """MACs are bilinear in the widths, so the tables (two points per axis) are exact: the predicted
    MACs of a budget plan equal the MACs of the model sliced by it."""
    from train2infer.models import groups, latency, work
    from train2infer.shrink import channels

    x = digits[0]["train"][0][:64].astype(np.float32) / 255
    dense_deps = groups.dependencies(trained)
    dense = latency.cost(trained, dense_deps, latency.macs_tables(trained, dense_deps, 2, 2, 2))
    assert dense.total(dense.widths()) == pytest.approx(work.total_macs(work.layer_macs(trained)), rel=1e-3)

    def cost_of(deps):
        return latency.cost(trained, deps, latency.macs_tables(trained, deps, 2, 2, 2))

    budget = 0.5 * dense.total(dense.widths())
    chosen, trace = channels.plan_budget(trained, x, "l1", cost_of, budget, 2, (), 2)
    cut = groups.slice_model(trained, chosen.deps, chosen.removed)
    assert trace["reached"] and trace["cost_after"] <= budget
    assert trace["cost_after"] == pytest.approx(work.total_macs(work.layer_macs(cut)), rel=1e-3)


def test_every_kernel_layer_is_tabled_and_the_cache_is_reused(tmp_path, trained):
    """Real LiteRT timing of one-layer models: a table per kernel layer on its grid, the whole
    model's fixed part = measured - sum of layers; a second run converts nothing and scales the
    cache by the re-timed probe."""
    from train2infer.models import groups, io, latency

    deps = groups.dependencies(trained)
    whole = {"dense": io.to_tflite(trained, "float")}
    first = latency.measure(trained, deps, "float", 4, 4, 2, tmp_path / "c.json", whole, seconds=0.2)
    kernel_layers = [b.name for b in latency.blocks(trained, deps)]
    assert set(first["tables"]) == set(kernel_layers) == {"s0c0_conv", "s1c0_conv", "hidden", "logits"}
    conv = first["tables"]["s1c0_conv"]
    # s1c0 reads 8 channels (2 widths) and writes 16 (4 widths <= 2 x grid_points 2: all of them)
    assert conv.cin == [4, 8] and conv.cout == [4, 8, 12, 16] and first["tables"]["logits"].cout == [10]
    assert first["tables"]["s0c0_conv"].cin == [1]  # the image's channel is pinned
    assert first["measured"] == sum(len(t.cin) * len(t.cout) for t in first["tables"].values())
    cached = json.loads((tmp_path / "c.json").read_text())
    assert len(cached["entries"]) == first["measured"] and cached["machine"] == latency.fingerprint(1)
    assert "cpu_id" in cached["machine"]  # the generation, not only "AMD EPYC"
    again = latency.measure(trained, deps, "float", 4, 4, 2, tmp_path / "c.json", whole, seconds=0.2)
    assert again["measured"] == 0 and again["cached"] == first["measured"] and again["scale"] > 0
    assert again["drift"]["probes"] == min(latency.PROBES, first["measured"]) and again["drift"]["factor"] > 0
    stale = dict(cached, machine={**cached["machine"], "cpu": "another CPU"})
    (tmp_path / "c.json").write_text(json.dumps(stale))
    assert latency.load_cache(tmp_path / "c.json", 1) == {}


def test_micro_models_cut_out_the_layer_itself(trained):
    """A one-layer model keeps the layer's kernel, stride and input size, at the asked widths."""
    from train2infer.models import latency

    layer = trained.get_layer("s1c0_conv")
    m = latency.micro(layer, 4, 12)
    assert m.input_shape == (1, *layer.input_shape[1:-1], 4) and m.output_shape[-1] == 12
    np.testing.assert_array_equal(m.layers[-1].get_weights()[0], layer.get_weights()[0][:, :, :4, :12])
    assert m.layers[-1].strides == layer.strides and m.layers[-1].kernel_size == layer.kernel_size


@pytest.mark.slow
def test_shrink_with_a_macs_budget_meets_it(tmp_path, tiny, prepared, trained_file):
    from train2infer.models import io, work
    from train2infer.shrink.run import run

    cfg = dataclasses.replace(tiny.shrink, target="macs", budget=0.4, epochs=0, round_to=2, min_channels=2)
    summary = run(cfg, tiny.train, tiny.seed, prepared, trained_file, tmp_path / "s.keras", tmp_path / "r",
                  tmp_path / "cache.json")
    shrunk = io.load_model(tmp_path / "s.keras")
    assert work.total_macs(work.layer_macs(shrunk)) <= 0.4 * summary["macs_before"]
    assert summary["target"] == "macs" and summary["budget"] == 0.4
    assert json.loads((tmp_path / "r" / "latency.json").read_text())["timed"] is False


@pytest.mark.slow
def test_shrink_with_a_latency_budget_reports_prediction_beside_measurement(tmp_path, tiny, prepared, trained_file):
    from train2infer.shrink.run import describe, run

    cfg = dataclasses.replace(tiny.shrink, target="latency", budget=0.5, epochs=0, grid_points=2, round_to=2,
                              min_channels=2)
    summary = run(cfg, tiny.train, tiny.seed, prepared, trained_file, tmp_path / "s.keras", tmp_path / "r",
                  tmp_path / "cache.json")
    report = json.loads((tmp_path / "r" / "latency.json").read_text())
    assert report["timed"] and report["target"]["kind"] == "latency"
    step, aim = report["target"]["steps"][0], report["target"]
    assert aim["budget"] == pytest.approx(0.5 * aim["dense"]) and aim["unit"] == "ms"
    if step["reached"]:
        assert step["cost_after"] <= aim["budget"] * (1 + 1e-9)
    else:  # the fixed part of a tiny model can exceed half its time: then every free group is at its floor
        groups = json.loads((tmp_path / "r" / "channels.json").read_text())["groups"]
        at_floor = [g["kept"] == 2 for g in groups if not g["pinned"]]
        # every free group at its floor, or (tables measured on a busy machine) no cut predicted faster
        assert all(at_floor) if step["stopped"] == "floors" else step["stopped"] == "no saving" and not all(at_floor)
    for name in ("dense", "shrunk"):
        m = report["models"][name]
        assert m["measured_ms"] > 0 and m["error"] == pytest.approx(m["predicted_ms"] / m["measured_ms"] - 1)
    assert report["models"]["dense"]["error"] == pytest.approx(0, abs=1e-9)  # the reference of the drift
    assert {r["layer"] for r in report["layers"]} == {"s0c0_conv", "s1c0_conv", "hidden", "logits"}
    assert any(r["shrunk_widths"] != r["dense_widths"] for r in report["layers"])
    assert "latency budget 0.5" in describe(summary) and "measured" in describe(summary)


@pytest.mark.parametrize("overrides, key", [
    (["shrink.target=latency", "shrink.criterion=dead"], "target"),
    (["shrink.budget_ms=2.0"], "budget_ms"),
    (["shrink.target=latency", "shrink.budget_ms=-1.0"], "budget_ms"),
    (["shrink.target=speed"], "target"),
    (["shrink.budget=0"], "budget"),
])
def test_budget_settings_the_model_cannot_take_are_refused(overrides, key):
    with pytest.raises(ParamError, match=f"shrink.{key}"):
        params(overrides)


def test_calibration_makes_the_dense_prediction_its_measured_time():
    """What the tables miss (adds, pooling, copies) is spread over the layers in proportion: the
    dense model's prediction is its measured time, a cut model's falls with its layers."""
    from train2infer.models import latency

    blocks = [Block("a", "Conv2D", 1, 2, {}, {0: 1, 1: 1}), Block("b", "Conv2D", 2, 1, {0: 1, 1: 1}, {})]
    tables = {"a": Table([1], [0, 2], [[0.0, 1.0]]), "b": Table([0, 2], [1], [[0.0], [2.0]])}
    scaled, k, quadratic = latency.calibrate(tables, [1.0, 2.0], whole_ms=6.5, overhead_ms=0.5)
    assert k == 2.0 and quadratic == 0.0
    assert scaled["b"].values == [[0.0], [4.0]] and tables["b"].values == [[0.0], [2.0]]
    cost = Cost(blocks, scaled, fixed=0.5)
    assert cost.total(cost.widths()) == pytest.approx(6.5)
    assert cost.total(cost.widths({1})) == pytest.approx(0.5 + 1.0 + 2.0)  # half of each layer


def test_cut_models_timed_whole_fit_what_shrinks_faster_than_the_layers():
    """Cut models timed whole beside the dense one fit a term in the square of the layers' sum
    (the dense model stays exact): a model whose whole time is ``S + 0.25 S**2`` is recovered from
    two cuts and a third width, not in the fit, is predicted within 1 %; cuts that proportion
    already predicts within the noise leave the term at 0."""
    from train2infer.models import latency

    tables = {"a": Table([1, 2, 3, 4], [1], [[0.1], [0.25], [0.4], [0.6]]),
              "b": Table([1, 2, 3, 4], [1], [[0.05], [0.2], [0.5], [0.9]])}
    blocks = [Block(n, "Conv2D", 4, 1, {c: 1 for c in range(4)}, {}) for n in tables]
    col = {i: [t.values[i][0] for t in tables.values()] for i in range(4)}
    truth = {i: 0.1 + sum(col[i]) + 0.25 * sum(col[i]) ** 2 for i in range(4)}
    scaled, k, quadratic = latency.calibrate(tables, col[3], truth[3], 0.1, [(col[1], truth[1]), (col[2], truth[2])])
    assert k == pytest.approx(1.0, abs=0.02) and quadratic == pytest.approx(0.25, rel=0.05)
    cost = Cost(blocks, scaled, 0.1, quadratic)
    assert cost.total(cost.widths()) == pytest.approx(truth[3])
    assert cost.total(cost.widths({1, 2, 3})) == pytest.approx(truth[0], rel=0.01)
    assert sum(cost.shares(cost.widths()).values()) == pytest.approx(truth[3] - 0.1)
    proportional = Cost(blocks, latency.calibrate(tables, col[3], truth[3], 0.1)[0], 0.1)
    assert proportional.total(proportional.widths({1, 2, 3})) > 1.15 * truth[0]  # what proportion missed
    near = [(col[1], 0.1 + 1.02 * 2 * sum(col[1])), (col[2], 0.1 + 0.98 * 2 * sum(col[2]))]  # +-2 %: noise
    assert latency.calibrate(tables, col[3], 0.1 + 2 * sum(col[3]), 0.1, near)[1:] == pytest.approx((2.0, 0.0))


def test_cached_tables_follow_the_machine_by_a_power_law_fitted_to_spread_probes():
    """The probes span the cached costs (not only the costliest); a drift that speeds small layers
    up more than large ones is recovered, and few or similar probes fall back to one ratio."""
    from train2infer.models import latency

    entries = {f"k{i}": 0.001 * 1.1 ** i for i in range(60)} | {"zero": 0.0}
    probes = latency.pick_probes(entries, list(entries))
    costs = [entries[k] for k in probes]
    assert len(probes) == latency.PROBES and "zero" not in probes and costs == sorted(costs)
    assert costs[-1] == max(entries.values()) and costs[0] < 0.01 * costs[-1]
    factor, exponent = latency.fit_drift(costs, [0.7 * c ** 1.05 for c in costs])
    assert exponent == pytest.approx(1.05) and factor == pytest.approx(0.7)
    assert latency.fit_drift([0.1, 0.12], [0.05, 0.06]) == pytest.approx((0.5, 1.0))
    assert latency.fit_drift([], []) == (1.0, 1.0)
    assert latency.fit_drift(costs, [3 * c ** 2 for c in costs])[1] == 1.25  # clipped: noise, not a machine


def test_an_axis_with_few_widths_is_measured_at_every_one_and_a_long_one_at_grid_points():
    """Widths are multiples of round_to from the floor to the full width; an axis of at most
    2 x grid_points such widths gets all of them (interpolation would miss kernel-tile effects),
    a longer one grid_points of them, both ends included; a pinned axis only its full width."""
    from train2infer.models.latency import axis

    assert axis(64, 64, True, 8, 4, 5) == [8, 16, 24, 32, 40, 48, 56, 64]
    assert axis(30, 30, True, 8, 4, 5) == [8, 16, 24, 30]
    long = axis(96, 96, True, 8, 4, 5)
    assert len(long) == 5 and long[0] == 8 and long[-1] == 96 and all(w % 8 == 0 for w in long)
    assert axis(64, 64, False, 8, 4, 5) == [64]
    assert axis(64, 16, True, 4, 4, 5) == [16, 32, 48, 64]  # 16 classes of 4 positions: steps of 4 classes
