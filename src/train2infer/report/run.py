"""The report stage's work: read every stage's report, draw the figures, write the Markdown."""

from __future__ import annotations

from pathlib import Path

from train2infer.core import live
from train2infer.core.publish import read_json, write_json

INPUTS = {  # key -> (path under the reports folder, what it is)
    "metrics": ("evaluate/metrics.json", "evaluate metrics"),
    "benchmark": ("evaluate/benchmark.json", "evaluate measurements"),
    "convert": ("convert/summary.json", "convert summary"),
    "sparsity": ("prune/sparsity.json", "per-layer sparsity"),
    "prune": ("prune/metrics.json", "prune metrics"),
    "shrink": ("shrink/metrics.json", "shrink metrics"),
    "channels": ("shrink/channels.json", "channel pruning details"),
    "latency": ("shrink/latency.json", "shrink latency tables"),
    "prepare": ("prepare/summary.json", "prepare summary"),
}
CURVES = ("train", "shrink", "prune", "scratch")  # stages whose DVCLive curves make the training figure


def read_reports(root: str | Path) -> dict:
    """Every report the report is made of (one clear error for a missing or corrupt one)."""
    return {key: read_json(Path(root) / rel, what) for key, (rel, what) in INPUTS.items()}


def run(root: str | Path, out: Path) -> dict:
    """Write ``README.md`` (renders on a git host), the PNG figures and ``plotted.json`` to ``out``.

    Args:
        root: The reports folder (``reports/``).
        out: Folder to write.

    Returns:
        What each figure shows.
    """
    from train2infer.report import plots, sections

    r = read_reports(root)
    out.mkdir(parents=True, exist_ok=True)
    widest = r["benchmark"]["runs"][str(max(int(t) for t in r["benchmark"]["runs"]))]
    curves_tp = {n: {int(b): v for b, v in x["throughput"].items()} for n, x in widest["variants"].items()}
    plotted = {
        "pareto": plots.pareto(r["metrics"], out / "pareto.png"),
        "sizes": plots.sizes(r["metrics"], out / "sizes.png"),
        "sparsity": plots.layer_sparsity(r["sparsity"]["pruned"], r["prune"].get("target_sparsity"),
                                         out / "sparsity.png"),
        "throughput": plots.throughput(curves_tp, out / "throughput.png"),
        "roofline": plots.roofline(r["metrics"], out / "roofline.png"),
        "layer_times": plots.layer_times(r["latency"], out / "layer_times.png"),
        "training": plots.curves(
            {f"{stage} {split}": live.series(Path(root) / stage, split, "accuracy")
             for stage in CURVES for split in ("train", "val")},
            "Accuracy per epoch (train; the fine-tuning of shrink and prune; scratch's control)", "accuracy",
            out / "training.png"),
    }
    write_json(out / "plotted.json", plotted)
    (out / "README.md").write_text(sections.markdown(r, plotted, "."), encoding="utf-8")
    return plotted
