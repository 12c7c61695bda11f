"""Latency tables measured on the serving runtime, and the model's latency predicted from them.

For every kernel layer (its rule counts MACs: Conv2D, Dense, DepthwiseConv2D, SeparableConv2D,
Conv2DTranspose, a user's registered layer) a one-layer model is cut out of the real one at a
grid of input x output widths (its rule's ``slice``: the layer's own kernel, stride, padding and
input size), converted to TFLite and timed with LiteRT (XNNPACK, batch 1, one thread) in one
interleaved run (:mod:`train2infer.timing`): ``invoke`` only, the input set once (inside a model a
layer's input and output are not copied in and out), minus the time of an empty model (the
per-call overhead). Between grid points the table is bilinear (:class:`train2infer.models.cost.Table`).
A model's prediction is that overhead plus the sum of its layers, the tables scaled so that the
dense model's prediction equals its measured time (:func:`calibrate`).

Tables are cached in a JSON file keyed by the layer (class, config, input shape, widths,
precision) and by the machine (CPU, core count, library versions): a sweep measures each layer
once. Because this machine's speed drifts, every run also re-times the five most expensive cached
layers and scales the cached values by the median of their ratios now / then.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import tf_keras as keras

from train2infer import machine, timing
from train2infer.models.cost import Block, Cost, Table, multiplicity
from train2infer.models.graph import functional
from train2infer.models.groups import Dependencies
from train2infer.models.io import to_tflite
from train2infer.models.rules import rule_for

L = keras.layers
OVERHEAD = "(empty model)"
METHOD = 2  # how entries are timed (invoke only, input set once); older caches are not used


def blocks(model: keras.Model, deps: Dependencies) -> list[Block]:
    """The kernel layers of ``model`` with the channel classes of their inputs and outputs."""
    out = []
    for layer in functional(model).layers:
        rule = rule_for(layer)
        srcs = deps.inputs.get(layer.name, [])
        if rule is None or rule.macs is None or rule.slice is None or len(srcs) != 1:
            continue
        if rule.channels not in ("reader", "depthwise") or not rule.applies(layer):
            continue
        src, dst = deps.index[srcs[0]], deps.index[layer.name]
        out.append(Block(layer.name, type(layer).__name__, len(src), len(dst), multiplicity(src), multiplicity(dst)))
    return out


def axis(width: int, classes: int, free: bool, round_to: int, floor: int, points: int) -> list[int]:
    """Grid widths of one axis: ``points`` from the smallest a group may keep to ``width``, in
    whole multiples of ``round_to`` classes (each class ``width / classes`` positions wide)."""
    if not free or points < 2 or classes <= 1:
        return [width]
    per = width // classes
    lo = min(classes, math.ceil(max(floor, 1) / round_to) * round_to)
    steps = np.linspace(lo, classes, points)
    kept = sorted({min(classes, math.ceil(s / round_to) * round_to) for s in steps})
    return [k * per for k in kept]


def grids(model: keras.Model, deps: Dependencies, blks: list[Block], round_to: int, floor: int,
          points: int) -> dict[str, tuple[list[int], list[int]]]:
    """Per block, the grid of its table: free axes (some class in an unpinned group) get
    ``points`` widths, others only their full width; a depthwise layer's output follows its input."""
    free = {c for g in deps.groups if not g.pinned for c in g.classes}
    out = {}
    for b in blks:
        cin = axis(b.cin, len(b.in_mult), any(c in free for c in b.in_mult), round_to, floor, points)
        depthwise = rule_for(model.get_layer(b.name)).channels == "depthwise"
        cout = [b.cout] if depthwise else axis(b.cout, len(b.out_mult), any(c in free for c in b.out_mult),
                                              round_to, floor, points)
        out[b.name] = (cin, cout)
    return out


