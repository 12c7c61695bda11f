"""Sweeps: validate before queueing, and summarise every experiment.

    python tools/sweep.py queue -S 'prune.final_sparsity=range(0.5,0.95,0.1)' [-S ...]
    dvc queue start -j 2            # then wait: dvc queue status
    python tools/sweep.py report --out reports/sweep

``queue`` expands the sweep exactly as DVC does (Hydra ``choice``/``range`` syntax),
composes ``conf/`` for every combination and validates all of it with the stages' own
checks; only if every combination is valid does it call ``dvc exp run --queue`` with the
same arguments. Bad syntax or an unknown key ends in one ``error:`` line and nothing is
queued.

``bench`` measures the exported models of several experiments **together**, in one interleaved
session with evaluate's method (each variant in its own process, rotating rounds), so their
latencies can be compared; ``report`` then takes latency from it and says so. Experiments timed
alone, or two at a time under ``dvc queue start -j 2``, saw different machines. Models come from
DVC's cache (``dvc exp show``'s experiments; ``workspace`` for the files here); nothing is
re-trained.

    python tools/sweep.py bench [EXP ...] --out reports/sweep     # default: every experiment shown

``report`` reads every experiment of every commit (``dvc exp show --json --all-commits``) and writes a Markdown table
of each experiment's changed parameters and key metrics of one variant (default
``pruned_tflite_dynamic``, the end of the optimisation chain), and accuracy-vs-latency and
accuracy-vs-size Pareto plots with the frontier experiments named, ready for
``dvc exp apply NAME``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import train2infer  # noqa: F401  (first: fixes the Keras flavour before TensorFlow loads)
from train2infer import Train2InferError, config
from train2infer.core import cli
from train2infer.core.params import ParamError, ParamsFileError

METRICS = "reports/evaluate/metrics.json"
PREPARED = "data/prepared"


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
                    data = ((d.get("deps") or {}).get(PREPARED) or {}).get("hash")
                    found.append({"name": rev.get("name") or rev["rev"][:7], "rev": rev["rev"],
                                  "params": _flatten(p), "baseline": baseline, "metrics": m, "data": data})
    return found


def by_data(data_of: dict[str, str | None]) -> list[list[str]]:
    """Experiments grouped by the prepared data they were evaluated on (the hash DVC records for
    ``data/prepared``), groups in first-seen order; an unknown hash is a group of its own.
    Latency is measured on a group's own test images, and accuracy compared within a group only:
    on other test sets it means something else."""
    groups: dict[str, list[str]] = {}
    for name, digest in data_of.items():
        groups.setdefault(digest or f"unknown:{name}", []).append(name)
    return list(groups.values())


def workspace_data() -> str | None:
    """The hash ``dvc.lock`` records for this folder's prepared data (None without one)."""
    import yaml

    try:
        outs = yaml.safe_load(Path("dvc.lock").read_text())["stages"]["prepare"]["outs"]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return None
    return next((o.get("md5") for o in outs if o.get("path") == PREPARED), None)


def gather(names: list[str], shown: list[dict], dest: Path) -> dict[str, Path]:
    """Each experiment's ``models/export``, ``models/trained.keras`` and prepared test split
    (``prepared/``) into ``dest/<name>/`` from DVC's cache (``workspace``: the files in this
    folder, as they are).

    Raises:
        Train2InferError: An unknown experiment, or outputs that are not in the cache.
    """
    from dvc.api import DVCFileSystem

    revs = {e["name"]: e["rev"] for e in experiments(shown)}
    out = {}
    for name in names:
        if name == "workspace":
            out[name] = dest / name
            (dest / name).mkdir(parents=True)
            for src, dst in (("models/export", "export"), ("models/trained.keras", "trained.keras"),
                             (PREPARED, "prepared")):
                (dest / name / dst).symlink_to(Path(src).resolve())
            continue
        if name not in revs:
            raise Train2InferError(f"sweep bench: no finished experiment {name!r} (dvc exp show lists "
                                   f"{', '.join(revs) or 'none'})")
        folder = dest / name
        try:
            fs = DVCFileSystem(".", rev=revs[name])
            fs.get("models/export", str(folder / "export"), recursive=True)
            fs.get_file("models/trained.keras", str(folder / "trained.keras"))
            (folder / "prepared").mkdir(parents=True, exist_ok=True)
            for f in ("test.npz", "meta.json"):
                fs.get_file(f"{PREPARED}/{f}", str(folder / "prepared" / f))
        except Exception as exc:  # noqa: BLE001 - DVC raises many kinds; one line names the culprit
            raise Train2InferError(f"sweep bench: models of experiment {name} are not in the DVC cache "
                                   f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                                   "dvc exp pull it first") from None
        out[name] = folder
    return out


