"""The report: Pareto logic, and the rendered report checked against metrics.json."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from train2infer.evaluate.metrics import per_class_accuracy
from train2infer.report import plots, sections


def test_pareto_front():
    pts = {"slow_good": (10.0, 0.99), "fast_bad": (1.0, 0.90), "dominated": (11.0, 0.98),
           "tie_faster": (1.0, 0.95), "mid": (5.0, 0.97)}
    assert plots.pareto_front(pts) == ["tie_faster", "mid", "slow_good"]


def test_per_class_accuracy_is_reported_by_class_name():
    got = per_class_accuracy([0, 0, 1, 1, 1, 2], [0, 1, 1, 1, 0, 2], ["cats", "dogs", "owls"])
    assert got == {"cats": {"n": 2, "accuracy": 0.5}, "dogs": {"n": 3, "accuracy": 0.6667},
                   "owls": {"n": 1, "accuracy": 1.0}}
    table = sections.per_class_markdown({"a": got, "b": got}, {"skipped": [{"file": "x", "reason": "y"}]})
    assert "| dogs | 3 | 0.667 | 0.667 |" in table and any("skipped 1 unreadable" in r for r in table)


def parse_summary_table(markdown: str) -> dict[str, dict[str, str]]:
    """The first Markdown table of the report: variant -> column title -> cell."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| variant |"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header[1:], cells[1:]))
    return rows


def check_report(reports, metrics: dict) -> None:
    """Assert that reports/report/README.md and its figures show what the evaluate metrics say."""
    from PIL import Image

    folder = reports / "report"
    text = (folder / "README.md").read_text()
    table = parse_summary_table(text)
    assert set(table) == set(metrics["variants"])
    for name, row in metrics["variants"].items():
        for title, key, fmt in sections.SUMMARY_COLUMNS:
            assert table[name][title] == sections.cell(row, key, fmt), (name, title)
        assert table[name]["speedup p50 [95% CI]"].startswith(f"{sections.ratio(row['speedup_p50'])}× [")
        assert table[name]["accuracy [95% CI]"].startswith(f"{row['accuracy']:.4f} [")
        assert f"| {row['mcnemar_p']:.3g} | {row['accuracy_verdict']} |" in text or name == metrics["baseline"]
    for png in re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", text):
        path = folder / png
        img = np.asarray(Image.open(path).convert("L"))
        assert img.shape[0] > 100 and img.std() > 10, png  # a real picture, not a blank canvas
    plotted = json.loads((folder / "plotted.json").read_text())
    for name, (lat, acc) in plotted["pareto"]["points"].items():
        assert lat == metrics["variants"][name]["latency_p50_ms"]
        assert acc == metrics["variants"][name]["accuracy"]
    assert plotted["roofline"]["achieved"] == {n: v["gflops_achieved"] for n, v in metrics["variants"].items()}
    gzip_kib = {n: v["gzip_bytes"] / 1024 for n, v in metrics["variants"].items()}
    assert plotted["sizes"]["gzip_kib"] == pytest.approx(gzip_kib)
    bench = json.loads((reports / "evaluate" / "benchmark.json").read_text())
    for name, classes in bench["per_class"].items():  # per-class rows carry the class names
        total = sum(c["n"] * c["accuracy"] for c in classes.values())
        assert total / sum(c["n"] for c in classes.values()) == pytest.approx(metrics["variants"][name]["accuracy"],
                                                                              abs=1e-3)
    names = list(next(iter(bench["per_class"].values())))
    assert all(f"| {c} |" in text for c in names)
    front = plotted["pareto"]["frontier"]
    assert front and all(f"`{n}`" in text for n in front)


def test_a_missing_input_report_is_named(tmp_path):
    from train2infer import Train2InferError
    from train2infer.report.run import run

    with pytest.raises(Train2InferError, match="evaluate metrics not found.*evaluate/metrics.json"):
        run(tmp_path, tmp_path / "out")


def test_a_variant_without_a_matching_peak_shows_na_not_a_ratio():
    """bf16 has no measured peak: its share of the float32 peak would be a wrong number (> 100 %)."""
    from train2infer.evaluate import metrics as M

    lat = {"p50_ms": 1.0, "p90_ms": 1.1, "p99_ms": 1.2}
    rows = {"base": M.variant_row(0.9, lat, 10, 5, 0.0, work={"macs": 5e8, "macs_nonzero": 5e8}, peak_gflops=2000.0),
            "bf": M.variant_row(0.9, lat, 10, 5, 0.0, work={"macs": 5e8, "macs_nonzero": 5e8}, peak_gflops=None)}
    assert rows["base"]["peak_fraction"] == 0.5 and rows["bf"]["peak_fraction"] is None
    metrics = M.build_metrics("base", rows, {})
    table = parse_summary_table(sections.markdown_table(metrics, sections.SUMMARY_COLUMNS))
    assert table["bf"]["% of peak"] == "n/a" and table["base"]["% of peak"] == "50%"
    assert any("n/a: no bf16 peak measured" in line for line in sections.work(metrics, "."))


