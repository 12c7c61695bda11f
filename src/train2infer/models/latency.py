"""Latency tables measured on the serving runtime, and the model's latency predicted from them.

For every kernel layer (its rule counts MACs: Conv2D, Dense, DepthwiseConv2D, SeparableConv2D,
Conv2DTranspose, a user's registered layer) a one-layer model is cut out of the real one at a
grid of input x output widths (its rule's ``slice``: the layer's own kernel, stride, padding and
input size), converted to TFLite and timed with LiteRT (XNNPACK, batch 1, one thread) in one
interleaved run (:mod:`train2infer.timing`): ``invoke`` only, the input set once (inside a model a
layer's input and output are not copied in and out), minus the time of an empty model (the
per-call overhead). Between grid points the table is bilinear (:class:`train2infer.models.cost.Table`).
A model's prediction is that overhead plus the sum of its layers, the tables mapped so that the
dense model's prediction equals its measured time and uniform cuts timed beside it come closest
to theirs (:func:`calibrate`: a factor, and a term in the square of the layers' sum).

Tables are cached in a JSON file keyed by the layer (class, config, input shape, widths,
precision) and by the machine (CPU, core count, library versions): a sweep measures each layer
once. Because this machine's speed drifts, and not by one factor (MobileNetV2's 421 entries a day
apart: the small layers took 0.61x their cached time, the costliest 0.71x), every run also
re-times up to :data:`PROBES` cached entries spread over their cost range and maps every cached
value through the power law fitted to them (:func:`fit_drift`).
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
PROBES = 12  # cached entries re-timed per run to correct the machine's drift (:func:`pick_probes`)
NOISE = 0.03  # a whole model's p50 moves this much between runs here: cuts predicted this well fit no more


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
    whole multiples of ``round_to`` classes (each class ``width / classes`` positions wide); every
    such multiple where there are at most ``2 * points`` of them. Interpolation cannot see
    XNNPACK's kernel tiles: on the default CNN (grid 8, 24, 40, 56, 64 for its 64-wide layers) the
    whole model ran 8 % faster than its tables said at widths 32 and 48 and on the grid's widths
    within 4 %; with every width timed, proportion predicted every cut within 4 %
    (reports/experiments/latency-budget/)."""
    if not free or points < 2 or classes <= 1:
        return [width]
    per = width // classes
    lo = min(classes, math.ceil(max(floor, 1) / round_to) * round_to)
    every = sorted({min(classes, k) for k in range(lo, classes + round_to, round_to)})
    if len(every) <= 2 * points:
        return [k * per for k in every]
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


