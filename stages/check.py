"""check: validate every section of params.yaml before any stage with outputs runs.

DVC removes a stage's outputs before its command runs: a bad value found by that stage itself
would cost the last good outputs. Every stage with parameters depends on this stage's stamp, so
DVC runs it first and a bad value ends here, in one ``error:`` line (exit code 2), with every
other stage's outputs untouched. The stamp's bytes never change: passing re-runs nothing else.

Reads:   params.yaml (every section and the seed); checks prepare.path and model.path exist.
Writes:  --out the stamp (the same bytes every time).
Run:     dvc repro check
         python stages/check.py --out reports/check/passed
Code:    train2infer.check
"""

import train2infer  # noqa: F401  (first: fixes the Keras flavour before TensorFlow loads)
from train2infer.check.run import run
from train2infer.core import cli
from train2infer.core.publish import publish


def main(argv: list[str] | None = None) -> None:
    args = cli.parser(__doc__, "--out").parse_args(argv)
    with publish(args.out) as staged:
        staged(args.out).write_text(run(args.params))
    print(f"check: every section of {args.params} is valid -> {args.out}")


if __name__ == "__main__":
    cli.run(main)
