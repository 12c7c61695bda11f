"""report: one Markdown report with PNG plots, from the other stages' reports.

Reads:   --reports folder: ``metrics.json``, ``evaluate/benchmark.json``,
         ``convert/summary.json``, ``prune/sparsity.json``, ``prune/metrics.json``,
         ``prune/channels.json``,
         ``prepare/summary.json`` and the DVCLive curves of ``train/`` and ``prune/``.
Writes:  --out Markdown report; --figures folder of PNGs (embedded by the report) and
         ``plotted.json``, the exact data each PNG shows.
Run:     dvc repro report
         python stages/report.py --reports reports --out reports/report.md --figures reports/report
"""

from __future__ import annotations

import os
from pathlib import Path

import train2infer  # noqa: F401
from train2infer import cli
from train2infer.io import publish, read_json, write_json


def _dvclive_series(folder: Path, split: str, name: str) -> list[tuple[int, float]]:
    tsv = folder / "plots" / "metrics" / split / f"{name}.tsv"
    if not tsv.is_file():
        return []
    lines = tsv.read_text().splitlines()
    header = lines[0].split("\t")
    s, v = header.index("step"), header.index(name)
    return [(int(r.split("\t")[s]), float(r.split("\t")[v])) for r in lines[1:] if r.strip()]


def main(argv: list[str] | None = None) -> None:
    ap = cli.parser(__doc__)
    ap.add_argument("--reports", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--figures", required=True)
    args = ap.parse_args(argv)

    root = Path(args.reports)
    metrics = read_json(root / "metrics.json", "metrics")
    bench = read_json(root / "evaluate" / "benchmark.json", "benchmark details")
    convert = read_json(root / "convert" / "summary.json", "convert summary")
    sparsity = read_json(root / "prune" / "sparsity.json", "per-layer sparsity")
    prune = read_json(root / "prune" / "metrics.json", "prune metrics")
    prepare = read_json(root / "prepare" / "summary.json", "prepare summary")
    channels = read_json(root / "prune" / "channels.json", "channel pruning details")

    from train2infer import plots, reporting

    with publish(args.out, args.figures) as staged:
        fig_dir = staged(args.figures)
        fig_dir.mkdir()
        rel = os.path.relpath(Path(args.figures), Path(args.out).parent)
        widest = bench["runs"][str(max(int(t) for t in bench["runs"]))]
        curves_tp = {n: {int(b): v for b, v in r["throughput"].items()} for n, r in widest["variants"].items()}
        plotted = {
            "pareto": plots.pareto(metrics, fig_dir / "pareto.png"),
            "sizes": plots.sizes(metrics, fig_dir / "sizes.png"),
            "sparsity": plots.layer_sparsity(sparsity, prune.get("target_sparsity"), fig_dir / "sparsity.png"),
            "throughput": plots.throughput(curves_tp, fig_dir / "throughput.png"),
            "roofline": plots.roofline(metrics, fig_dir / "roofline.png"),
            "training": plots.curves(
                {f"{stage} {split}": _dvclive_series(root / stage, split, "accuracy")
                 for stage in ("train", "prune") for split in ("train", "val")},
                "Accuracy per epoch (train, then pruning fine-tune)", "accuracy", fig_dir / "training.png"),
        }
        write_json(fig_dir / "plotted.json", plotted)
        text = reporting.report_markdown(metrics, bench, convert, sparsity, prune, prepare, plotted, rel, channels)
        Path(staged(args.out)).write_text(text, encoding="utf-8")
    print(f"report: {args.out} with {len(plotted)} figures in {args.figures}; "
          f"Pareto frontier: {', '.join(plotted['pareto']['frontier'])}")


if __name__ == "__main__":
    cli.run(main)