def micro(layer: L.Layer, cin: int, cout: int) -> keras.Model:
    """``layer`` alone at input width ``cin`` and output width ``cout`` (its first channels),
    built by its rule's slice: same kernel, stride, padding and input size."""
    rule = rule_for(layer)
    full_out = layer.output_shape[-1]
    o = np.arange(full_out if rule.channels == "depthwise" else cout)
    changes, weights = rule.slice(layer, np.arange(cin), o)
    config = {**layer.get_config(), **changes, "name": layer.name}
    x = keras.Input(tuple(layer.input_shape[1:-1]) + (cin,), batch_size=1)
    clone = type(layer).from_config(config)
    y = clone(x)
    clone.set_weights(weights)
    return keras.Model(x, y)


def key(layer: L.Layer, cin: int, cout: int, precision: str) -> str:
    """The cache key of one table entry."""
    config = {k: v for k, v in layer.get_config().items() if k not in ("name", "trainable")}
    text = json.dumps([type(layer).__name__, config, list(layer.input_shape[1:-1]), cin, cout, precision],
                      sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def fingerprint(threads: int) -> dict:
    """What a cached table is valid for: the machine and the runtime."""
    return {k: v for k, v in machine.describe().items() if k != "python"} | {"threads": threads, "method": METHOD}


def load_cache(path: Path | None, threads: int) -> dict:
    """The cached entries for this machine (empty when none, stale or unreadable)."""
    try:
        data = json.loads(Path(path).read_text()) if path and Path(path).is_file() else {}
    except (OSError, ValueError):
        data = {}
    return data.get("entries", {}) if data.get("machine") == fingerprint(threads) else {}


def save_cache(path: Path, entries: dict, threads: int) -> None:
    """Write the cache (all entries of this machine) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"machine": fingerprint(threads), "entries": entries}, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


def _overhead_model() -> keras.Model:
    x = keras.Input((1, 1, 8), batch_size=1)
    return keras.Model(x, L.ReLU()(x))


def _runner(model: keras.Model, precision: str, threads: int, rng: np.random.Generator):
    """A timed call of ``model`` converted at ``precision`` (int8: calibrated on random inputs)."""
    from train2infer import litert

    shape = tuple(model.input_shape[1:])
    rep = rng.uniform(0, 1, (4, *shape)).astype(np.float32) if precision == "int8" else None
    interp = litert.interpreter(to_tflite(model, precision, representative=rep), num_threads=threads)
    litert.runner(interp, rng.uniform(0, 1, (1, *shape)).astype(np.float32))()  # input set once
    return interp.invoke  # the layer's work only: inside a model its input and output are not copied


def measure(model: keras.Model, deps: Dependencies, precision: str, round_to: int, floor: int, points: int,
            cache: Path | None = None, whole: dict | None = None, threads: int = 1, seconds: float = 3.0) -> dict:
    """Tables of every kernel layer of ``model``, and the latency of whole models, in one run.

    Args:
        model: The model whose layers are tabled (the dense, trained one).
        deps: Its channel dependencies (which widths are free).
        precision: ``float`` or ``int8`` (TFLite conversion of every one-layer model).
        round_to, floor, points: The grid (:func:`axis`).
        cache: The cache file, read and rewritten; None for none.
        whole: Name -> ``.tflite`` bytes of whole models to time in the same run.
        threads: LiteRT threads.
        seconds: Least time the interleaved rounds last.

    Returns:
        ``tables`` (block name -> :class:`Table`, ms), ``blocks``, ``whole_ms`` (p50 per whole
        model), ``overhead_ms``, ``measured`` / ``cached`` (table entries), ``scale`` (cached
        entries' drift correction, 1.0 when nothing was cached).
    """
    from train2infer import litert
    from train2infer.core.progress import Phase

    rng = np.random.default_rng(0)
    blks = blocks(model, deps)
    grid = grids(model, deps, blks, round_to, floor, points)
    entries = load_cache(cache, threads)
    cells = {key(model.get_layer(b.name), ci, co, precision): (b.name, ci, co)
             for b in blks for ci in grid[b.name][0] for co in grid[b.name][1]}
    todo = {k: v for k, v in cells.items() if k not in entries}
    probes = sorted((k for k in cells if k in entries), key=entries.get)[-5:]  # the costliest cached: least noisy
    phase = Phase("shrink", f"latency tables: {len(todo)} layer shapes to convert, {len(cells) - len(todo)} cached",
                  total=len(todo) + len(probes), unit="model")
    calls = {OVERHEAD: _runner(_overhead_model(), precision, threads, rng)}
    for k in list(todo) + probes:
        name, ci, co = cells[k]
        calls[k] = _runner(micro(model.get_layer(name), ci, co), precision, threads, rng)
        phase.update(len(calls) - 1)
    for name, content in (whole or {}).items():
        calls[name] = litert.runner(litert.interpreter(content, num_threads=threads),
                                    rng.uniform(0, 1, (1, *model.input_shape[1:])).astype(np.float32))
    phase.end()
    timed = timing.interleaved_latency(calls, warmup_runs=5, min_runs=50, min_seconds=seconds, runs_per_round=10)
    overhead = timed[OVERHEAD]["p50_ms"]
    net = {k: max(timed[k]["p50_ms"] - overhead, 0.0) for k in calls if k in cells}
    ratios = [net[k] / entries[k] for k in probes if entries[k] > 0 and net[k] > 0]
    scale = float(np.median(ratios)) if ratios else 1.0
    values = {k: net[k] if k in todo else entries[k] * scale for k in cells}
    if cache:
        save_cache(cache, {**entries, **{k: net[k] for k in todo}}, threads)
    tables = {b.name: Table(grid[b.name][0], grid[b.name][1],
                            [[values[key(model.get_layer(b.name), ci, co, precision)] for co in grid[b.name][1]]
                             for ci in grid[b.name][0]]) for b in blks}
    return {"tables": tables, "blocks": blks, "whole_ms": {n: timed[n]["p50_ms"] for n in (whole or {})},
            "overhead_ms": overhead, "measured": len(todo), "cached": len(cells) - len(todo), "scale": scale}


def time_whole(whole: dict, shape, threads: int = 1, seconds: float = 3.0) -> dict:
    """p50 ms of whole ``.tflite`` models (name -> bytes) in one interleaved run, batch 1."""
    return timing.tflite_p50(whole, np.random.default_rng(0).uniform(0, 1, (1, *shape)).astype(np.float32),
                             threads, seconds)


def calibrate(tables: dict, layers_ms: float, whole_ms: float, overhead_ms: float) -> tuple[dict, float]:
    """Tables scaled so that the dense model's layers sum to its measured time minus the per-call
    overhead: what the tables do not see (adds, pooling, the input copied in, caches between layers)
    is spread over the layers in proportion, since it follows the widths as they do. Measured on the
    default CNN and the ResNet, a fixed remainder instead over-predicted cut models by 4-18 %, the
    proportional one within 4 % (reports/experiments/latency-budget/).

    Returns:
        ``(scaled tables, factor)``.
    """
    k = (whole_ms - overhead_ms) / layers_ms if layers_ms > 0 else 1.0
    return {n: Table(t.cin, t.cout, [[v * k for v in row] for row in t.values]) for n, t in tables.items()}, k


def macs_tables(model: keras.Model, deps: Dependencies, round_to: int, floor: int, points: int) -> dict:
    """Per kernel layer, its multiply-adds on the same grid (exact: MACs are bilinear in the widths)."""
    blks = blocks(model, deps)
    grid = grids(model, deps, blks, round_to, floor, points)
    out = {}
    for b in blks:
        layer, (cins, couts) = model.get_layer(b.name), grid[b.name]
        rule = rule_for(layer)
        values = []
        for ci in cins:
            row = []
            for co in couts:
                m = micro(layer, ci, co).layers[-1]
                row.append(float(rule.macs(m, m)))
            values.append(row)
        out[b.name] = Table(cins, couts, values)
    return out


def cost(model: keras.Model, deps: Dependencies, tables: dict, fixed: float = 0.0) -> Cost:
    """The :class:`Cost` of ``model``'s widths under ``tables``."""
    return Cost(blocks(model, deps), tables, fixed)