def test_layers_left_dense_are_grouped_by_reason():
    from train2infer.report import sections

    sparsity = {"pruned": [{"layer": "c", "sparsity": 0.8}],
                "not_pruned": [{"layer": f"dw{i}", "reason": "TF-MOT prunes no weights of DepthwiseConv2D"}
                               for i in range(5)] + [{"layer": "logits", "reason": "left out by prune.exclude"}]}
    text = "\n".join(sections.pruning({}, {}, {"target_sparsity": 0.8}, sparsity, "fig"))
    assert ("Layers with weights left dense: 5 (`dw0`, `dw1`, `dw2`, ...): TF-MOT prunes no weights of "
            "DepthwiseConv2D; 1 (`logits`): left out by prune.exclude.") in text
    assert "Layers with weights left dense" not in "\n".join(
        sections.pruning({}, {}, {}, {"pruned": [], "not_pruned": []}, "fig"))


def test_channel_groups_are_tabled_with_why_they_are_pinned():
    from train2infer.report import sections

    shrink = {"criterion": "l1", "keep": 0.5, "dead_channels": 3, "macs_before": 400, "macs_after": 100,
              "flops_ratio": 4.0, "params_before": 10, "params_after": 5, "val_accuracy_trained": 0.9,
              "val_accuracy_cut": 0.5, "val_accuracy_fine_tuned": 0.89}
    groups = [{"name": "stem", "width": 16, "kept": 8, "dead": 3, "sources": ["stem", "res_conv"], "pinned": None},
              {"name": "mix", "width": 16, "kept": 16, "dead": 0, "sources": ["mix"],
               "pinned": "custom: Scale is not known to keep channels apart"}]
    text = "\n".join(sections.channel_markdown(shrink, {"groups": groups}))
    assert "2 channel groups" in text and "1 pinned" in text and "**4.00x fewer**" in text
    assert "| stem | 16 | 8 | 3 | stem, res_conv |  |" in text
    assert "| mix | 16 | 16 | 0 | mix | custom: Scale is not known to keep channels apart |" in text


def test_intervals_and_the_busy_machine_warning_are_printed():
    row = {"accuracy": 0.9926, "accuracy_ci_low": 0.9733, "accuracy_ci_high": 0.9980, "speedup_p50": 8.64,
           "speedup_p50_ci_low": 8.1, "speedup_p50_ci_high": 9.23, "accuracy_vs_baseline": 0.0186,
           "accuracy_diff_ci_low": 0.0037, "accuracy_diff_ci_high": 0.0335, "mcnemar_p": 0.0625,
           "mcnemar_only_baseline": 0, "mcnemar_only_variant": 5, "accuracy_verdict": "no significant difference"}
    assert sections.with_interval(row, "speedup_p50") == "8.64× [8.10, 9.23]"
    assert sections.with_interval(dict(row, speedup_p50=19.23, speedup_p50_ci_low=18.9, speedup_p50_ci_high=20.01),
                                  "speedup_p50") == "19.2× [18.9, 20.0]"
    assert sections.with_interval({"speedup_p50": 2.0}, "speedup_p50") == "2.00×"  # none measured: no brackets
    assert sections.accuracy_interval(row) == "0.9926 [0.9733, 0.9980]"
    assert sections.versus_baseline(row) == "+1.86 pts [+0.37, +3.35], p=0.0625"
    base = dict(row, accuracy_vs_baseline=0.0, mcnemar_p=1.0, mcnemar_only_variant=0)
    metrics = {"baseline": "b", "variants": {"b": base, "v": row}, "machine": {"quiet_rounds": 0.8},
               "headline": {"max_accuracy_drop": -0.0186, "max_accuracy_drop_upper": -0.0037}}
    text = "\n".join(sections.uncertainty(metrics, {"quiet_tolerance": 0.1, "bootstrap_block": 5, "session_cv": 0.02}))
    assert "quiet (80% of the rounds, the baseline within 10% of its fastest)" in text and "spread of 2%" in text
    assert ("| v | 0.9926 [0.9733, 0.9980] | +1.86 pts [+0.37, +3.35] | 0 | 5 | 0.0625 | no significant difference |"
            in text)
    state = {"loadavg_before": [1.5, 0.5, 0.2], "loadavg_after": [2.0, 1.0, 0.4], "governor": None, "wall_s": 60.0,
             "own_fraction": 0.45, "others_fraction": 0.3, "busy_threshold": 0.1, "busy": True}
    busy = " ".join(sections.machine_state(state))
    assert busy.startswith("**Busy machine:** other processes used 30.0% of all CPUs' time")
    assert "1.50/0.50/0.20" in busy
    calm = " ".join(sections.machine_state(dict(state, others_fraction=0.01, busy=False)))
    assert calm.startswith("Machine state: quiet") and "Busy" not in calm


