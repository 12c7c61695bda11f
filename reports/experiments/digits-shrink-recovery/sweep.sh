#!/bin/bash
# Digits shrink recovery sweep on this machine's trained model (/tmp/fresh): test+val accuracy of the shrunk Keras model.
cd /tmp/fresh
export PATH=/work/main/.venv/bin:$PATH TF_CPP_MIN_LOG_LEVEL=2
run() { # name, then yq-like python edits
  name=$1; shift
  python - "$name" "$@" <<'PY'
import sys, yaml
name, *edits = sys.argv[1:]
p = yaml.safe_load(open("params.yaml"))
for e in edits:
    k, v = e.split("=", 1)
    if "." in k:
        sec, key = k.split("."); p[sec][key] = yaml.safe_load(v)
    else:
        p[k] = yaml.safe_load(v)
yaml.safe_dump(p, open(f"/work/exp/dsweep/{name}.yaml", "w"))
PY
  t0=$(date +%s)
  python stages/shrink.py --params /work/exp/dsweep/$name.yaml --data data/prepared --model-in models/trained.keras \
     --model-out /work/exp/dsweep/$name.keras --reports /work/exp/dsweep/$name.reports > /work/exp/dsweep/$name.log 2>&1
  python - "$name" $(( $(date +%s) - t0 )) <<'PY'
import os, sys, json
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import numpy as np
import train2infer
from train2infer.models import io
from train2infer.prepared import load_prepared, to_float
name, secs = sys.argv[1:]
m = io.load_model(f"/work/exp/dsweep/{name}.keras")
out = {"name": name, "seconds": int(secs)}
for split in ("val", "test"):
    x, y = load_prepared("data/prepared", split)
    out[split] = int((np.argmax(m.predict(to_float(x), verbose=0), -1) == y).sum())
    out[split + "_n"] = len(y)
print(json.dumps(out), flush=True)
with open("/work/exp/dsweep/results.jsonl", "a") as f: f.write(json.dumps(out) + "\n")
PY
}
for seed in 42 7 13; do
  run base_s$seed seed=$seed
  run kd_s$seed seed=$seed shrink.distill_weight=0.5
  run ep12_s$seed seed=$seed shrink.epochs=12
  run kdep12_s$seed seed=$seed shrink.distill_weight=0.5 shrink.epochs=12
done
