"""Sweeps: validation before queueing, and a real 2-point queued sweep summarised."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import sweep

from helpers import ONE_THREAD, ROOT, TINY, dvc, run_queue, shared_project, tool_env
from train2infer import Train2InferError


def test_expand_matches_dvc_sweep_syntax():
    combos = sweep.expand(["prune.final_sparsity=range(0.5,0.95,0.1)", "seed=choice(1,2)"])
    assert len(combos) == 10
    assert ["prune.final_sparsity=0.7", "seed=2"] in combos


@pytest.mark.parametrize("override, culprit", [
    ("prune.final_sparsity=choice(0.5,", "bad sweep syntax"),
    ("prune.final_spars=0.5", "prune.final_spars"),
    ("+prune.colour=red", "prune.colour"),
    ("prune.final_sparsity=choice(0.5,1.2)", "prune.final_sparsity=1.2 must be < 1"),
    ("prepare=imagenet", "prepare=imagenet"),
])
def test_bad_sweeps_are_refused_before_queueing(override, culprit):
    with pytest.raises(Train2InferError) as err:
        sweep.validate([override], ROOT / "conf")
    assert culprit in str(err.value) and "\n" not in str(err.value)


def test_summary_and_frontiers():
    def exp(name, sparsity, acc, lat, gz):
        v = {"accuracy": acc, "latency_p50_ms": lat, "gzip_bytes": gz, "sparsity": sparsity, "speedup_p50": 1 / lat}
        return {"name": name, "rev": name * 7, "params": {"prune.final_sparsity": sparsity, "seed": 42},
                "baseline": {"prune.final_sparsity": 0.8, "seed": 42},
                "metrics": {"variants": {"pruned_tflite_dynamic": v}}}

    exps = [exp("a", 0.5, 0.97, 0.10, 40000), exp("b", 0.7, 0.96, 0.09, 30000), exp("c", 0.9, 0.90, 0.11, 20000)]
    s = sweep.summarize(exps, "pruned_tflite_dynamic")
    assert s["changed"] == ["prune.final_sparsity"]
    assert s["frontier_latency"] == ["b", "a"]  # c is slower and less accurate than b
    assert s["frontier_size"] == ["c", "b", "a"]
    text = sweep.markdown(s, "sweep")
    assert "| b | bbbbbbb | 0.7 | pruned_tflite_dynamic | 0.9600 | 0.090 |" in text
    fastest = sweep.summarize(exps, "fastest")
    assert [r["variant"] for r in fastest["rows"]] == ["pruned_tflite_dynamic"] * 3

    # Issue: experiments on other data were ranked on one frontier. Each dataset gets its own.
    other = [dict(exp("d", 0.5, 0.99, 0.05, 10000), data="md5-other"), dict(exp("e", 0.5, 0.98, 0.04, 9000),
                                                                             data="md5-other")]
    mixed = sweep.summarize([dict(e, data="md5-digits") for e in exps] + other, "pruned_tflite_dynamic")
    assert [(g["data"], g["latency"]) for g in mixed["groups"]] == [("md5-digits", ["b", "a"]),
                                                                   ("md5-other", ["e", "d"])]
    text = sweep.markdown(mixed, ".")
    assert "ran on 2 different prepared datasets" in text and "## Data `md5-other` (2 experiment(s))" in text
    assert "![accuracy vs latency](./latency-1.png)" in text and "Frontier: `e`, `d`." in text
    assert sweep.by_data({"a": "h1", "b": "h2", "c": "h1", "w": None}) == [["a", "c"], ["b"], ["w"]]

    # Where the latencies come from: as measured alone, or by `sweep bench` in one or more sessions.
    assert "not comparable across experiments" in sweep.latency_source(s)
    method = {"variants": 34, "rounds": 10, "runs_per_round": 20, "threads": 1}
    one = {"method": method, "machine": {}, "sessions": [{"state": {"others_fraction": 0.02}}]}
    together = dict(s, rows=[dict(r, timed="together") for r in s["rows"]])
    text = sweep.latency_source(dict(together, bench=one))
    assert "from `python tools/sweep.py bench`: one interleaved session, 34 models" in text and "2.0%" in text
    two = dict(one, sessions=[{"state": {}}, {"state": {"others_fraction": 0.3}}])
    assert "2 interleaved sessions, one per prepared dataset" in sweep.latency_source(dict(together, bench=two))


def test_a_failing_measurement_names_the_exception_not_kerass_last_line():
    from train2infer.evaluate.worker import failure_line

    lines = ["Traceback (most recent call last):", '  File "x.py", line 1', "ValueError: Input 0 of layer "
             "'conv' is incompatible with the layer: expected axis -1 to have value 3, got 1",
             "Call arguments received by layer 'conv':", "  • inputs=tf.Tensor(shape=(1, 8, 8, 1))", "  • mask=None"]
    assert failure_line(lines).startswith("ValueError: Input 0 of layer 'conv' is incompatible")
    assert failure_line(["just one line"]) == "just one line" and failure_line([]) == "no output"


@pytest.mark.slow
@pytest.mark.pipelines
def test_queued_two_point_sweep_runs_and_is_summarised(tmp_path, tmp_path_factory):
    proj, _ = shared_project(tmp_path_factory, tmp_path / "proj")

    def module(*args, check=True):
        proc = subprocess.run([sys.executable, "tools/sweep.py", *args], cwd=proj, env=tool_env(),
                              capture_output=True, text=True, timeout=900)
        if check:
            assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    bad = module("queue", "-S", "prune.final_sparsity=choice(0.5,1.5)", check=False)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: sweep point")
    assert "Queued" not in dvc("queue", "status", cwd=proj).stdout

    args = [a for o in TINY + ONE_THREAD for a in ("-S", o)]
    module("queue", *args, "-S", "prune.final_sparsity=choice(0.5,0.7)")
    try:
        status = run_queue(proj, tmp_path / "queue-start.log")
        assert status.count("Success") == 2, status
    finally:
        dvc("queue", "stop", "--kill", cwd=proj, check=False)

    out = module("report", "--out", "reports/sweep").stdout
    summary = json.loads((proj / "reports" / "sweep" / "summary.json").read_text())
    assert sorted(r["params"]["prune.final_sparsity"] for r in summary["rows"]) == [0.5, 0.7]
    for r in summary["rows"]:
        assert abs(r["sparsity"] - r["params"]["prune.final_sparsity"]) <= 0.02
    assert summary["frontier_latency"] and summary["frontier_size"]
    text = (proj / "reports" / "sweep" / "README.md").read_text()
    for r in summary["rows"]:
        assert f"| {r['name']} |" in text
    assert "frontier (latency)" in out
    for png in ("latency.png", "size.png"):
        assert (proj / "reports" / "sweep" / png).stat().st_size > 5000
    shown = dvc("exp", "show", "--json", cwd=proj).stdout
    assert all(r["name"] in shown for r in summary["rows"])
    assert all(r["timed"] == "alone" for r in summary["rows"]) and "not comparable across experiments" in text

    # An experiment on other data (another image size), then one bench of all three: the two sweep
    # points together in one interleaved session, the other data on its own test images in its own
    # session, reported in its own table (issue: one input fed to every model, one frontier).
    names = [r["name"] for r in summary["rows"]]
    dvc("exp", "run", "-n", "small-images", *args, "-S", "prepare.image_size=12", cwd=proj)
    benched = module("bench", "--out", "reports/sweep")  # default: every experiment dvc exp show lists
    assert f"bench: {names[0]}" in benched.stdout and "-> reports/sweep/bench.json" in benched.stdout
    bench = json.loads((proj / "reports" / "sweep" / "bench.json").read_text())
    assert set(bench["experiments"]) == set(names) | {"small-images"}
    # every .tflite variant of each (scratch_* too) and its baseline: the workspace's evaluate method,
    # which the last `dvc exp run` left at ONE_THREAD's runtimes=[litert]
    assert bench["method"]["variants"] == 3 * 13
    # (sessions in the order dvc exp show lists the experiments: newest first)
    own = bench["experiments"]["small-images"]["session"]
    assert len(bench["sessions"]) == 2 and bench["sessions"][own]["experiments"] == ["small-images"]
    assert {bench["experiments"][n]["session"] for n in names} == {1 - own}
    assert bench["sessions"][1 - own]["variants"] == 2 * 13 and bench["sessions"][own]["variants"] == 13
    assert bench["sessions"][own]["data"] != bench["sessions"][1 - own]["data"]
    for e in bench["experiments"].values():
        base = e["variants"]["trained_keras_float"]
        assert base["speedup_p50"] == base["speedup_p50_ci_low"] == base["speedup_p50_ci_high"] == 1.0
        assert len(e["variants"]) == 13 and e["data"]
        for v in e["variants"].values():
            assert v["speedup_p50_ci_low"] <= v["speedup_p50"] <= v["speedup_p50_ci_high"] and v["p50_ms"] > 0
    summary = json.loads((proj / "reports" / "sweep" / "summary.json").read_text())
    assert all(r["timed"] == "together" for r in summary["rows"])
    for r in summary["rows"]:
        assert r["latency_p50_ms"] == bench["experiments"][r["name"]]["variants"][r["variant"]]["p50_ms"]
    text = (proj / "reports" / "sweep" / "README.md").read_text()
    assert "ran on 2 different prepared datasets" in text
    assert "from `python tools/sweep.py bench`: 2 interleaved sessions, one per prepared dataset" in text
    assert "39 models each in its own process" in text
    assert (proj / "reports" / "sweep" / "latency-1.png").stat().st_size > 5000
    unknown = module("bench", "no-such-exp", check=False)
    assert unknown.returncode == 2 and unknown.stderr.strip().splitlines()[-1].startswith(
        "error: sweep bench: no finished experiment 'no-such-exp'")
