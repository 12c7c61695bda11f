"""Sweeps: validate before queueing, and summarise every experiment.

    python tools/sweep.py queue -S 'prune.final_sparsity=range(0.5,0.95,0.1)' [-S ...]
    dvc queue start -j 2            # then wait: dvc queue status
    python tools/sweep.py report --out reports/sweep

``queue`` expands the sweep exactly as DVC does (Hydra ``choice``/``range`` syntax),
composes ``conf/`` for every combination and validates all of it with the stages' own
checks; only if every combination is valid does it call ``dvc exp run --queue`` with the
same arguments. Bad syntax or an unknown key ends in one ``error:`` line and nothing is
queued.

``report`` reads every experiment of every commit (``dvc exp show --json --all-commits``) and writes a Markdown table
of each experiment's changed parameters and key metrics of one variant (default
``pruned_tflite_dynamic``, the end of the optimisation chain), and accuracy-vs-latency and
accuracy-vs-size Pareto plots with the frontier experiments named, ready for
``dvc exp apply NAME``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import train2infer  # noqa: F401  (first: fixes the Keras flavour before TensorFlow loads)
from train2infer import Train2InferError, config
from train2infer.core import cli
from train2infer.core.params import ParamError, ParamsFileError

METRICS = "reports/evaluate/metrics.json"


def expand(overrides: list[str]) -> list[list[str]]:
    """Every combination of a sweep, as DVC's ``exp run -S`` expands it.

    Raises:
        Train2InferError: On override syntax DVC/Hydra cannot parse.
    """
    from dvc.utils.hydra import get_hydra_sweeps

    try:
        combos = get_hydra_sweeps({"params.yaml": list(overrides)})
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise Train2InferError(f"bad sweep syntax in {' '.join(overrides)!r}: {first}") from None
    return [c["params.yaml"] for c in combos]


def validate(overrides: list[str], conf_dir: str | Path = "conf") -> int:
    """Compose ``conf/`` with each combination and run every stage's checks on it.

    Returns:
        The number of combinations (experiments) the sweep makes.

    Raises:
        Train2InferError: Naming the combination and the bad key or value.
    """
    from dvc.utils.hydra import compose_and_dump

    combos = expand(overrides)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "params.yaml"
        for combo in combos:
            try:
                compose_and_dump(out, str(Path(conf_dir).resolve()), None, "config", "", combo)
            except Exception as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise Train2InferError(f"sweep point {' '.join(combo)}: {first}") from None
            try:
                config.load_checked(out)
            except (ParamError, ParamsFileError) as exc:
                raise Train2InferError(f"sweep point {' '.join(combo)}: {exc}") from None
    return len(combos)


def _flatten(d: dict, prefix: str = "") -> dict:
    flat = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            flat.update(_flatten(v, key + "."))
        else:
            flat[key] = v
    return flat


def experiments(shown: list[dict]) -> list[dict]:
    """Finished experiments from ``dvc exp show --json --all-commits``.

    Returns:
        ``[{"name", "rev", "params", "baseline", "metrics"}]``: params flattened
        (``prune.final_sparsity``), ``baseline`` the flattened params of the commit the
        experiment started from, and the evaluate metrics as stored.
    """
    found = []
    for entry in shown:
        if entry.get("rev") == "workspace":
            continue
        data = entry.get("data") or {}
        baseline = _flatten(((data.get("params") or {}).get("params.yaml") or {}).get("data") or {})
        for exp in entry.get("experiments") or []:
            for rev in exp.get("revs") or []:
                d = rev.get("data") or {}
                m = ((d.get("metrics") or {}).get(METRICS) or {}).get("data")
                p = ((d.get("params") or {}).get("params.yaml") or {}).get("data")
                if m and p and "variants" in m:
                    found.append({"name": rev.get("name") or rev["rev"][:7], "rev": rev["rev"],
                                  "params": _flatten(p), "baseline": baseline, "metrics": m})
    return found


def summarize(exps: list[dict], variant: str) -> dict:
    """Per experiment: the parameters that differ from its baseline commit, and the
    variant's accuracy, p50 latency, gzip size, sparsity and speedup; plus both Pareto
    frontiers."""
    from train2infer.report.plots import pareto_front

    changed_keys = sorted({k for e in exps for k, v in e["params"].items() if e["baseline"].get(k) != v})
    rows = []
    for e in exps:
        variants = e["metrics"]["variants"]
        chosen = variant
        if variant == "fastest":  # each experiment's fastest variant (other than the baseline)
            chosen = max((n for n in variants if n != e["metrics"].get("baseline")),
                         key=lambda n: variants[n]["speedup_p50"])
        v = variants.get(chosen)
        if v is None:
            continue
        rows.append({"name": e["name"], "rev": e["rev"][:7], "variant": chosen,
                     "params": {k: e["params"].get(k) for k in changed_keys},
                     "accuracy": v["accuracy"], "latency_p50_ms": v["latency_p50_ms"],
                     "gzip_bytes": v["gzip_bytes"], "sparsity": v["sparsity"], "speedup_p50": v["speedup_p50"]})
    lat = pareto_front({r["name"]: (r["latency_p50_ms"], r["accuracy"]) for r in rows})
    size = pareto_front({r["name"]: (r["gzip_bytes"], r["accuracy"]) for r in rows})
    return {"variant": variant, "changed": changed_keys, "rows": rows,
            "frontier_latency": lat, "frontier_size": size}


def _plot(rows, key, xlabel, front, path):
    from train2infer.report import plots

    fig, ax = plots.plt.subplots(figsize=(7, 4.2))
    for r in rows:
        on = r["name"] in front
        ax.scatter(r[key], r["accuracy"], s=60, color="tab:red" if on else "tab:gray", zorder=3)
        label = f"{r['name']} ({', '.join(str(v) for v in r['params'].values())})" if r["params"] else r["name"]
        ax.annotate(label, (r[key], r["accuracy"]), textcoords="offset points", xytext=(5, 5), fontsize=8)
    fr = sorted((r for r in rows if r["name"] in front), key=lambda r: r[key])
    ax.plot([r[key] for r in fr], [r["accuracy"] for r in fr], "--", color="tab:red", label="Pareto frontier")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy")
    ax.grid(True, alpha=0.3)
    ax.legend()
    plots._save(fig, path)


def markdown(summary: dict, figures: str) -> str:
    """The sweep report."""
    keys, rows = summary["changed"], summary["rows"]
    out = [
        "# Sweep summary",
        "",
        f"{len(rows)} experiments; metrics of `{summary['variant']}`"
        + (" (each experiment's fastest variant)" if summary["variant"] == "fastest" else "")
        + ". Pick one with `dvc exp apply NAME`.",
        "",
        "(`—`: the parameter did not exist at the experiment's commit.)",
        "",
        "| experiment | rev | " + " | ".join(keys) + " | variant | accuracy | p50 ms | speedup p50 | gzip B | sparsity |",
        "|---" * (len(keys) + 8) + "|",
    ]
    for r in sorted(rows, key=lambda r: r["latency_p50_ms"]):
        cells = " | ".join("—" if r["params"][k] is None else str(r["params"][k]) for k in keys)  # — : not a parameter at that commit
        out.append(f"| {r['name']} | {r['rev']} | {cells}{' | ' if keys else ''}{r['variant']} | {r['accuracy']:.4f} | "
                   f"{r['latency_p50_ms']:.3f} | {r['speedup_p50']:.2f}x | {r['gzip_bytes']:,} | {r['sparsity']:.3f} |")
    out += [
        "",
        "## Accuracy vs latency",
        "",
        f"![accuracy vs latency]({figures}/latency.png)",
        "",
        "Frontier: " + ", ".join(f"`{n}`" for n in summary["frontier_latency"]) + ".",
        "",
        "## Accuracy vs size",
        "",
        f"![accuracy vs size]({figures}/size.png)",
        "",
        "Frontier: " + ", ".join(f"`{n}`" for n in summary["frontier_size"]) + ".",
        "",
        "Latencies of experiments run in parallel (`dvc queue start -j 2` on 2 cores) compete for the "
        "CPU: re-measure a chosen one with `dvc exp apply NAME && dvc repro --force --single-item evaluate report`.",
        "",
    ]
    return "\n".join(out)


def report(out: str, variant: str) -> dict:
    """Read every experiment and write the sweep report (``out/README.md``), its two plots and data."""
    from train2infer.core.publish import publish, write_json

    proc = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json", "--all-commits"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise Train2InferError(f"dvc exp show failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    exps = experiments(json.loads(proc.stdout))
    if not exps:
        raise Train2InferError("no finished experiment to summarise (run a sweep first: see README)")
    summary = summarize(exps, variant)
    if not summary["rows"]:
        raise Train2InferError(f"no experiment has metrics for variant {variant!r}")
    with publish(out) as staged:
        fig = staged(out)
        fig.mkdir()
        _plot(summary["rows"], "latency_p50_ms", "p50 latency (ms)", summary["frontier_latency"], fig / "latency.png")
        _plot(summary["rows"], "gzip_bytes", "gzip size (bytes)", summary["frontier_size"], fig / "size.png")
        write_json(fig / "summary.json", summary)
        (fig / "README.md").write_text(markdown(summary, "."), encoding="utf-8")
    return summary


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python tools/sweep.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    q = sub.add_parser("queue", help="validate every point, then dvc exp run --queue")
    q.add_argument("-S", "--set-param", dest="overrides", action="append", required=True)
    q.add_argument("--dry-run", action="store_true", help="validate only")
    r = sub.add_parser("report", help="summarise every finished experiment")
    r.add_argument("--out", default="reports/sweep", help="folder: README.md, latency.png, size.png, summary.json")
    r.add_argument("--variant", default="pruned_tflite_dynamic",
                   help="variant whose metrics to compare, or 'fastest' (each experiment's fastest)")
    args = ap.parse_args(argv)
    if args.command == "queue":
        n = validate(args.overrides)
        print(f"sweep: {n} valid experiment(s)", flush=True)
        if not args.dry_run:
            cmd = [sys.executable, "-m", "dvc", "exp", "run", "--queue"]
            for o in args.overrides:
                cmd += ["-S", o]
            proc = subprocess.run(cmd)
            if proc.returncode != 0:
                raise Train2InferError(f"dvc exp run --queue failed (exit {proc.returncode})")
    else:
        s = report(args.out, args.variant)
        print(f"sweep: {len(s['rows'])} experiments -> {args.out}/README.md; frontier (latency): "
              f"{', '.join(s['frontier_latency'])}; frontier (size): {', '.join(s['frontier_size'])}")


if __name__ == "__main__":
    cli.run(main)