def bench(names: list[str], cfg) -> dict:
    """Time the baseline and every variant of each experiment, interleaved, one session per group
    of experiments that share their prepared data (:func:`by_data`), on that data's test images.

    Args:
        names: Experiments (``workspace`` for this folder's models); empty: every experiment
            ``dvc exp show`` lists.
        cfg: The ``evaluate`` section (the method: runtimes, warm-up, rounds, first thread count).

    Returns:
        ``{"method", "machine", "sessions": [{"experiments", "data", "rounds", "variants", "state"}],
        "experiments": {name: {"rev", "data", "session", "variants": {variant: {"p50_ms", "speedup_p50",
        "speedup_p50_ci_low", "speedup_p50_ci_high"}}}}}``: speedups over each experiment's own
        baseline, intervals bootstrapped over its session's rounds.
    """
    from train2infer import machine

    shown = _exp_show([])
    exps = {e["name"]: e for e in experiments(shown)}
    names = names or list(exps)
    if not names:
        raise Train2InferError("sweep bench: no finished experiment to measure (run a sweep first: see README)")
    data_of = {n: exps[n]["data"] if n in exps else workspace_data() for n in names}
    result, sessions = {}, []
    with tempfile.TemporaryDirectory(prefix="t2i-bench-") as tmp:
        folders = gather(names, shown, Path(tmp))
        for i, group in enumerate(by_data(data_of)):
            rows, session = _session({n: folders[n] for n in group}, cfg)
            sessions.append(session | {"experiments": group, "data": data_of[group[0]]})
            result |= {n: {"rev": exps[n]["rev"] if n in exps else "workspace", "data": data_of[n], "session": i,
                           **rows[n]} for n in group}
    return {"method": {"threads": sessions[0]["threads"], "rounds": sessions[0]["rounds"],
                       "runs_per_round": cfg.runs_per_round, "variants": sum(s["variants"] for s in sessions),
                       "sessions": len(sessions)},
            "machine": machine.describe(), "sessions": sessions, "experiments": result}


