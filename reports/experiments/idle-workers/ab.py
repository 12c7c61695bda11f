"""A/B: does a second set of idle (ready, sleeping) workers change the timed session's latencies?

Run in a fresh clone after `make repro`: python reports/experiments/idle-workers/ab.py  (2 min 30 s)
"""
import json, numpy as np
import train2infer
from train2infer import config
from train2infer.core.variants import BASELINE, read_manifest
from train2infer.evaluate import worker
from train2infer.evaluate.run import select
from train2infer.prepared import load_prepared, to_float
import dataclasses
cfg = config.load_checked("params.yaml").evaluate
exported, _ = read_manifest("models/export")
timed, _ = select(dataclasses.replace(BASELINE, path="models/trained.keras"), exported, cfg.runtimes)
allv = {v.name: v for v in timed}
few = {n: allv[n] for n in ("trained_keras_float", "trained_tflite_float", "shrunk_tflite_float", "shrunk_saved_model_float")}
x = to_float(load_prepared("data/prepared", "test")[0])
out = []
for rep in range(3):
    for mode in ("none", "idle"):
        if mode == "idle":
            with worker.started(allv, [2], x, cfg.warmup_runs) as pools:
                worker.all_ready(pools)
                r = worker.session(few, 1, x, cfg, min_seconds=10)
        else:
            r = worker.session(few, 1, x, cfg, min_seconds=10)
        s = r["samples_ms"]; R = cfg.runs_per_round
        base = np.array(s["trained_keras_float"]).reshape(-1, R)
        row = {"rep": rep, "mode": mode}
        for n in few:
            a = np.array(s[n]).reshape(-1, R)
            row[n] = round(float(np.median(a)), 4)
            row["ratio_" + n] = round(float(np.median(np.median(base, 1) / np.median(a, 1))), 3)
        print(json.dumps(row), flush=True); out.append(row)
