"""What a set of channel widths costs: per-layer tables over input x output width, summed.

Free of TensorFlow: the tables are plain numbers (:mod:`train2infer.models.latency` measures them
on LiteRT, or counts multiply-adds), so the width chooser and its tests need no model.

A *block* is one kernel layer (Conv2D, Dense, DepthwiseConv2D, SeparableConv2D ...: every layer
whose rule counts MACs): its input positions and output channels each belong to a channel class,
so removing a set of classes lowers its input width by the positions those classes hold there
(a Flatten'd input holds ``H x W`` per class) and its output width likewise (a depthwise layer's
output classes are its input's). Its cost is read from its :class:`Table` at the remaining widths;
the model's cost is the sum over blocks plus a fixed part (per-call overhead and the element-wise
layers the tables do not cover).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Table:
    """A cost on a grid of input widths (``cin``) x output widths (``cout``), bilinear in between.

    An axis with one point is constant along it (a pinned width, or a depthwise layer's output,
    which follows its input). Outside the grid the nearest edge holds.
    """

    cin: list[int]
    cout: list[int]
    values: list[list[float]]  # values[i][j] at (cin[i], cout[j])

    def at(self, cin: float, cout: float) -> float:
        """The interpolated cost at widths ``(cin, cout)``."""
        v = np.asarray(self.values, dtype=np.float64)
        rows = v[:, 0] if len(self.cout) == 1 else np.array([np.interp(cout, self.cout, r) for r in v])
        return float(rows[0] if len(self.cin) == 1 else np.interp(cin, self.cin, rows))

    def to_json(self) -> dict:
        return {"cin": list(self.cin), "cout": list(self.cout), "values": [list(map(float, r)) for r in self.values]}


@dataclass
class Block:
    """One kernel layer as the cost model sees it."""

    name: str
    kind: str  # the layer class
    cin: int  # full input width (positions of the last axis)
    cout: int  # full output width
    in_mult: dict[int, int] = field(default_factory=dict)  # class -> input positions it holds
    out_mult: dict[int, int] = field(default_factory=dict)  # class -> output channels it holds


def multiplicity(classes: np.ndarray) -> dict[int, int]:
    """How many positions of a tensor each channel class holds."""
    ids, counts = np.unique(np.asarray(classes, dtype=np.int64), return_counts=True)
    return {int(i): int(c) for i, c in zip(ids, counts)}


class Cost:
    """The predicted cost of a model at any set of removed classes.

    Args:
        blocks: The model's kernel layers.
        tables: Block name -> its table (a block without one costs nothing here: its time is in
            ``fixed``).
        fixed: The part no table covers.
        quadratic: The blocks' sum ``S`` costs ``S + quadratic * S ** 2`` (what grows or shrinks
            faster than the layers, fitted by :func:`train2infer.models.latency.calibrate`).
    """

    def __init__(self, blocks: list[Block], tables: dict[str, Table], fixed: float = 0.0, quadratic: float = 0.0):
        self.blocks = [b for b in blocks if b.name in tables]
        self.tables, self.fixed, self.quadratic = tables, float(fixed), float(quadratic)

    def widths(self, removed=()) -> np.ndarray:
        """``(n_blocks, 2)`` input and output widths after removing the classes ``removed``."""
        return self.remove(np.array([[b.cin, b.cout] for b in self.blocks], dtype=np.int64).reshape(-1, 2), removed)

    def remove(self, widths: np.ndarray, drop) -> np.ndarray:
        """``widths`` with the classes ``drop`` removed as well (a new array)."""
        out = widths.copy()
        for k, b in enumerate(self.blocks):
            out[k, 0] -= sum(b.in_mult.get(c, 0) for c in drop)
            out[k, 1] -= sum(b.out_mult.get(c, 0) for c in drop)
        return out

    def per_block(self, widths: np.ndarray) -> dict[str, float]:
        """Each block's cost at ``widths``."""
        return {b.name: self.tables[b.name].at(*widths[k]) for k, b in enumerate(self.blocks)}

    def shares(self, widths: np.ndarray) -> dict[str, float]:
        """Each block's part of :meth:`total` without the fixed part (the quadratic term spread in
        proportion)."""
        raw = self.per_block(widths)
        scale = 1.0 + self.quadratic * sum(raw.values())
        return {n: v * scale for n, v in raw.items()}

    def total(self, widths: np.ndarray) -> float:
        """The model's cost at ``widths``: the blocks (with the quadratic term) plus the fixed part."""
        s = sum(self.per_block(widths).values())
        return self.fixed + s + self.quadratic * s * s
