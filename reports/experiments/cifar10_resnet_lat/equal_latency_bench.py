"""Run 5 (uniform keep 0.65) and run 6 (latency-chosen widths at run 5's predicted latency): their
shrunk TFLite models timed in ONE interleaved session beside the trained Keras baseline (LiteRT
float32 / int8, batch 1, 1 thread; evaluate's method and settings from params.yaml), so that "equal
latency" is measured, not read across two runs. Speedups against three references, with evaluate's
interval. Writes the JSON file given last (equal_latency_bench.json here).

Run (in run 3's copy of the project, after run 6; run 5's models/export kept aside):
    python reports/experiments/cifar10_resnet_lat/equal_latency_bench.py RUN5_EXPORT models/export OUT.json
"""
import dataclasses
import json
import sys

import train2infer  # noqa: F401  (first: fixes the Keras flavour before TensorFlow loads)
from train2infer import config, machine, stats
from train2infer.core.variants import BASELINE, Variant
from train2infer.evaluate import worker
from train2infer.prepared import load_prepared, to_float

REFS = ("baseline", "uniform_k65/shrunk_tflite_float", "uniform_k65/shrunk_tflite_int8")
r5, r6, out = sys.argv[1:4]
cfg = config.load_checked("params.yaml").evaluate
variants = {"baseline": dataclasses.replace(BASELINE, path="models/trained.keras")}
for run, folder in (("uniform_k65", r5), ("latency_chosen", r6)):
    for prec in ("float", "int8"):
        variants[f"{run}/shrunk_tflite_{prec}"] = Variant("shrunk", "tflite", prec,
                                                          path=f"{folder}/shrunk_tflite_{prec}.tflite")
x = to_float(load_prepared("data/prepared", "test")[0])
before = machine.snapshot()
got = worker.session(variants, 1, x, cfg, label="eqlat bench")
res = {"rounds": got["rounds"], "state": machine.state(before, machine.snapshot(), cfg.busy_threshold)}
rounds = {k: stats.by_round(v, cfg.runs_per_round) for k, v in got["samples_ms"].items()}
for ref in REFS:
    sp, q = stats.speedups(rounds, ref, tolerance=cfg.quiet_tolerance, block=cfg.bootstrap_block,
                           session_cv=cfg.session_cv)
    res[f"vs {ref}"] = {k: {kk: round(vv, 4) for kk, vv in v.items() if isinstance(vv, float)}
                        for k, v in sp.items()} | {"quiet_rounds": q}
json.dump(res, open(out, "w"), indent=1)
for ref in REFS:
    for k, v in res[f"vs {ref}"].items():
        if k != "quiet_rounds":
            print(f"vs {ref:32s} {k:34s} p50 {v['latency_p50_ms_quiet']:.4f} ms  speedup {v['speedup_p50']:.3f} "
                  f"[{v['speedup_p50_ci_low']:.3f}, {v['speedup_p50_ci_high']:.3f}]")
