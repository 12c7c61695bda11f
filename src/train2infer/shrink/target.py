"""Goals for shrink: a latency or MAC budget met by per-group widths, and where the time goes.

``shrink.target``: ``keep`` cuts the same fraction of every group (:func:`.channels.plan`);
``latency`` and ``macs`` choose each group's width by importance lost per millisecond (or MAC)
saved (:func:`.channels.plan_budget`) until the dense model's predicted cost times ``budget``
(or ``budget_ms``) is met. Latency is predicted from per-layer tables measured on LiteRT
(:mod:`train2infer.models.latency`); after fine-tuning the dense and the shrunk model are timed
in one interleaved run, so the report states the prediction's error instead of assuming it.
"""

from __future__ import annotations

from pathlib import Path

CALIBRATION_KEEPS = (0.4, 0.7)  # uniform cuts the tables are calibrated on besides the dense model


def tables(cfg, model, cache: Path | None, whole: dict | None = None) -> dict:
    """Latency tables of ``model``'s kernel layers at ``cfg.precision``, calibrated on ``model``
    itself and on its uniform cuts (:data:`CALIBRATION_KEEPS`, l1), all timed in the same
    interleaved run (with the models in ``whole``); the fixed part is the per-call overhead."""
    from train2infer.models import groups, io, latency

    deps = groups.dependencies(model)
    rep = _random_images(model, 8)
    cuts = calibration_cuts(cfg, model)
    whole = {"dense": io.to_tflite(model, cfg.precision, representative=rep)} | {
        n: io.to_tflite(m, cfg.precision, representative=rep) for n, m in cuts.items()} | (whole or {})
    got = latency.measure(model, deps, cfg.precision, cfg.round_to, cfg.min_channels, cfg.grid_points, cache, whole)
    dense = per_block(model, got["tables"])
    got["layers_ms"] = sum(dense)
    got["tables"], got["calibration"], got["quadratic"] = latency.calibrate(
        got["tables"], dense, got["whole_ms"]["dense"], got["overhead_ms"],
        [(per_block(m, got["tables"]), got["whole_ms"][n]) for n, m in cuts.items()])
    got["fixed_ms"] = got["overhead_ms"]
    return got


def per_block(model, tables: dict) -> list[float]:
    """``model``'s kernel layers' values in ``tables`` at its own widths."""
    from train2infer.models import groups, latency

    c = latency.cost(model, groups.dependencies(model), tables)
    return list(c.per_block(c.widths()).values())


def calibration_cuts(cfg, model) -> dict:
    """``model`` with every free group cut uniformly to each of :data:`CALIBRATION_KEEPS` (l1,
    ``cfg``'s floors and ``round_to``): name -> model, only the cuts that remove something."""
    from train2infer.models import groups
    from train2infer.shrink import channels

    out, probe = {}, _random_images(model, 8)
    for keep in CALIBRATION_KEEPS:
        plan = channels.plan(model, probe, "l1", keep, cfg.min_channels, cfg.exclude, cfg.round_to, cfg.ranking)
        if plan.removed:
            out[f"keep {keep}"] = groups.slice_model(model, plan.deps, plan.removed)
    return out


def keep_cache(path: Path | None) -> None:
    """Create the (declared, persistent) cache file empty if it is not there yet."""
    from train2infer.models import latency

    if path and not Path(path).is_file():
        latency.save_cache(Path(path), {}, 1)


def _random_images(model, n: int):
    import numpy as np

    return np.random.default_rng(0).uniform(0, 1, (n, *model.input_shape[1:])).astype(np.float32)


def goal(cfg, model, lat: dict | None) -> dict | None:
    """What the budget is, against the dense (trained) ``model``: None for ``target: keep``, else
    ``unit`` (``ms`` or ``MACs``), ``dense`` (its predicted cost) and ``budget`` (the final one)."""
    if cfg.target == "keep":
        return None
    from train2infer.models import groups

    dense = cost_of(cfg, model, lat)(groups.dependencies(model))
    dense = dense.total(dense.widths())
    budget = cfg.budget_ms if cfg.budget_ms else cfg.budget * dense
    return {"unit": "ms" if cfg.target == "latency" else "MACs", "dense": dense, "budget": budget}


