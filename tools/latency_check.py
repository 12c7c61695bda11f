"""Does ``shrink.target=latency`` land on its budget, measured? The latency tables checked on real models.

Composes ``conf/`` with the given overrides (as ``dvc exp run -S`` does), builds that model (random
weights: which channels go does not change what a width costs), measures its latency tables, and
chooses widths for ``--budget`` of the dense model's predicted latency (``plan_budget``, l1
importance) and, for comparison, the uniform ``keep`` whose predicted latency is closest to the
same budget. Then the dense model and both cuts are timed whole in one interleaved run (LiteRT,
batch 1, 1 thread) and each prediction is set beside its measurement (the tables scaled by how the
dense model's time moved since they were measured: dense is the reference, its error 0). Prints one line per model
and writes ``latency_check.json``.

Run:  python tools/latency_check.py --out reports/experiments/latency-budget/cnn16   (the default CNN, 16x16)
      python tools/latency_check.py --out reports/experiments/latency-budget/resnet -S +experiment=cifar10_resnet
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import train2infer  # noqa: F401  (first: fixes the Keras flavour before TensorFlow loads)

OFF_CALIBRATION = (0.3, 0.85)  # uniform keeps checked besides the budget's (away from the calibration's 0.4, 0.7)


def build(overrides: list[str]):
    """The model ``conf/`` composed with ``overrides`` describes, and the validated params."""
    import os

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from train2infer import config
    from train2infer.models import builders, config as model_config

    with initialize_config_dir(os.path.abspath("conf"), version_base=None):
        params = config.from_tree(OmegaConf.create(OmegaConf.to_container(
            compose(config_name="config", overrides=overrides), resolve=True)))
    shape = (params.prepare.image_size, params.prepare.image_size, params.prepare.channels)
    name = params.model.name
    return builders.build_model(name, shape, 10, params.seed, **model_config.options(params.model)), params


def uniform_keep(model, probe, cost_of, cfg, budget: float):
    """The uniform ``keep`` (0.20 .. 0.95) whose predicted latency is closest to ``budget``."""
    from train2infer.shrink import channels

    best = None
    for k in [x / 100 for x in range(20, 96, 5)]:
        plan = channels.plan(model, probe, "l1", k, cfg.min_channels, cfg.exclude, cfg.round_to, cfg.ranking)
        c = cost_of(plan.deps)
        gap = abs(c.total(c.widths(plan.removed)) - budget)
        if best is None or gap < best[0]:
            best = (gap, k, plan)
    return best[1], best[2]


def cut_models(model, probe, cfg, cost_of, aim: float, chosen, calibration: dict):
    """The budget's cut, the uniform keep closest to it, uniform keeps away from the uniform cuts
    the tables were calibrated on, and those (``calibration``): name -> (plan or None, model)."""
    from train2infer.models import groups
    from train2infer.shrink import channels

    keep, uniform = uniform_keep(model, probe, cost_of, cfg, aim)
    cuts = {"latency": (chosen, groups.slice_model(model, chosen.deps, chosen.removed)),
            f"keep {keep}": (uniform, groups.slice_model(model, uniform.deps, uniform.removed))}
    for frac in OFF_CALIBRATION:
        p = channels.plan(model, probe, "l1", frac, cfg.min_channels, cfg.exclude, cfg.round_to, cfg.ranking)
        cuts[f"keep {frac}"] = (p, groups.slice_model(model, p.deps, p.removed))
    return keep, cuts | {f"{n} (calibration)": (None, m) for n, m in calibration.items()}


def check(overrides: list[str], budget: float, out: Path, seconds: float) -> dict:
    import numpy as np

    from train2infer.models import groups, io, latency, work
    from train2infer.shrink import channels, target

    model, params = build(overrides)
    cfg = params.shrink
    probe = np.random.default_rng(0).uniform(0, 1, (64, *model.input_shape[1:])).astype(np.float32)
    rep = probe[:8]
    deps = groups.dependencies(model)
    calibration = target.calibration_cuts(cfg, model)
    t0 = time.time()
    got = latency.measure(model, deps, cfg.precision, cfg.round_to, cfg.min_channels, cfg.grid_points,
                          out / "cache.json", {n: io.to_tflite(m, cfg.precision, representative=rep)
                                               for n, m in {"dense": model, **calibration}.items()}, 1, seconds)
    tables_s = time.time() - t0
    dense = target.per_block(model, got["tables"])
    layers = sum(dense)
    tables, k, quadratic = latency.calibrate(got["tables"], dense, got["whole_ms"]["dense"], got["overhead_ms"],
                                            [(target.per_block(m, got["tables"]), got["whole_ms"][n])
                                             for n, m in calibration.items()])
    proportional, _, _ = latency.calibrate(got["tables"], dense, got["whole_ms"]["dense"], got["overhead_ms"])
    fixed = got["overhead_ms"]
    additive = got["whole_ms"]["dense"] - layers  # the other way: the remainder as a fixed part

    def cost_of(d):
        return latency.cost(model, d, tables, fixed, quadratic)

    aim = budget * got["whole_ms"]["dense"]
    chosen, trace = channels.plan_budget(model, probe, "l1", cost_of, aim, cfg.min_channels, cfg.exclude,
                                         cfg.round_to)
    keep, cuts = cut_models(model, probe, cfg, cost_of, aim, chosen, calibration)
    whole = {"dense": io.to_tflite(model, cfg.precision, representative=rep)}
    whole |= {n: io.to_tflite(m, cfg.precision, representative=rep) for n, (_, m) in cuts.items()}
    now = latency.time_whole(whole, model.input_shape[1:], 1, seconds)
    scale = now["dense"] / got["whole_ms"]["dense"]  # the machine's drift since the tables: dense is the reference
    rows = {}
    for name in whole:
        m = model if name == "dense" else cuts[name][1]
        c = latency.cost(m, groups.dependencies(m), tables, fixed, quadratic)
        raw = latency.cost(m, groups.dependencies(m), got["tables"], additive)
        prop = latency.cost(m, groups.dependencies(m), proportional, fixed)
        pred, meas = c.total(c.widths()) * scale, now[name]
        rows[name] = {"predicted_ms": pred, "measured_ms": meas, "error": pred / meas - 1,
                      "proportional_error": prop.total(prop.widths()) * scale / meas - 1,
                      "additive_error": raw.total(raw.widths()) * scale / meas - 1,
                      "macs": work.summary(m)["macs"], "predicted_fraction": pred / now["dense"],
                      "fraction_of_dense": meas / now["dense"]}
    return {"overrides": overrides, "model": model.name, "input": list(model.input_shape[1:]),
            "precision": cfg.precision, "grid_points": cfg.grid_points, "round_to": cfg.round_to,
            "budget": budget, "tables_seconds": tables_s, "table_entries": got["measured"] + got["cached"],
            "fixed_ms": fixed, "calibration": k, "quadratic": quadratic,
            "calibration_keeps": list(target.CALIBRATION_KEEPS), "drift_scale": scale,
            "cache_scale": got["scale"], "drift": got["drift"],
            "reached": trace["reached"], "uniform_keep": keep, "models": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-S", dest="overrides", action="append", default=[], help="a conf/ override, as dvc exp run -S")
    ap.add_argument("--budget", type=float, default=0.5)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    result = check(args.overrides, args.budget, args.out, args.seconds)
    (args.out / "latency_check.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['model']} {result['input']}: tables {result['tables_seconds']:.0f} s "
          f"({result['table_entries']} entries), budget {args.budget} of dense; calibration "
          f"{result['calibration']:.3f} * S, + {result['quadratic']:.3f} * S ** 2; cache drift {result['drift']}")
    for name, r in result["models"].items():
        print(f"  {name:12s} predicted {r['predicted_ms']:.4f} ms, measured {r['measured_ms']:.4f} ms "
              f"({100 * r['error']:+.1f} %), {r['fraction_of_dense']:.3f} of dense (predicted "
              f"{r['predicted_fraction']:.3f}), {r['macs']:,} MACs; no quadratic term: "
              f"{100 * r['proportional_error']:+.1f} %, the remainder as a fixed part: "
              f"{100 * r['additive_error']:+.1f} %")


if __name__ == "__main__":
    main()
