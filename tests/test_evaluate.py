"""evaluate: latency statistics, sizes, and the metrics.json arithmetic."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from train2infer import litert, timing
from train2infer.convert import tflite
from train2infer.core.variants import Variant
from train2infer.evaluate import metrics as M, worker
from train2infer.models import work


def test_the_timed_calls_return_the_model_output(trained, digits):
    splits, _ = digits
    content = tflite.to_tflite(trained, "float")
    x1 = splits["test"][0][:1].astype(np.float32) / 255
    call = litert.runner(litert.interpreter(content), x1)
    np.testing.assert_allclose(call()[0], litert.predict(content, x1)[0], atol=1e-6)
    keras_out = trained.predict(x1, verbose=0)
    np.testing.assert_allclose(call(), keras_out, atol=1e-4)


def test_sizes_of_files_and_folders(tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"\x00" * 10000)
    assert M.size_bytes(f) == 10000
    assert M.gzip_bytes(f) == len(gzip.compress(b"\x00" * 10000, 9, mtime=0))
    d = tmp_path / "dir"
    (d / "sub").mkdir(parents=True)
    (d / "x").write_bytes(b"abc" * 100)
    (d / "sub" / "y").write_bytes(np.random.default_rng(0).bytes(5000))
    assert M.size_bytes(d) == 5300
    assert 5000 < M.gzip_bytes(d) < 5300 + 2048
    assert M.gzip_bytes(d) == M.gzip_bytes(d)  # deterministic


def _row(acc, p50, gz):
    return M.variant_row(acc, {"p50_ms": p50, "p90_ms": p50 * 1.1, "p99_ms": p50 * 1.5}, gz * 2, gz, 0.5)


def test_metrics_ratios_are_relative_to_the_baseline():
    rows = {"base": _row(0.9, 2.0, 1000), "fast": _row(0.89, 0.5, 125), "fast_q": _row(0.87, 0.4, 100)}
    m = M.build_metrics("base", rows, {"fast_q": "fast"})
    assert m["baseline"] == "base"
    assert set(m["variants"]["fast"]) == set(M.METRIC_KEYS) - set(M.UNCERTAINTY_KEYS) - set(M.FLOOR_KEYS)  # not yet
    assert m["variants"]["fast"]["speedup_p50"] == pytest.approx(4.0)
    assert m["variants"]["fast"]["gzip_ratio"] == pytest.approx(8.0)
    assert m["variants"]["base"]["speedup_p50"] == 1.0
    assert m["variants"]["fast_q"]["accuracy_vs_float"] == pytest.approx(-0.02)  # against its float twin
    assert m["variants"]["fast"]["accuracy_vs_float"] == 0.0
    with pytest.raises(ValueError):
        M.build_metrics("missing", {"base": _row(0.9, 2.0, 1000)}, {})
    h = M.headline(m, 5.0)
    assert h == {"baseline_accuracy": 0.9, "max_drop_points": 5.0, "best_variant": "fast_q", "best_speedup_p50": 5.0,
                 "best_accuracy": 0.87, "best_speedup_ci_low": None, "best_speedup_ci_high": None,
                 "best_accuracy_verdict": None, "fastest_variant": "fast_q", "fastest_speedup_p50": 5.0,
                 "fastest_within_floor": True, "max_gzip_ratio": 10.0, "max_accuracy_drop": pytest.approx(0.03),
                 "max_accuracy_drop_upper": pytest.approx(0.03)}  # no interval measured: the drop itself
    h = M.headline(m, 1.0)  # fast_q loses 3 points: outside a 1-point floor, fast (1 point) inside
    assert (h["best_variant"], h["best_speedup_p50"], h["fastest_variant"], h["fastest_within_floor"]) == \
        ("fast", 4.0, "fast_q", False)
    points = M.tradeoff_points(m)
    assert [p["variant"] for p in points] == ["base", "fast", "fast_q"]


def test_summary_statistics():
    s = timing.summarize([1.0, 1.0, 1.0, 5.0])
    assert s["p50_ms"] == 1.0 and s["runs"] == 4
    assert s["mean_ms"] == 2.0
    assert s["cv"] == pytest.approx(np.std([1, 1, 1, 5]) / 2.0)


def test_interleaved_rounds_rotate_the_order():
    order = []
    calls = {n: (lambda n=n: order.append(n)) for n in "abc"}
    stats = timing.interleaved_latency(calls, warmup_runs=1, min_runs=6, min_seconds=0, runs_per_round=2)
    timed = order[3:]  # after one warm-up call each
    blocks = [timed[i] for i in range(0, len(timed), 2)]
    assert blocks == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert all(s["runs"] == 6 and s["rounds"] == 3 for s in stats.values())


def test_saturation_batch():
    assert timing.saturation_batch({1: 100, 4: 300, 16: 390, 64: 400}) == 16
    assert timing.saturation_batch({1: 100, 4: 300, 16: 350, 64: 600}) is None  # still growing
    assert timing.saturation_batch({1: 100}) == 1
    assert timing.saturation_batch({}) is None  # no sweep at this thread count


def test_layer_macs_are_counted_exactly():
    import tf_keras as keras

    inp = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="c")(inp)
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", name="d")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(3, name="f")(x)
    m = keras.Model(inp, out)
    w = m.get_layer("c").get_weights()
    w[0][..., :2] = 0  # half the filters are zero
    m.get_layer("c").set_weights(w)
    rows = {r["layer"]: r for r in work.layer_macs(m)}
    assert rows["c"]["macs"] == 8 * 8 * 4 * 3 * 3 * 2
    assert rows["d"]["macs"] == 4 * 4 * 4 * 3 * 3
    assert rows["f"]["macs"] == 4 * 3
    assert rows["c"]["nonzero"] == pytest.approx(0.5)


@pytest.mark.slow
def test_the_shipped_peak_models_are_the_convolutions_the_peaks_are_computed_for():
    """Evaluate times the GEMM peak models shipped in the package (no conversion per run): every
    shape and mode is there, as one convolution of that shape, in that precision."""
    from train2infer.evaluate import peaks

    shipped = sorted(p.name for p in peaks.SHIPPED.glob("*.tflite"))
    assert shipped == sorted(f"{peaks.model_name(*s, m)}.tflite" for s in peaks.PEAK_SHAPES
                             for modes in peaks.MODES.values() for m in modes)
    for hw, c_in, c_out, k in peaks.PEAK_SHAPES:
        for mode in ("float32", "full_int8", "dynamic"):
            interp = litert.interpreter(peaks.load(hw, c_in, c_out, k, mode))
            (inp,), (out,) = interp.get_input_details(), interp.get_output_details()
            assert list(inp["shape"]) == [1, hw, hw, c_in] and list(out["shape"]) == [1, hw, hw, c_out]
            assert inp["dtype"] == (np.int8 if mode == "full_int8" else np.float32)
            convs = [o for o in interp._get_ops_details() if o["op_name"] == "CONV_2D"]
            assert len(convs) == 1
            kernel = interp.get_tensor_details()[convs[0]["inputs"][1]]
            assert list(kernel["shape"]) == [c_out, k, k, c_in]
            assert kernel["dtype"] == (np.float32 if mode == "float32" else np.int8)


def test_the_peaks_time_every_shape_and_mode_interleaved_and_keep_the_best_per_kind():
    """One interleaved run times all six peak models; each kind's peak is its best shape's rate,
    and the 1x1 and 3x3 convolutions of each mode are both there."""
    from train2infer.evaluate import peaks

    got = peaks.matmul_peaks(1, seconds=0.1)
    assert set(got) == {"float32", "int8"}
    assert len(got["float32"]["shapes"]) == 2 and len(got["int8"]["shapes"]) == 4
    assert {n.rsplit(" ", 1)[1] for n in got["int8"]["shapes"]} == {"full_int8", "dynamic"}
    for kind in got.values():
        assert kind["gflops"] == max(kind["shapes"].values()) > 0


def test_every_variant_is_measured_in_its_own_process(tmp_path, trained, digits):
    from train2infer.models import io

    splits, _ = digits
    np.save(tmp_path / "x.npy", splits["test"][0][:8].astype(np.float32) / 255)
    io.save_for_inference(trained, tmp_path / "m.keras")
    (tmp_path / "f.tflite").write_bytes(tflite.to_tflite(trained, "float"))
    (tmp_path / "q.tflite").write_bytes(tflite.to_tflite(trained, "dynamic"))
    variants = {"keras": Variant("trained", "keras", path=str(tmp_path / "m.keras")),
                "float": Variant("trained", "tflite", "float", path=str(tmp_path / "f.tflite")),
                "int8": Variant("trained", "tflite", "dynamic", path=str(tmp_path / "q.tflite"))}
    with worker.started(variants, [1], np.load(tmp_path / "x.npy"), warmup_runs=5) as pools:
        r = worker.measure_variants(pools[1], 1, min_runs=200, min_seconds=0, runs_per_round=50, batch_sizes=[1, 4],
                                    throughput_seconds=0.05)
    assert r["rounds"] == 4
    for name, v in r["variants"].items():
        assert v["latency"]["runs"] == 200
        assert 0 < v["latency"]["p50_ms"] <= v["latency"]["p99_ms"]
        assert set(v["throughput"]) == {"1", "4"} and min(v["throughput"].values()) > 0
        # batch 1 is the rounds' back-to-back calls: 1,000 / their mean latency in ms
        assert v["throughput"]["1"] == round(1000 / v["latency"]["mean_ms"], 1)
        assert v["memory"]["peak_rss_bytes"] >= v["memory"]["runtime_rss_bytes"] > 0
    # a LiteRT process never loads TensorFlow: a fraction of the baseline's footprint
    assert r["variants"]["float"]["memory"]["peak_rss_bytes"] < r["variants"]["keras"]["memory"]["peak_rss_bytes"] / 3
    assert r["variants"]["int8"]["memory"]["activation_bytes"] > 0
    assert r["variants"]["float"]["memory"]["allocate_rss_bytes"] >= 0


@pytest.mark.slow
def test_a_sessions_workers_are_closed_before_the_next_session(tmp_path, trained, digits):
    """evaluate starts the first session's workers early; once that session is measured they must
    go: idle workers alive beside a session slow it (reports/experiments/idle-workers/)."""
    from types import SimpleNamespace

    from train2infer.evaluate import run as R

    splits, _ = digits
    x = splits["test"][0][:8].astype(np.float32) / 255
    (tmp_path / "f.tflite").write_bytes(tflite.to_tflite(trained, "float"))
    variants = [Variant("trained", "tflite", "float", path=str(tmp_path / "f.tflite"))]
    cfg = SimpleNamespace(warmup_runs=2, min_runs=200, min_seconds=0, min_seconds_others=0.3, runs_per_round=50,
                          block_warmup=1, throughput_seconds=0.05, batch_sizes=[1, 4])
    with worker.started({v.name: v for v in variants}, [1], x, cfg.warmup_runs) as pools:
        first = pools[1][variants[0].name].proc
        runs, _, _ = R.measure(variants, [1, 2], x, cfg, pools)
        assert first.poll() is not None  # exited, not left idle through the 2-thread session
    assert set(runs) == {1, 2} and runs[2]["variants"][variants[0].name]["throughput"]["4"] > 0
    # the first thread count stops at min_runs (min_seconds 0); the later one runs min_seconds_others
    assert runs[1]["rounds"] == 4 and runs[2]["rounds"] > 4


def test_a_broken_variant_fails_with_its_name(tmp_path):
    from train2infer import Train2InferError

    np.save(tmp_path / "x.npy", np.zeros((1, 4, 4, 1), np.float32))
    (tmp_path / "bad.tflite").write_bytes(b"nope")
    broken = {"broken": Variant("trained", "tflite", path=str(tmp_path / "bad.tflite"))}
    with pytest.raises(Train2InferError, match="measurement of broken failed"):
        with worker.started(broken, [1], np.load(tmp_path / "x.npy"), warmup_runs=1) as pools:
            worker.measure_variants(pools[1], 1, min_runs=200, min_seconds=0, runs_per_round=10, batch_sizes=[1],
                                    throughput_seconds=0.01)


@pytest.fixture(scope="module")
def on_disk(tmp_path_factory, trained, trained_file):
    """The trained model as every runtime reads it: .keras, SavedModel (folded), float .tflite."""
    from train2infer.convert import saved_model
    from train2infer.models import graph

    d = tmp_path_factory.mktemp("runtimes")
    saved_model.export_saved_model(graph.fold_batchnorm(trained), d / "sm")
    (d / "f.tflite").write_bytes(tflite.to_tflite(trained, "float"))
    return {"keras": str(trained_file), "saved_model": str(d / "sm"), "tflite": str(d / "f.tflite"),
            "openvino": str(d / "f.tflite")}


@pytest.mark.parametrize("fmt, precision, atol", [
    ("keras", "float", 1e-5), ("saved_model", "float", 1e-4), ("tflite", "float", 1e-4),
    ("openvino", "float", 1e-4),
    # bfloat16 keeps 8 significant bits (0.4 % per rounding), and roundings add up over the layers: 6 % of the
    # largest logit (CI saw 3.2 %); agreement of the predicted classes is asserted separately
    ("openvino", "bf16", None),
])
def test_every_runtime_computes_the_keras_function(on_disk, trained, digits, fmt, precision, atol):
    """The timed call and the accuracy pass of each runtime give Keras's logits within its precision."""
    from train2infer.core.variants import Variant
    from train2infer.evaluate import runtimes

    if precision == "bf16" and "bf16" not in runtimes.openvino_precisions():
        pytest.skip("this CPU has no BF16 units")  # the variant is then left out, and the report says why
    splits, _ = digits
    x = splits["test"][0][:32].astype(np.float32) / 255
    want = trained.predict(x, verbose=0)
    atol = atol or 0.06 * float(np.abs(want).max())
    call = runtimes.runner(fmt, on_disk[fmt], 1, precision)(x[:1])
    np.testing.assert_allclose(np.asarray(call()).reshape(want[:1].shape), want[:1], atol=atol)
    got = runtimes.predict(Variant("trained", fmt, precision, path=on_disk[fmt]), x)
    np.testing.assert_allclose(got, want, atol=atol)
    assert np.mean(np.argmax(got, -1) == np.argmax(want, -1)) >= 0.95
    if precision == "bf16":  # really bf16, not float32 under another name
        assert np.max(np.abs(got - want)) > 1e-4