def cost_of(cfg, model, lat: dict | None):
    """deps -> the :class:`train2infer.models.cost.Cost` of ``model`` under ``cfg.target``."""
    from train2infer.models import latency

    if cfg.target == "macs":
        return lambda deps: latency.cost(model, deps, latency.macs_tables(model, deps, cfg.round_to,
                                                                           cfg.min_channels, 2))
    return lambda deps: latency.cost(model, deps, lat["tables"], lat["fixed_ms"], lat.get("quadratic", 0.0))


def plan_step(cfg, model, probe, lat: dict | None, aim: dict | None, step: int):
    """The channels to cut from ``model`` at gradual step ``step`` (0-based) of ``cfg.steps``: with
    a budget, the dense cost times ``(budget / dense) ** ((step + 1) / steps)``.

    Returns:
        ``(plan, trace)``; ``trace`` is None for ``target: keep``, else the chooser's (costs
        before and after, this step's ``budget``, whether ``reached``).
    """
    from train2infer.shrink import channels

    if aim is None:
        return channels.plan(model, probe, cfg.criterion, cfg.step_keep(), cfg.min_channels, cfg.exclude,
                             cfg.round_to, cfg.ranking), None
    budget = aim["dense"] * (aim["budget"] / aim["dense"]) ** ((step + 1) / cfg.steps)
    chosen, trace = channels.plan_budget(model, probe, cfg.criterion, cost_of(cfg, model, lat), budget,
                                         cfg.min_channels, cfg.exclude, cfg.round_to)
    return chosen, trace | {"budget": budget}


def where_the_time_goes(cfg, trained, shrunk, lat: dict, aim: dict | None, traces: list) -> dict:
    """``latency.json``: the dense and the shrunk model timed whole in one interleaved run beside
    their predictions, and every kernel layer's predicted time in both.

    The tables were measured earlier, so they are scaled by how the dense model's time moved since
    (this machine's speed drifts): the dense model is the reference (its error is 0 by
    construction) and the shrunk model's predicted *fraction* of it is what is checked.
    """
    from train2infer.models import groups, io, latency

    rep = _random_images(trained, 8)
    whole = {name: io.to_tflite(m, cfg.precision, representative=rep) for name, m in
             (("dense", trained), ("shrunk", shrunk))}
    now = latency.time_whole(whole, trained.input_shape[1:])
    scale = now["dense"] / lat["whole_ms"]["dense"]
    dense_c, small_c = (latency.cost(m, groups.dependencies(m), lat["tables"], lat["fixed_ms"],
                                     lat.get("quadratic", 0.0)) for m in (trained, shrunk))
    dense_ms = {k: v * scale for k, v in dense_c.shares(dense_c.widths()).items()}
    small_ms = {k: v * scale for k, v in small_c.shares(small_c.widths()).items()}
    small_w = {b.name: (b.cin, b.cout) for b in small_c.blocks}
    rows = [{"layer": b.name, "kind": b.kind, "dense_widths": [b.cin, b.cout], "dense_ms": dense_ms[b.name],
             "shrunk_widths": list(small_w.get(b.name, (0, 0))), "shrunk_ms": small_ms.get(b.name, 0.0)}
            for b in dense_c.blocks]
    fixed, models = lat["fixed_ms"] * scale, {}
    for name, ms in (("dense", dense_ms), ("shrunk", small_ms)):
        predicted = fixed + sum(ms.values())
        models[name] = {"predicted_ms": predicted, "measured_ms": now[name], "error": predicted / now[name] - 1}
    out = {"timed": True, "precision": cfg.precision, "threads": 1, "batch": 1, "grid_points": cfg.grid_points,
           "fixed_ms": fixed, "overhead_ms": lat["overhead_ms"], "drift_scale": scale,
           "calibration": lat["calibration"], "quadratic": lat.get("quadratic", 0.0),
           "calibration_keeps": list(CALIBRATION_KEEPS),
           "table_entries": {"measured": lat["measured"], "cached": lat["cached"]}, "models": models, "layers": rows}
    if aim is not None:
        out["target"] = {"kind": cfg.target, **aim, "steps": [t for t in traces if t],
                         "measured_fraction": now["shrunk"] / now["dense"]}
    return out