def _session(folders: dict[str, Path], cfg) -> tuple[dict, dict]:
    """One interleaved session over the experiments in ``folders`` (same prepared data), on the
    first 64 test images of the first one's ``prepared/``; per experiment its rows, and the session."""
    import dataclasses

    from train2infer import machine, stats
    from train2infer.core.variants import BASELINE, read_manifest
    from train2infer.evaluate import worker
    from train2infer.evaluate.run import select
    from train2infer.prepared import load_prepared, to_float

    variants = {}
    for name, folder in folders.items():
        exported, _ = read_manifest(folder / "export")
        timed, _ = select(dataclasses.replace(BASELINE, path=str(folder / "trained.keras")), exported,
                          [r for r in cfg.runtimes if r != "openvino"])
        variants |= {f"{name}/{v.name}": v for v in timed}
    x = to_float(load_prepared(next(iter(folders.values())) / "prepared", "test")[0])
    threads = cfg.threads[0] or os.cpu_count() or 1
    before = machine.snapshot()
    got = worker.session(variants, threads, x, cfg, label="sweep bench")
    state = machine.state(before, machine.snapshot(), cfg.busy_threshold)
    rounds = {k: stats.by_round(v, cfg.runs_per_round) for k, v in got["samples_ms"].items()}
    rows = {}
    for name in folders:
        mine = {k.split("/", 1)[1]: r for k, r in rounds.items() if k.startswith(f"{name}/")}
        speed, quiet_share = stats.speedups(mine, BASELINE.name, tolerance=cfg.quiet_tolerance,  # as evaluate
                                            block=cfg.bootstrap_block, session_cv=cfg.session_cv)
        rows[name] = {"quiet_rounds": round(quiet_share, 4), "variants": {
            v: {"p50_ms": round(t["latency_p50_ms_quiet"], 6), "speedup_p50": round(t["speedup_p50"], 4),
                "speedup_p50_ci_low": round(t["speedup_p50_ci_low"], 4),
                "speedup_p50_ci_high": round(t["speedup_p50_ci_high"], 4)} for v, t in speed.items()}}
    return rows, {"threads": threads, "rounds": got["rounds"], "variants": len(variants), "state": state}


def _exp_show(extra: list[str]) -> list[dict]:
    proc = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json", *extra],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise Train2InferError(f"dvc exp show failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(proc.stdout)


def summarize(exps: list[dict], variant: str, benched: dict | None = None) -> dict:
    """Per experiment: the parameters that differ from its baseline commit, and the
    variant's accuracy, p50 latency, gzip size, sparsity and speedup; plus both Pareto
    frontiers. Where ``benched`` (:func:`bench`) measured the experiment's variant, latency and
    speedup (with its interval) are taken from there (``timed``: ``together``), else from the
    experiment's own evaluate (``alone``)."""
    from train2infer.report.plots import pareto_front

    changed_keys = sorted({k for e in exps for k, v in e["params"].items() if e["baseline"].get(k) != v})
    rows = []
    for e in exps:
        variants = e["metrics"]["variants"]
        chosen = variant
        if variant == "fastest":  # each experiment's fastest variant (other than the baseline)
            chosen = max((n for n in variants if n != e["metrics"].get("baseline")),
                         key=lambda n: variants[n]["speedup_p50"])
        elif variant == "best":  # each experiment's best: the fastest within its accuracy floor
            chosen = e["metrics"].get("headline", {}).get("best_variant")
        v = variants.get(chosen)
        if v is None:
            continue
        row = {"name": e["name"], "rev": e["rev"][:7], "variant": chosen,
               "params": {k: e["params"].get(k) for k in changed_keys},
               "accuracy": v["accuracy"], "latency_p50_ms": v["latency_p50_ms"],
               "gzip_bytes": v["gzip_bytes"], "sparsity": v["sparsity"], "speedup_p50": v["speedup_p50"],
               "timed": "alone", "within_floor": v.get("within_floor", True), "data": e.get("data") or "unknown",
               "chance_check_off": e["params"].get("evaluate.chance_check") is False}
        b = ((benched or {}).get("experiments", {}).get(e["name"]) or {})
        if b.get("rev") == e["rev"] and chosen in b["variants"]:
            t = b["variants"][chosen]
            row |= {"latency_p50_ms": t["p50_ms"], "speedup_p50": t["speedup_p50"], "timed": "together",
                    "speedup_p50_ci_low": t["speedup_p50_ci_low"], "speedup_p50_ci_high": t["speedup_p50_ci_high"]}
        rows.append(row)
    groups = [[r for r in rows if r["data"] == d] for d in dict.fromkeys(r["data"] for r in rows)]
    groups.sort(key=len, reverse=True)  # the largest first: its plots are latency.png / size.png
    fronts = [{"data": g[0]["data"], "experiments": [r["name"] for r in g],
               "latency": pareto_front({r["name"]: (r["latency_p50_ms"], r["accuracy"]) for r in g}),
               "size": pareto_front({r["name"]: (r["gzip_bytes"], r["accuracy"]) for r in g})} for g in groups]
    return {"variant": variant, "changed": changed_keys, "rows": rows, "groups": fronts,
            "frontier_latency": fronts[0]["latency"] if fronts else [],
            "frontier_size": fronts[0]["size"] if fronts else []}


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
    """The sweep report: one table and one pair of frontiers per prepared dataset."""
    rows, groups = summary["rows"], summary["groups"]
    out = [
        "# Sweep summary",
        "",
        f"{len(rows)} experiments; metrics of `{summary['variant']}`"
        + {"fastest": " (each experiment's fastest variant)",
           "best": " (each experiment's best: the fastest within its accuracy floor, `evaluate.max_drop`; an "
                   "experiment where none qualifies is left out)"}.get(summary["variant"], "")
        + ". Pick one with `dvc exp apply NAME`.",
        "",
        "(`—`: the parameter did not exist at the experiment's commit.)",
        "",
        latency_source(summary), "",
    ]
    if len(groups) > 1:
        out += [f"The experiments ran on {len(groups)} different prepared datasets (`data/prepared` hashes): "
                "accuracy on another test set means something else, so each dataset has its own table and "
                "frontiers, and nothing is ranked across them.", ""]
    for k, g in enumerate(groups):
        if len(groups) > 1:
            out += [f"## Data `{g['data'][:12]}` ({len(g['experiments'])} experiment(s))", ""]
        out += _table([r for r in rows if r["name"] in g["experiments"]], summary["changed"])
        suffix = "" if k == 0 else f"-{k}"
        for what, key in (("latency", "latency"), ("size", "size")):
            out += ["", f"{'#' * (2 + (len(groups) > 1))} Accuracy vs {what}", "",
                    f"![accuracy vs {what}]({figures}/{key}{suffix}.png)", "",
                    "Frontier: " + ", ".join(f"`{n}`" for n in g[key]) + "."]
        out.append("")
    return "\n".join(out)