def test_select_gives_each_runtime_what_it_runs():
    from train2infer.core.variants import BASELINE, Variant
    from train2infer.evaluate.run import select
    from train2infer.evaluate.runtimes import openvino_precisions

    listed = [Variant("trained", "tflite", "float", path="f"), Variant("trained", "tflite", "dynamic", path="d"),
              Variant("trained", "saved_model", path="s"), Variant("pruned", "tflite", "float", sparse=True, path="p")]
    names = lambda timed: [v.name for v in timed]  # noqa: E731
    assert names(select(BASELINE, listed, ["litert"])[0]) == [
        "trained_keras_float", "trained_tflite_float", "trained_tflite_dynamic", "pruned_tflite_float_sparse"]
    assert names(select(BASELINE, listed, ["tensorflow"])[0]) == ["trained_keras_float", "trained_saved_model_float"]
    timed, left_out = select(BASELINE, listed, ["openvino"])
    assert names(timed) == ["trained_keras_float"] + [f"trained_openvino_{p}" for p in openvino_precisions()]
    assert timed[1].path == "f" and "quantized" in " ".join(left_out)  # reads the float .tflite


def test_openvino_asked_for_but_not_installed_is_one_clear_line(monkeypatch):
    import importlib.util

    from helpers import compose
    from train2infer import config
    from train2infer.core.params import ParamError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    with pytest.raises(ParamError, match=r"evaluate.runtimes=.*openvino, which is not installed: pip install"):
        config.section(compose(["evaluate.runtimes=[litert,openvino]"]), "evaluate")