def test_int8_accuracy_control_is_tabled_per_variant():
    from train2infer.report import sections

    kept = {"max_drop": 1.0, "float_accuracy": 0.95, "int8_accuracy": 0.949, "drop_before": 0.1, "drop_after": 0.1,
            "float_ops": [], "candidates": [], "within": True}
    fixed = kept | {"int8_accuracy": 0.6, "drop_before": 35.0, "drop_after": 0.0, "within": True,
                    "float_ops": ["FULLY_CONNECTED out"], "candidates": [{"op": "FULLY_CONNECTED"}],
                    "latency_ms": {"full_int8": 0.01, "with_float_ops": 0.015}}
    convert = {"skipped": {}, "trained": {"tflite": {"trained_tflite_int8": {"accuracy_control": kept}}},
               "shrunk": {"tflite": {"shrunk_tflite_int8": {"accuracy_control": fixed},
                                     "shrunk_tflite_float": {}}}}
    text = "\n".join(sections.int8_control(convert))
    assert "`convert.max_drop` = 1 points" in text
    assert "| `trained_tflite_int8` | 0.9500 | 0.9490 | +0.10 | none needed | +0.10 | yes | — |" in text
    assert ("| `shrunk_tflite_int8` | 0.9500 | 0.6000 | +35.00 | `FULLY_CONNECTED out` | +0.00 | yes "
            "| 0.0100 → 0.0150 |") in text
    assert sections.int8_control({"skipped": {}, "trained": {"tflite": {"t": {}}}}) == []


def test_where_the_time_goes_states_prediction_beside_measurement_and_the_budget(tmp_path):
    latency = {"timed": True, "precision": "float", "grid_points": 5, "fixed_ms": 0.01, "drift_scale": 1.0,
               "table_entries": {"measured": 20, "cached": 0},
               "models": {"dense": {"predicted_ms": 0.5, "measured_ms": 0.5, "error": 0.0},
                          "shrunk": {"predicted_ms": 0.22, "measured_ms": 0.2, "error": 0.1}},
               "layers": [{"layer": "a", "dense_ms": 0.3, "dense_widths": [32, 32], "shrunk_ms": 0.1,
                           "shrunk_widths": [16, 16]},
                          {"layer": "b", "dense_ms": 0.19, "dense_widths": [32, 10], "shrunk_ms": 0.11,
                           "shrunk_widths": [16, 10]}],
               "target": {"kind": "latency", "unit": "ms", "dense": 0.5, "budget": 0.25, "measured_fraction": 0.4,
                          "steps": [{"reached": True}]}}
    text = "\n".join(sections.where_the_time_goes(latency, "."))
    assert "| shrunk | 0.2200 | 0.2000 | +10.0 % |" in text and "overhead 0.0100 ms" in text
    assert "0.25 ms of the dense model's 0.5 ms" in text and "0.400 of the dense model's time." in text
    latency["target"]["steps"] = [{"reached": False, "stopped": "no saving"}]
    text = "\n".join(sections.where_the_time_goes(latency, "."))
    assert "not reachable: by the latency tables, no further cut" in text and "at its floor" not in text
    assert text.index("`a` 0.3000 ms") < text.index("`b` 0.1900 ms")
    drawn = plots.layer_times(latency, tmp_path / "t.png")
    assert drawn["layers"][:2] == ["a", "b"] and drawn["shrunk_ms"]["a"] == 0.1 and (tmp_path / "t.png").is_file()
    off = {"timed": False, "why": "shrink.time_layers is false"}
    assert "Not measured: shrink.time_layers is false" in "\n".join(sections.where_the_time_goes(off, "."))
    assert plots.layer_times(off, tmp_path / "u.png") == {"timed": False} and (tmp_path / "u.png").is_file()