def _table(rows: list[dict], keys: list[str]) -> list[str]:
    out = ["| experiment | rev | " + " | ".join(keys) + " | variant | accuracy | p50 ms | speedup p50 [95% CI] | timed "
           "| gzip B | sparsity |", "|---" * (len(keys) + 9) + "|"]
    for r in sorted(rows, key=lambda r: r["latency_p50_ms"]):
        # —: not a parameter at that commit
        cells = " | ".join("—" if r["params"][k] is None else str(r["params"][k]) for k in keys)
        speed = f"{r['speedup_p50']:.2f}×" + (f" [{r['speedup_p50_ci_low']:.2f}, {r['speedup_p50_ci_high']:.2f}]"
                                              if "speedup_p50_ci_low" in r else "")
        flags = ("" if r["within_floor"] else " (outside the accuracy floor)") + \
            (" (baseline not checked against chance)" if r.get("chance_check_off") else "")
        out.append(f"| {r['name']} | {r['rev']} | {cells}{' | ' if keys else ''}{r['variant']}{flags} | "
                   f"{r['accuracy']:.4f} | {r['latency_p50_ms']:.3f} | {speed} | {r['timed']} | {r['gzip_bytes']:,} | "
                   f"{r['sparsity']:.3f} |")
    return out


def latency_source(summary: dict) -> str:
    """Where the report's latencies come from, in one paragraph."""
    b = summary.get("bench")
    together = [r["name"] for r in summary["rows"] if r["timed"] == "together"]
    if not b or not together:
        return ("Latency: as each experiment measured itself (`timed: alone`). Experiments run in parallel "
                "(`dvc queue start -j 2` on 2 cores) competed for the CPU, so these columns are **not comparable "
                "across experiments**: run `python tools/sweep.py bench` to measure them together.")
    sessions = b.get("sessions") or [{"state": b["machine"].get("state", {})}]
    others = [s["state"]["others_fraction"] for s in sessions if s["state"].get("others_fraction") is not None]
    busy = f"; other processes used up to {max(others):.1%} of the CPUs" if others else ""
    how = ("one interleaved session" if len(sessions) == 1 else
           f"{len(sessions)} interleaved sessions, one per prepared dataset (each on its own test images)")
    return (f"Latency and speedup of {len(together)} experiment(s) (`timed: together`) from `python tools/sweep.py "
            f"bench`: {how}, {b['method']['variants']} models each in its own process, "
            f"{b['method']['rounds']} rotating rounds of {b['method']['runs_per_round']} calls, "
            f"{b['method']['threads']} thread(s){busy}; speedups over each experiment's own baseline, over the "
            "rounds in which the machine was quiet, with evaluate's 95 % interval (moving-block bootstrap over "
            "rounds, widened by `evaluate.session_cv`; `bench.json`). Rows marked `alone` were timed by their own "
            "evaluate and are not comparable with the others.")


