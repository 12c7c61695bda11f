"""evaluate: latency statistics, sizes, and the metrics.json arithmetic."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from train2infer import benchmark, conversion, reporting


def test_latency_warms_up_then_times_every_run():
    calls = []
    stats = benchmark.latency(lambda: calls.append(1), warmup_runs=7, timed_runs=200)
    assert len(calls) == 207
    assert stats["runs"] == 200
    assert 0 < stats["p50_ms"] <= stats["p90_ms"] <= stats["p99_ms"]
    assert stats["std_ms"] >= 0


def test_tflite_call_returns_the_model_output(trained, digits):
    splits, _ = digits
    content = conversion.to_tflite(trained, "float")
    x1 = splits["test"][0][:1].astype(np.float32) / 255
    call = benchmark.tflite_call(conversion.interpreter(content), x1)
    np.testing.assert_allclose(call()[0], conversion.run_tflite(content, x1)[0], atol=1e-6)
    keras_out = benchmark.keras_call(trained, x1)()
    np.testing.assert_allclose(call(), keras_out, atol=1e-4)


def test_sizes_of_files_and_folders(tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"\x00" * 10000)
    assert benchmark.size_bytes(f) == 10000
    assert benchmark.gzip_bytes(f) == len(gzip.compress(b"\x00" * 10000, 9, mtime=0))
    d = tmp_path / "dir"
    (d / "sub").mkdir(parents=True)
    (d / "x").write_bytes(b"abc" * 100)
    (d / "sub" / "y").write_bytes(np.random.default_rng(0).bytes(5000))
    assert benchmark.size_bytes(d) == 5300
    assert 5000 < benchmark.gzip_bytes(d) < 5300 + 2048
    assert benchmark.gzip_bytes(d) == benchmark.gzip_bytes(d)  # deterministic


def _row(acc, p50, gz):
    return reporting.variant_row(acc, {"p50_ms": p50, "p90_ms": p50 * 1.1, "p99_ms": p50 * 1.5}, gz * 2, gz, 0.5)


def test_metrics_ratios_are_relative_to_the_baseline():
    m = reporting.build_metrics("base", {"base": _row(0.9, 2.0, 1000), "fast": _row(0.89, 0.5, 125)})
    assert m["baseline"] == "base"
    assert set(m["variants"]["fast"]) == set(reporting.METRIC_KEYS)
    assert m["variants"]["fast"]["speedup_p50"] == pytest.approx(4.0)
    assert m["variants"]["fast"]["gzip_ratio"] == pytest.approx(8.0)
    assert m["variants"]["base"]["speedup_p50"] == 1.0
    with pytest.raises(ValueError):
        reporting.build_metrics("missing", {"base": _row(0.9, 2.0, 1000)})
    h = reporting.headline(m)
    assert h == {"baseline_accuracy": 0.9, "best_speedup_p50": 4.0, "best_accuracy": 0.89,
                 "max_gzip_ratio": 8.0, "max_accuracy_drop": pytest.approx(0.01)}
    points = reporting.tradeoff_points(m)
    assert [p["variant"] for p in points] == ["base", "fast"]


def test_summary_statistics():
    s = benchmark.summarize([1.0, 1.0, 1.0, 5.0])
    assert s["p50_ms"] == 1.0 and s["runs"] == 4
    assert s["mean_ms"] == 2.0
    assert s["cv"] == pytest.approx(np.std([1, 1, 1, 5]) / 2.0)


def test_interleaved_rounds_rotate_the_order():
    order = []
    calls = {n: (lambda n=n: order.append(n)) for n in "abc"}
    stats = benchmark.interleaved_latency(calls, warmup_runs=1, min_runs=6, min_seconds=0, runs_per_round=2)
    timed = order[3:]  # after one warm-up call each
    blocks = [timed[i] for i in range(0, len(timed), 2)]
    assert blocks == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert all(s["runs"] == 6 and s["rounds"] == 3 for s in stats.values())


def test_saturation_batch():
    assert benchmark.saturation_batch({1: 100, 4: 300, 16: 390, 64: 400}) == 16
    assert benchmark.saturation_batch({1: 100, 4: 300, 16: 350, 64: 600}) is None  # still growing
    assert benchmark.saturation_batch({1: 100}) == 1
    assert benchmark.saturation_batch({}) is None  # no sweep at this thread count


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
    rows = {r["layer"]: r for r in benchmark.layer_macs(m)}
    assert rows["c"]["macs"] == 8 * 8 * 4 * 3 * 3 * 2
    assert rows["d"]["macs"] == 4 * 4 * 4 * 3 * 3
    assert rows["f"]["macs"] == 4 * 3
    assert rows["c"]["nonzero"] == pytest.approx(0.5)


@pytest.mark.slow
def test_every_variant_is_measured_in_its_own_process(tmp_path, trained, digits):
    from train2infer import measure, models

    splits, _ = digits
    np.save(tmp_path / "x.npy", splits["test"][0][:8].astype(np.float32) / 255)
    models.save_for_inference(trained, tmp_path / "m.keras")
    (tmp_path / "f.tflite").write_bytes(conversion.to_tflite(trained, "float"))
    (tmp_path / "q.tflite").write_bytes(conversion.to_tflite(trained, "dynamic"))
    variants = {"keras": ("keras", str(tmp_path / "m.keras")), "float": ("tflite", str(tmp_path / "f.tflite")),
                "int8": ("tflite", str(tmp_path / "q.tflite"))}
    r = measure.measure_variants(variants, 1, str(tmp_path / "x.npy"), warmup_runs=5, min_runs=200,
                                 min_seconds=0, runs_per_round=50, batch_sizes=[1, 4], throughput_seconds=0.05)
    assert r["rounds"] == 4
    for name, v in r["variants"].items():
        assert v["latency"]["runs"] == 200
        assert 0 < v["latency"]["p50_ms"] <= v["latency"]["p99_ms"]
        assert set(v["throughput"]) == {"1", "4"} and min(v["throughput"].values()) > 0
        assert v["memory"]["peak_rss_bytes"] >= v["memory"]["runtime_rss_bytes"] > 0
    # a LiteRT process never loads TensorFlow: a fraction of the baseline's footprint
    assert r["variants"]["float"]["memory"]["peak_rss_bytes"] < r["variants"]["keras"]["memory"]["peak_rss_bytes"] / 3
    assert r["variants"]["int8"]["memory"]["activation_bytes"] > 0
    assert r["variants"]["float"]["memory"]["allocate_rss_bytes"] >= 0


def test_a_broken_variant_fails_with_its_name(tmp_path):
    from train2infer import Train2InferError, measure

    np.save(tmp_path / "x.npy", np.zeros((1, 4, 4, 1), np.float32))
    (tmp_path / "bad.tflite").write_bytes(b"nope")
    with pytest.raises(Train2InferError, match="measurement of broken failed"):
        measure.measure_variants({"broken": ("tflite", str(tmp_path / "bad.tflite"))}, 1, str(tmp_path / "x.npy"),
                                 warmup_runs=1, min_runs=200, min_seconds=0, runs_per_round=10,
                                 batch_sizes=[1], throughput_seconds=0.01)
