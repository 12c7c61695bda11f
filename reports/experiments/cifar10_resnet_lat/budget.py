"""The budget of run 6: run 5's uniform cut (keep 0.65, round_to 4) priced on the trained CIFAR-10
ResNet's own LiteRT latency tables (float32, batch 1, 1 thread), as a fraction of the dense model's
predicted latency; and the widths shrink.target=latency chooses at that fraction.

Run (in run 3's copy of the project, params.yaml of cifar10_resnet_k65):
    python reports/experiments/cifar10_resnet_lat/budget.py
Printed here (2026-11-30): dense 1.5051 ms, keep 0.65 0.7162 ms, fraction 0.4759, uniform MACs
17,778,320; latency-chosen: predicted 0.7046 ms, MACs 15,930,432. Writes budget.json.
"""
import dataclasses
import json

import train2infer  # noqa: F401  (first: fixes the Keras flavour before TensorFlow loads)
from train2infer import config
from train2infer.models import groups, io, work
from train2infer.prepared import load_prepared, to_float
from train2infer.shrink import channels, target

params = config.load_checked("params.yaml")
cfg = dataclasses.replace(params.shrink, target="latency")
trained = io.load_model("models/trained.keras")
probe = to_float(load_prepared("data/prepared", "train")[0][: cfg.probe_images])
lat = target.tables(cfg, trained, "cache/latency_tables.json")
cost_of = target.cost_of(cfg, trained, lat)
dc = cost_of(groups.dependencies(trained))
dense = dc.total(dc.widths())
uni = channels.plan(trained, probe, "l1", 0.65, cfg.min_channels, cfg.exclude, cfg.round_to, cfg.ranking)
uc = cost_of(uni.deps)
u = uc.total(uc.widths(uni.removed))
macs = work.summary(groups.slice_model(trained, uni.deps, uni.removed))["macs"]
print(f"dense {dense:.4f} ms, keep 0.65 {u:.4f} ms, fraction {u / dense:.4f}, uniform MACs {macs:,}")
chosen, trace = channels.plan_budget(trained, probe, "l1", cost_of, u, cfg.min_channels, cfg.exclude, cfg.round_to)
cc = cost_of(chosen.deps)
macs = work.summary(groups.slice_model(trained, chosen.deps, chosen.removed))["macs"]
print(f"latency-chosen: predicted {cc.total(cc.widths(chosen.removed)):.4f} ms, MACs {macs:,}")
json.dump({"dense_ms": dense, "uniform_ms": u, "fraction": u / dense}, open("budget.json", "w"))