def pick_probes(entries: dict, keys, n: int = PROBES) -> list[str]:
    """Up to ``n`` of ``keys`` cached in ``entries`` (positive), evenly spread by rank over their
    cost from the 10th percentile to the costliest (the cheapest are mostly timing noise)."""
    ranked = sorted((k for k in dict.fromkeys(keys) if entries.get(k, 0) > 0), key=entries.get)
    if len(ranked) <= n:
        return ranked
    idx = np.unique(np.round(np.linspace(len(ranked) // 10, len(ranked) - 1, n)).astype(int))
    return [ranked[i] for i in idx]


def fit_drift(then: list[float], now: list[float]) -> tuple[float, float]:
    """How cached latencies moved: ``now = factor * then ** exponent``, least squares in log-log
    over the probes' pairs (both positive). With fewer than three pairs, or their costs within a
    factor of 2 of each other, the exponent is 1 and the factor the median ratio; the exponent is
    kept within [0.8, 1.25] (a wider one is noise, not a machine).

    Returns:
        ``(factor, exponent)``; ``(1.0, 1.0)`` without pairs.
    """
    pairs = np.array([(a, b) for a, b in zip(then, now) if a > 0 and b > 0], dtype=float).reshape(-1, 2)
    if not len(pairs):
        return 1.0, 1.0
    x, y = np.log(pairs[:, 0]), np.log(pairs[:, 1])
    if len(pairs) < 3 or x.max() - x.min() < np.log(2):
        return float(np.exp(np.median(y - x))), 1.0
    exponent = float(np.clip(np.polyfit(x, y, 1)[0], 0.8, 1.25))
    return float(np.exp(np.median(y - exponent * x))), exponent


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
    probes = pick_probes(entries, [k for k in cells if k in entries])
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
    factor, exponent = fit_drift([entries[k] for k in probes], [net[k] for k in probes])
    values = {k: net[k] if k in todo else factor * entries[k] ** exponent for k in cells}
    mid = float(np.median([entries[k] for k in cells if k not in todo])) if len(todo) < len(cells) else 0.0
    scale = factor * mid ** (exponent - 1) if mid > 0 else 1.0
    if cache:
        save_cache(cache, {**entries, **{k: net[k] for k in todo}}, threads)
    tables = {b.name: Table(grid[b.name][0], grid[b.name][1],
                            [[values[key(model.get_layer(b.name), ci, co, precision)] for co in grid[b.name][1]]
                             for ci in grid[b.name][0]]) for b in blks}
    return {"tables": tables, "blocks": blks, "whole_ms": {n: timed[n]["p50_ms"] for n in (whole or {})},
            "overhead_ms": overhead, "measured": len(todo), "cached": len(cells) - len(todo), "scale": scale,
            "drift": {"factor": factor, "exponent": exponent, "probes": len(probes)}}


def time_whole(whole: dict, shape, threads: int = 1, seconds: float = 3.0) -> dict:
    """p50 ms of whole ``.tflite`` models (name -> bytes) in one interleaved run, batch 1."""
    return timing.tflite_p50(whole, np.random.default_rng(0).uniform(0, 1, (1, *shape)).astype(np.float32),
                             threads, seconds)


def calibrate(tables: dict, dense: list[float], whole_ms: float, overhead_ms: float,
              cuts: list[tuple[list[float], float]] = ()) -> tuple[dict, float, float]:
    """Tables scaled by ``factor`` and a ``quadratic`` term on their sum (a model's layers ``S``
    cost ``S + quadratic * S ** 2``) so that the dense model's layers come to its measured time
    minus the per-call overhead (it is the reference) and the cut models timed in the same run
    come as close as they can (least squares of the log errors): what the tables do not see (adds,
    pooling, the input copied in, weights and activations spilling the caches) is spread over the
    layers, and may shrink faster than they do as the model shrinks. Measured
    (reports/experiments/latency-budget/): the term took MobileNetV2 96x96's cuts from up to +22 %
    to within 9 % (once 11.6 %; within 5 % once :func:`axis` timed every width of its short axes)
    and left the ResNet's at 0; on the default CNN it was fitted to two widths the interpolated
    tables mispriced (XNNPACK's kernel tiles) and under-predicted the other cuts by up to 14 %,
    until every width was timed (within 2 % since).
    While the cuts' root-mean-square log error without the term is within :data:`NOISE`, it stays 0.

    Args:
        tables: Block name -> :class:`Table` as measured (ms).
        dense: The dense model's per-block table values at its widths.
        whole_ms: Its measured time; ``overhead_ms`` the per-call overhead in it.
        cuts: Per cut model, its per-block table values and its measured time.

    Returns:
        ``(scaled tables, factor, quadratic)`` for :class:`Cost` (``quadratic=``).
    """
    net, s_dense = whole_ms - overhead_ms, float(sum(max(v, 0.0) for v in dense))
    usable = [(float(sum(max(v, 0.0) for v in c)), ms - overhead_ms) for c, ms in cuts
              if ms > overhead_ms and 0 < sum(c) < s_dense]

    def terms(q: float) -> tuple[float, float]:  # q: the share of the dense model's time in the S**2 term
        return net * (1 - q) / s_dense, q / (net * (1 - q) ** 2)

    def misfit(q: float) -> float:
        k, c = terms(q)
        return sum(np.log((k * s + c * (k * s) ** 2) / ms) ** 2 for s, ms in usable)

    q = 0.0
    if usable and s_dense > 0 and net > 0 and np.sqrt(misfit(0.0) / len(usable)) > NOISE:
        qs = np.linspace(-0.5, 0.8, 261)  # q > -1 keeps the cost rising with the widths
        q = float(qs[np.argmin([misfit(x) for x in qs])])
    k, quadratic = terms(q) if s_dense > 0 and net > 0 else (1.0, 0.0)
    scaled = {n: Table(t.cin, t.cout, [[v * k for v in row] for row in t.values]) for n, t in tables.items()}
    return scaled, k, quadratic


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


def cost(model: keras.Model, deps: Dependencies, tables: dict, fixed: float = 0.0, quadratic: float = 0.0) -> Cost:
    """The :class:`Cost` of ``model``'s widths under ``tables`` (and :func:`calibrate`'s ``quadratic``)."""
    return Cost(blocks(model, deps), tables, fixed, quadratic)