@pytest.mark.slow
def test_evaluate_run_measures_what_the_manifest_lists(tmp_path, tiny, prepared, trained, trained_file):
    """evaluate.run: the baseline plus every variant of the manifest a listed runtime runs
    (LiteRT and TensorFlow by default), accuracy recomputed per variant on its own runtime, ratios
    against the baseline."""
    import json

    from train2infer.convert import saved_model
    from train2infer.core.variants import Variant, write_manifest
    from train2infer.evaluate.run import run
    from train2infer.models import builders, config as model_config

    export = tmp_path / "export"
    export.mkdir()
    listed = [Variant("trained", "tflite", "float", path="a.tflite"),
              Variant("trained", "tflite", "dynamic", path="b.tflite"), Variant("trained", "saved_model", path="sm")]
    (export / "a.tflite").write_bytes(tflite.to_tflite(trained, "float"))
    (export / "b.tflite").write_bytes(tflite.to_tflite(trained, "dynamic"))
    # an untrained model as the SavedModel: a copied accuracy would show
    untrained = builders.build_model("cnn", trained.input_shape[1:], 10, 99, **model_config.options(tiny.model))
    saved_model.export_saved_model(untrained, export / "sm")
    write_manifest(export, listed, {"trained": work.summary(trained)})
    metrics = run(tiny.evaluate, prepared, trained_file, export, tmp_path / "out")
    assert list(metrics["variants"]) == ["trained_keras_float", "trained_tflite_float", "trained_tflite_dynamic",
                                         "trained_saved_model_float"]
    from train2infer.prepared import load_prepared, to_float

    x, y = load_prepared(prepared, "test")
    want = float(np.mean(np.argmax(untrained.predict(to_float(x), verbose=0), -1) == y))
    assert metrics["variants"]["trained_saved_model_float"]["accuracy"] == pytest.approx(want, abs=1e-6)
    assert want < metrics["variants"]["trained_keras_float"]["accuracy"] - 0.3
    v = metrics["variants"]
    assert v["trained_keras_float"]["speedup_p50"] == 1.0
    assert v["trained_tflite_float"]["accuracy"] == v["trained_keras_float"]["accuracy"]  # same function
    assert v["trained_tflite_dynamic"]["accuracy_vs_float"] == pytest.approx(
        v["trained_tflite_dynamic"]["accuracy"] - v["trained_tflite_float"]["accuracy"])
    assert v["trained_tflite_float"]["gflop"] == pytest.approx(2 * work.summary(trained)["macs"] / 1e9, rel=1e-4)
    bench = json.loads((tmp_path / "out" / "benchmark.json").read_text())
    assert set(bench["runs"]) == {"1", "2"} and [d["name"] for d in bench["variants"]] == list(v)
    assert [d["runtime"] for d in bench["variants"]] == ["tensorflow", "litert", "litert", "tensorflow"]
    for name in ("tradeoff", "latency", "throughput"):
        assert json.loads((tmp_path / "out" / "plots" / f"{name}.json").read_text())
    # per-image predictions are kept: any two variants can be compared later without re-running them
    kept = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert kept["labels"] == y.tolist() and list(kept["predicted"]) == list(v)
    for name, pred in kept["predicted"].items():
        assert np.mean(np.asarray(pred) == y) == pytest.approx(v[name]["accuracy"], abs=1e-6)
    worse = v["trained_saved_model_float"]  # the untrained model: far worse, and the paired test says so
    assert worse["accuracy_verdict"] == "significantly worse" and worse["mcnemar_p"] < 1e-6
    assert worse["accuracy_diff_ci_high"] < 0 and worse["mcnemar_only_baseline"] > worse["mcnemar_only_variant"]
    assert v["trained_tflite_float"]["accuracy_verdict"] == "no significant difference"
    for name, row in v.items():
        assert row["accuracy_ci_low"] <= row["accuracy"] <= row["accuracy_ci_high"], name
        assert row["speedup_p50_ci_low"] <= row["speedup_p50"] <= row["speedup_p50_ci_high"], name
    assert v["trained_keras_float"]["speedup_p50_ci_low"] == v["trained_keras_float"]["speedup_p50_ci_high"] == 1.0
    assert metrics["headline"]["max_accuracy_drop_upper"] >= metrics["headline"]["max_accuracy_drop"] > 0.3
    state = bench["machine"]["state"]
    assert state["wall_s"] > 0 and len(state["loadavg_before"]) == 3 and 0 <= state["others_fraction"] <= 1
    assert metrics["machine"]["busy"] == state["busy"]


