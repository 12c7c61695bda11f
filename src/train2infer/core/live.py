"""DVCLive's per-step TSV files (``plots/metrics/<split>/<name>.tsv``), read and trimmed."""

from __future__ import annotations

from pathlib import Path


def read_tsv(path: str | Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a DVCLive TSV (empty if the file does not exist or is empty)."""
    p = Path(path)
    lines = p.read_text().splitlines() if p.is_file() else []
    if not lines:
        return [], []
    return lines[0].split("\t"), [r.split("\t") for r in lines[1:] if r.strip()]


def series(folder: str | Path, split: str, name: str) -> list[tuple[int, float]]:
    """``(step, value)`` rows of metric ``split/name`` in a DVCLive folder."""
    header, rows = read_tsv(Path(folder) / "plots" / "metrics" / split / f"{name}.tsv")
    if not header:
        return []
    s, v = header.index("step"), header.index(name)
    return [(int(r[s]), float(r[v])) for r in rows]


def truncate(plots_dir: str | Path, step: int) -> None:
    """Drop the rows with ``step >= step`` from every TSV under ``plots_dir``."""
    for tsv in Path(plots_dir).rglob("*.tsv"):
        header, rows = read_tsv(tsv)
        if not header:
            continue
        col = header.index("step")
        kept = ["\t".join(r) + "\n" for r in rows if int(r[col]) < step]
        tsv.write_text("\t".join(header) + "\n" + "".join(kept))
