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
    points = reporting.tradeoff_points(m)
    assert [p["variant"] for p in points] == ["base", "fast"]