def test_machine_state_separates_our_cpu_time_from_others():
    from train2infer import machine

    before = {"time": 0.0, "loadavg": [0.1, 0.2, 0.3], "busy_s": 100.0, "total_s": 1000.0, "own_s": 5.0}
    quiet = {"time": 10.0, "loadavg": [1.0, 0.4, 0.3], "busy_s": 111.0, "total_s": 1020.0, "own_s": 15.0}
    got = machine.state(before, quiet, busy_threshold=0.1)
    assert got["busy_fraction"] == pytest.approx(11 / 20) and got["own_fraction"] == pytest.approx(10 / 20)
    assert got["others_fraction"] == pytest.approx(1 / 20) and got["busy"] is False
    busy = dict(quiet, busy_s=118.0)  # 8 s of 20 used by someone else
    assert machine.state(before, busy, 0.1)["others_fraction"] == pytest.approx(0.4)
    assert machine.state(before, busy, 0.1)["busy"] is True
    unreadable = dict(quiet, busy_s=None, total_s=None)
    assert machine.state(before, unreadable, 0.1)["others_fraction"] is None
    now = machine.snapshot()  # the real counters of this machine
    assert now["total_s"] > 0 and 0 <= now["busy_s"] <= now["total_s"] and len(now["loadavg"]) == 3


