"""Write the README's generated blocks from committed files, so that it cannot go stale.

    make readme                    # rewrite the blocks in README.md
    python tools/readme.py --check # exit 1 if a block differs (tests/test_readme.py does the same)

A block sits between ``<!-- generated:NAME ... -->`` and ``<!-- /generated:NAME -->``:

- ``timings``: ``reports/experiments/timings.json``, each command's measured wall time, machine and date;
- ``evaluate``: the evaluate stage's own closing lines (``train2infer.evaluate.run.describe``)
  for the committed ``reports/evaluate/metrics.json``: the baseline, the float and int8
  conversions, the shrunk and scratch models, and the best variant; the CPU they were measured
  on (``benchmark.json``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import train2infer  # noqa: F401  (first: fixes the Keras flavour before TensorFlow loads)

SHOWN = ("trained_keras_float", "trained_tflite_float", "trained_tflite_int8", "shrunk_tflite_float",
         "shrunk_tflite_int8", "scratch_tflite_float", "pruned_tflite_float")


def duration(seconds: float) -> str:
    """``4 min 35 s`` / ``5 s``."""
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s} s" if m else f"{s} s"


def timings(root: Path) -> str:
    """The quick-start table."""
    rows = json.loads((root / "reports" / "experiments" / "timings.json").read_text())["commands"]
    return "\n".join(["| command | wall time | machine, date | ends with |", "|---|---|---|---|"] + [
        f"| {r['command']} | {duration(r['seconds'])} | {r['machine']}, {r['date']} | {r['ends_with']} |"
        for r in rows])


def evaluate(root: Path) -> str:
    """Some of the evaluate stage's lines for the committed metrics, as it prints them."""
    from train2infer.evaluate.run import describe

    metrics = json.loads((root / "reports" / "evaluate" / "metrics.json").read_text())
    m = json.loads((root / "reports" / "evaluate" / "benchmark.json").read_text())["machine"]
    flags = m.get("cpu_flags", [])
    simd = ("AVX-512" + (", VNNI" if "avx512_vnni" in flags else "") if "avx512f" in flags
            else "AVX2" if "avx2" in flags else "no AVX2")
    cpu = f"{m['cpu']}" + (f" ({m['cpu_id']}; {simd})" if m.get("cpu_id") else f" ({simd})")
    lines = describe(metrics)
    names = list(metrics["variants"])
    keep = [line for name, line in zip(names, lines) if name in SHOWN or name == metrics["headline"]["best_variant"]]
    head = (f"From the committed [`reports/evaluate/metrics.json`](reports/evaluate/metrics.json), measured on "
            f"{m['cpus']} cores of {cpu} (some of its lines):")
    return "\n".join([head, "```", *keep, *lines[len(names):], "```"])


BLOCKS = {"timings": timings, "evaluate": evaluate}


def update(text: str, root: Path) -> str:
    """``text`` with every generated block rewritten from the files under ``root``."""
    for name, render in BLOCKS.items():
        pattern = re.compile(rf"(<!-- generated:{name}\b[^>]*-->\n)(.*?)(<!-- /generated:{name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"error: README.md has no generated:{name} block")
        text = pattern.sub(lambda m: m.group(1) + render(root) + "\n" + m.group(3), text)
    return text


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python tools/readme.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 if README.md is not up to date")
    args = ap.parse_args(argv)
    root = Path(__file__).resolve().parents[1]
    readme = root / "README.md"
    text = readme.read_text()
    new = update(text, root)
    if args.check:
        if new != text:
            print("error: README.md's generated blocks are stale: run make readme", file=sys.stderr)
            sys.exit(1)
        return
    readme.write_text(new)
    print("readme: README.md's generated blocks rewritten from reports/")


if __name__ == "__main__":
    main()
