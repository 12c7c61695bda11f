"""PNG plots for the report (matplotlib, Agg backend). Each function saves one figure and
returns the data it drew, so the report can record exactly what each picture shows."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def pareto_front(points: dict[str, tuple[float, float]]) -> list[str]:
    """Names of the points no other point beats: lower-or-equal latency and
    higher-or-equal accuracy, better in at least one.

    Args:
        points: Name -> (latency, accuracy).

    Returns:
        The frontier, fastest first.
    """
    front = []
    for name, (lat, acc) in points.items():
        dominated = any(
            (l2 <= lat and a2 >= acc) and (l2 < lat or a2 > acc) for n2, (l2, a2) in points.items() if n2 != name
        )
        if not dominated:
            front.append(name)
    return sorted(front, key=lambda n: points[n][0])


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pareto(metrics: dict, path: Path) -> dict:
    """Accuracy vs batch-1 p50 latency, frontier highlighted."""
    pts = {n: (v["latency_p50_ms"], v["accuracy"]) for n, v in metrics["variants"].items()}
    front = pareto_front(pts)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (n, (lat, acc)) in enumerate(pts.items()):
        ax.scatter(lat, acc, s=60, color="tab:red" if n in front else "tab:gray", zorder=3)
        # alternate label offsets: variants with equal numbers would print over each other
        ax.annotate(n, (lat, acc), textcoords="offset points", xytext=(5, 5 if i % 2 else -12), fontsize=8)
    ax.plot([pts[n][0] for n in front], [pts[n][1] for n in front], "--", color="tab:red", label="Pareto frontier")
    ax.set_xscale("log")
    ax.set_xlabel("batch-1 latency p50 (ms, log)")
    ax.set_ylabel("test accuracy")
    ax.set_title("Accuracy vs latency")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    _save(fig, path)
    return {"points": {n: list(p) for n, p in pts.items()}, "frontier": front}


def sizes(metrics: dict, path: Path) -> dict:
    """File size and gzip size per variant."""
    names = list(metrics["variants"])
    raw = [metrics["variants"][n]["size_bytes"] / 1024 for n in names]
    gz = [metrics["variants"][n]["gzip_bytes"] / 1024 for n in names]
    fig, ax = plt.subplots(figsize=(7, 3.8))
    y = range(len(names))
    ax.barh([i + 0.2 for i in y], raw, height=0.4, label="file")
    ax.barh([i - 0.2 for i in y], gz, height=0.4, label="gzip -9")
    ax.set_yticks(list(y), names)
    ax.invert_yaxis()
    ax.set_xlabel("KiB")
    ax.set_title("Model size")
    ax.legend()
    _save(fig, path)
    return {"size_kib": dict(zip(names, raw)), "gzip_kib": dict(zip(names, gz))}


def layer_sparsity(rows: list[dict], target: float | None, path: Path) -> dict:
    """Achieved sparsity per pruned kernel, with the target."""
    names = [r["layer"] for r in rows]
    values = [r["sparsity"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.2))
    ax.barh(names, values, color="tab:green")
    if target is not None:
        ax.axvline(target, color="black", linestyle="--", label=f"target {target}")
        ax.legend(loc="lower right")
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("fraction of zero weights")
    ax.set_title("Per-layer sparsity (pruned model)")
    _save(fig, path)
    return dict(zip(names, values))


def throughput(curves: dict[str, dict[int, float]], path: Path) -> dict:
    """Offline images/s against batch size per variant."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for n, c in curves.items():
        bs = sorted(c)
        ax.plot(bs, [c[b] for b in bs], marker="o", label=n)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_ylabel("images / s")
    ax.set_title("Throughput vs batch size (all cores)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
    return {n: {str(b): v for b, v in c.items()} for n, c in curves.items()}


def roofline(metrics: dict, path: Path) -> dict:
    """Achieved GFLOP/s per variant against the machine's float32 and int8 GEMM peaks."""
    names = list(metrics["variants"])
    achieved = [metrics["variants"][n]["gflops_achieved"] for n in names]
    m = metrics["machine"]
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.barh(names, achieved, color="tab:blue")
    ax.axvline(m["peak_gflops_float32"], color="tab:orange", linestyle="--", label="float32 GEMM peak")
    ax.axvline(m["peak_gops_int8"], color="tab:purple", linestyle="--", label="int8 GEMM peak")
    ax.invert_yaxis()
    ax.set_xlabel(f"achieved GFLOP/s at batch 1, {m['threads']} thread(s)")
    ax.set_title("Work rate vs the machine's peak")
    ax.legend(fontsize=8, loc="lower right")
    _save(fig, path)
    return {"achieved": dict(zip(names, achieved)),
            "peaks": {"float32": m["peak_gflops_float32"], "int8": m["peak_gops_int8"]}}


def curves(series: dict[str, list[tuple[int, float]]], title: str, ylabel: str, path: Path) -> dict:
    """Per-epoch curves (DVCLive rows)."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for name, rows in series.items():
        ax.plot([s for s, _ in rows], [v for _, v in rows], marker=".", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
    return {name: [list(r) for r in rows] for name, rows in series.items()}


def layer_times(latency: dict, path: Path, top: int = 12) -> dict:
    """Where the time goes: each kernel layer's predicted LiteRT time (the latency tables) in the
    dense and the shrunk model, the ``top`` most expensive, and the fixed part; a note when
    shrink measured no tables."""
    fig, ax = plt.subplots(figsize=(7, 4))
    if not latency.get("timed"):
        ax.text(0.5, 0.5, "no latency tables measured\n(shrink.time_layers=false, shrink.target!=latency)",
                ha="center", va="center")
        ax.set_axis_off()
        _save(fig, path)
        return {"timed": False}
    rows = sorted(latency["layers"], key=lambda r: -r["dense_ms"])[:top]
    names = [r["layer"] for r in rows] + ["(per-call overhead)"]
    dense = [r["dense_ms"] for r in rows] + [latency["fixed_ms"]]
    shrunk = [r["shrunk_ms"] for r in rows] + [latency["fixed_ms"]]
    y = range(len(names))
    ax.barh([i - 0.2 for i in y], dense, height=0.4, label="dense (trained)")
    ax.barh([i + 0.2 for i in y], shrunk, height=0.4, label="shrunk")
    ax.set_yticks(list(y), names)
    ax.invert_yaxis()
    ax.set_xlabel(f"predicted ms (LiteRT {latency['precision']}, batch 1, 1 thread)")
    ax.set_title("Where the time goes (per-layer latency tables)")
    ax.legend()
    _save(fig, path)
    return {"layers": names, "dense_ms": dict(zip(names, dense)), "shrunk_ms": dict(zip(names, shrunk))}
