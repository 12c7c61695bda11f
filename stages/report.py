"""report: one Markdown report with PNG plots, from the other stages' reports.

Reads:   --reports folder: ``evaluate/{metrics,benchmark}.json``, ``convert/summary.json``,
         ``shrink/{metrics,channels}.json``, ``prune/{metrics,sparsity}.json``,
         ``prepare/summary.json`` and the DVCLive curves of ``train``, ``shrink``, ``prune``.
Writes:  --out folder: ``README.md`` (renders on a git host), PNG figures, ``plotted.json``
         (the exact data each figure shows).
Run:     dvc repro report
         python stages/report.py --reports reports --out reports/report
Code:    train2infer.report
"""

import train2infer  # noqa: F401
from train2infer.core import cli
from train2infer.core.publish import publish
from train2infer.report.run import run


def main(argv: list[str] | None = None) -> None:
    args = cli.parser(__doc__, "--reports", "--out", params=False).parse_args(argv)
    with publish(args.out) as staged:
        plotted = run(args.reports, staged(args.out))
    print(f"report: {args.out}/README.md with {len(plotted)} figures; "
          f"Pareto frontier: {', '.join(plotted['pareto']['frontier'])}")


if __name__ == "__main__":
    cli.run(main, section="report")