def _floor_metrics(rows: dict) -> dict:
    """Hand-made metrics: name -> (accuracy, speedup, verdict); ``base`` is the baseline."""
    return {"baseline": "base", "variants": {n: {"accuracy": a, "speedup_p50": s, "accuracy_verdict": v}
                                              for n, (a, s, v) in rows.items()}}


@pytest.mark.parametrize("rows, max_drop, best", [
    # the fastest is significantly worse: the next fastest within the floor is best
    ({"base": (0.90, 1.0, None), "int8": (0.899, 6.5, "no significant difference"),
      "shrunk": (0.845, 19.2, "significantly worse")}, 1.0, "int8"),
    # a drop above the floor is outside even when the test cannot tell (few images)
    ({"base": (0.90, 1.0, None), "a": (0.885, 9.0, "no significant difference"),
      "b": (0.895, 3.0, "no significant difference")}, 1.0, "b"),
    # the same drop is inside a wider floor
    ({"base": (0.90, 1.0, None), "a": (0.885, 9.0, "no significant difference"),
      "b": (0.895, 3.0, "no significant difference")}, 2.0, "a"),
    # a gain is within any floor; exactly at the floor counts as within
    ({"base": (0.90, 1.0, None), "a": (0.91, 2.0, "significantly better"),
      "b": (0.89, 4.0, "no significant difference")}, 1.0, "b"),
    # none qualifies
    ({"base": (0.90, 1.0, None), "a": (0.80, 9.0, "significantly worse"),
      "b": (0.895, 3.0, "significantly worse")}, 1.0, None),
])
def test_the_floor_picks_the_fastest_variant_within_it(rows, max_drop, best):
    m = _floor_metrics(rows)
    assert M.apply_floor(m, max_drop) == best
    v = m["variants"]
    assert v["base"]["within_floor"]
    for n, r in v.items():
        drop = 100 * (v["base"]["accuracy"] - r["accuracy"])
        assert r["within_floor"] == (n == "base" or (drop <= max_drop + 1e-9
                                                      and r["accuracy_verdict"] != "significantly worse"))