def report(out: str, variant: str, benched: dict | None = None) -> dict:
    """Read every experiment and write the sweep report (``out/README.md``), its two plots and data.

    Args:
        out: The report folder.
        variant: The variant to compare (or ``fastest``).
        benched: A :func:`bench` result (written to ``out/bench.json``); None: the one already in
            ``out/bench.json``, if any.
    """
    from train2infer.core.publish import publish, write_json

    exps = experiments(_exp_show(["--all-commits"]))
    if not exps:
        raise Train2InferError("no finished experiment to summarise (run a sweep first: see README)")
    if benched is None and (Path(out) / "bench.json").is_file():
        benched = json.loads((Path(out) / "bench.json").read_text())
    summary = summarize(exps, variant, benched) | {"bench": benched}
    if not summary["rows"]:
        raise Train2InferError(f"no experiment has metrics for variant {variant!r}")
    with publish(out) as staged:
        fig = staged(out)
        fig.mkdir()
        for k, g in enumerate(summary["groups"]):
            rows, suffix = [r for r in summary["rows"] if r["name"] in g["experiments"]], "" if k == 0 else f"-{k}"
            _plot(rows, "latency_p50_ms", "p50 latency (ms)", g["latency"], fig / f"latency{suffix}.png")
            _plot(rows, "gzip_bytes", "gzip size (bytes)", g["size"], fig / f"size{suffix}.png")
        write_json(fig / "summary.json", {k: v for k, v in summary.items() if k != "bench"})
        if benched:
            write_json(fig / "bench.json", benched)
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
                   help="variant whose metrics to compare, 'best' (each experiment's fastest within its accuracy "
                        "floor) or 'fastest' (whatever its accuracy)")
    b = sub.add_parser("bench", help="measure experiments' models together, then write the report")
    b.add_argument("experiments", nargs="*", help="experiment names (workspace: this folder); default: dvc exp show's")
    b.add_argument("--out", default="reports/sweep", help="report folder (bench.json, README.md, plots)")
    b.add_argument("--variant", default="pruned_tflite_dynamic", help="as for report")
    b.add_argument("--params", default="params.yaml", help="its evaluate section is the method")
    args = ap.parse_args(argv)
    if args.command == "bench":
        benched = bench(args.experiments, config.load_checked(args.params).evaluate)
        for name, e in benched["experiments"].items():
            for v, t in e["variants"].items():
                print(f"bench: {name:24s} {v:28s} p50 {t['p50_ms']:.3f} ms  {t['speedup_p50']:.2f}x "
                      f"[{t['speedup_p50_ci_low']:.2f}, {t['speedup_p50_ci_high']:.2f}]", flush=True)
        report(args.out, args.variant, benched)
        print(f"sweep: bench of {len(benched['experiments'])} experiment(s) -> {args.out}/bench.json, README.md")
    elif args.command == "queue":
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
