"""Assembling ``metrics.json`` and plot data from per-variant measurements."""

from __future__ import annotations

METRIC_KEYS = (
    "accuracy",
    "latency_p50_ms",
    "latency_p90_ms",
    "latency_p99_ms",
    "size_bytes",
    "gzip_bytes",
    "sparsity",
    "speedup_p50",
    "gzip_ratio",
)


def variant_row(accuracy: float, lat: dict, size: int, gz: int, sparsity: float) -> dict:
    """One variant's raw measurements, in ``metrics.json`` naming (ratios added later)."""
    return {
        "accuracy": round(float(accuracy), 6),
        "latency_p50_ms": round(lat["p50_ms"], 6),
        "latency_p90_ms": round(lat["p90_ms"], 6),
        "latency_p99_ms": round(lat["p99_ms"], 6),
        "size_bytes": int(size),
        "gzip_bytes": int(gz),
        "sparsity": round(float(sparsity), 6),
    }


def build_metrics(baseline: str, rows: dict[str, dict]) -> dict:
    """``{"baseline", "variants"}`` with ``speedup_p50`` and ``gzip_ratio`` vs the baseline.

    ``speedup_p50`` = baseline p50 / variant p50 (> 1 is faster);
    ``gzip_ratio`` = baseline gzip size / variant gzip size (> 1 is smaller).
    """
    if baseline not in rows:
        raise ValueError(f"baseline {baseline!r} is not among the variants")
    base = rows[baseline]
    variants = {}
    for name, row in rows.items():
        r = dict(row)
        r["speedup_p50"] = round(base["latency_p50_ms"] / row["latency_p50_ms"], 4)
        r["gzip_ratio"] = round(base["gzip_bytes"] / row["gzip_bytes"], 4)
        variants[name] = {k: r[k] for k in METRIC_KEYS}
    return {"baseline": baseline, "variants": variants}


def tradeoff_points(metrics: dict) -> list[dict]:
    """Plot rows (one per variant) for DVC's accuracy-vs-latency scatter plot."""
    return [
        {
            "variant": name,
            "latency_p50_ms": v["latency_p50_ms"],
            "accuracy": v["accuracy"],
            "gzip_bytes": v["gzip_bytes"],
        }
        for name, v in metrics["variants"].items()
    ]


TABLE_COLUMNS = (
    ("accuracy", "accuracy", "{:.4f}"),
    ("p50 ms", "latency_p50_ms", "{:.3f}"),
    ("p90 ms", "latency_p90_ms", "{:.3f}"),
    ("p99 ms", "latency_p99_ms", "{:.3f}"),
    ("size B", "size_bytes", "{:,}"),
    ("gzip B", "gzip_bytes", "{:,}"),
    ("sparsity", "sparsity", "{:.3f}"),
    ("speedup p50", "speedup_p50", "{:.2f}x"),
    ("gzip ratio", "gzip_ratio", "{:.2f}x"),
)


def markdown_table(metrics: dict, columns=TABLE_COLUMNS) -> str:
    """The variants of ``metrics.json`` as a Markdown table (one row per variant)."""
    head = "| variant | " + " | ".join(title for title, _, _ in columns) + " |"
    rule = "|---" * (len(columns) + 1) + "|"
    rows = [
        f"| {name} | " + " | ".join(fmt.format(v[key]) for _, key, fmt in columns) + " |"
        for name, v in metrics["variants"].items()
    ]
    return "\n".join([head, rule, *rows])