def test_of_variants_not_measurably_slower_than_the_fastest_the_most_accurate_is_best():
    """CIFAR-10 run 7's figures: the scratch control and the shrunk model are the same graph; the
    control's 9.44x is not measurably faster than the shrunk model's 9.39x, which is more accurate."""
    m = _floor_metrics({"base": (0.8525, 1.0, None),
                        "scratch_int8": (0.8480, 9.44, "no significant difference"),
                        "shrunk_int8": (0.8550, 9.39, "no significant difference"),
                        "shrunk_dynamic": (0.8549, 9.06, "no significant difference"),
                        "trained_int8": (0.8530, 4.98, "no significant difference")})
    ci = {"scratch_int8": (8.89, 10.02), "shrunk_int8": (8.85, 9.96), "shrunk_dynamic": (8.54, 9.62),
          "trained_int8": (4.69, 5.28)}
    for n, (lo, hi) in ci.items():
        m["variants"][n] |= {"speedup_p50_ci_low": lo, "speedup_p50_ci_high": hi}
    assert M.apply_floor(m, 1.0) == "shrunk_int8"
    m["variants"]["shrunk_int8"]["speedup_p50_ci_high"] = 8.8  # measurably slower now: the fastest wins
    m["variants"]["shrunk_dynamic"]["speedup_p50_ci_high"] = 8.8
    assert M.apply_floor(m, 1.0) == "scratch_int8"


def test_the_evaluate_line_and_report_never_call_a_variant_outside_the_floor_best():
    from train2infer.report import sections

    rows = {"base": (0.90, 1.0, None), "int8": (0.899, 6.5, "no significant difference"),
            "shrunk": (0.845, 19.2, "significantly worse")}
    m = _floor_metrics(rows)
    for r in m["variants"].values():
        r.update(accuracy_vs_baseline=r["accuracy"] - 0.90, gzip_ratio=1.0, latency_p50_ms=1.0 / r["speedup_p50"],
                 gflops_achieved=1.0, peak_fraction=0.5)
    m["headline"] = M.headline(m, 1.0)
    m["machine"] = {}
    from train2infer.evaluate.run import describe

    lines = describe(m)
    assert "best int8 (within 1 point(s) and not significantly worse): 6.5x" in lines[-1]
    assert [ln for ln in lines if "shrunk" in ln and "outside the accuracy floor" in ln]
    text = "\n".join(sections.best_line(m))
    assert "**Best: `int8`**" in text and "`shrunk`" in text and "**outside the floor**" in text
    for r in m["variants"].values():
        r["accuracy"], r["accuracy_verdict"] = 0.5, "significantly worse"
    m["variants"]["base"]["accuracy"] = 0.90
    m["headline"] = M.headline(m, 1.0)
    assert "no variant is within 1 point(s)" in describe(m)[-1]
    assert "**Best: none.**" in "\n".join(sections.best_line(m))


def test_a_baseline_at_chance_stops_evaluate_with_the_likely_causes():
    """Issue: a user's model fed the wrong scaling scored 0.1004 on 10 classes and still got a headline."""
    from train2infer import Train2InferError
    from train2infer.evaluate.run import refuse_chance
    from train2infer.stats import above_chance

    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 2000)
    y[:200] = 3  # class 3 is the most common: 0.1 + 0.09 of the images
    guess = rng.integers(0, 10, 2000)
    c = above_chance(y, guess)
    assert not c["above"] and c["majority"] == np.bincount(y).max() / 2000
    with pytest.raises(Train2InferError, match=r"scores 0\.\d{4} on 2000 test images, not significantly above"):
        refuse_chance("m.keras", y, guess)
    with pytest.raises(Train2InferError, match="most common class"):
        refuse_chance("m.keras", y, np.full(2000, 3))  # always the most common class: exactly at chance
    good = np.where(rng.random(2000) < 0.3, y, guess)  # right 30 % of the time beyond luck
    assert above_chance(y, good)["above"]
    refuse_chance("m.keras", y, good)  # no error
