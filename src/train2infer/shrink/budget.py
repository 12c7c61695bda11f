"""Widths for a budget: remove channels where they cost the least importance per unit saved.

HALP-style (Shen et al., 2022) greedy over dependency groups: every step offers, per group, its
next cut (down to the next multiple of ``round_to``, never below the group's floor), prices it as
the importance it removes over the cost it saves (latency from the measured tables, or MACs,
:class:`train2infer.models.cost.Cost`), and takes the cheapest, until the predicted cost is within
the budget; then cuts the budget no longer needs are given back, the most important first, and
one group's last cut is traded for another group's next one wherever that loses less importance
within the budget (a local search: on the default CNN greedy alone cut 56 channels to 0.42 of the
dense latency where 40 reach 0.49).
Free of TensorFlow: the tests build the groups and costs by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from train2infer.models.cost import Cost


@dataclass
class Option:
    """One free group as the chooser sees it."""

    name: str
    classes: list[int]  # most important first (live before dead)
    scores: np.ndarray  # importance of each, in the same order (dead: 0)
    floor: int  # fewest classes it may keep


def next_width(kept: int, floor: int, round_to: int) -> int | None:
    """The next smaller width of a group at ``kept``: the multiple of ``round_to`` below it, or
    None at the floor."""
    new = (kept - 1) // round_to * round_to
    return new if new >= max(floor, 1) else None


def greedy(options: list[Option], cost: Cost, budget: float, round_to: int) -> tuple[set[int], dict]:
    """The classes to remove so that ``cost`` is at most ``budget``, cheapest importance first.

    Returns:
        ``(removed classes, trace)``; ``trace`` has ``cost_before``, ``cost_after``, ``reached``,
        ``stopped`` (``budget``: met; ``floors``: every group at its floor first, the smallest model
        is returned; ``no saving``: groups are above their floors, but by the tables none of their
        next cuts makes the model faster, as measured tables of a tiny model can say) and ``steps``
        (group, width, importance lost, cost saved per step).
    """
    kept = {o.name: len(o.classes) for o in options}
    widths, removed, steps = cost.widths(), set(), []
    before = current = cost.total(widths)
    stopped = "budget"  # or why the loop below ended before meeting it
    while current > budget:
        best, stopped = None, "floors"
        for o in options:
            new = next_width(kept[o.name], o.floor, round_to)
            if new is None:
                continue
            drop = o.classes[new:kept[o.name]]
            trial = cost.remove(widths, drop)
            saved = current - cost.total(trial)
            if saved <= 0:
                stopped = "no saving"
                continue
            price = float(np.sum(o.scores[new:kept[o.name]])) / saved
            if best is None or price < best[0]:
                best = (price, o, new, drop, trial, saved)
        if best is None:
            break
        _, o, new, drop, widths, saved = best
        kept[o.name], current = new, current - saved
        removed.update(drop)
        steps.append({"group": o.name, "width": new, "lost": float(np.sum(o.scores[new:new + len(drop)])),
                      "saved": saved, "classes": list(drop)})
    if current <= budget:
        _give_back(steps, removed, cost, budget)
        while _swap(options, steps, removed, cost, budget, round_to):
            _give_back(steps, removed, cost, budget)
        current, stopped = cost.total(cost.widths(removed)), "budget"
    return removed, {"cost_before": before, "cost_after": current, "reached": current <= budget, "stopped": stopped,
                     "steps": [{k: v for k, v in s.items() if k != "classes"} for s in steps]}


def _give_back(steps: list[dict], removed: set[int], cost: Cost, budget: float) -> float:
    """Undo cuts the budget no longer needs (a group's last cut only, so its kept classes stay the
    most important), the most important first, while the budget holds. Greedy by price alone can
    overshoot: an early cheap cut may become unnecessary once a larger one was taken."""
    while True:
        last = {}
        for k, s in enumerate(steps):
            last[s["group"]] = k
        fits = []
        for k in last.values():
            back = removed - set(steps[k]["classes"])
            total = cost.total(cost.widths(back))
            if total <= budget:
                fits.append((steps[k]["lost"], k, back, total))
        if not fits:
            return cost.total(cost.widths(removed))
        _, k, back, _ = max(fits, key=lambda f: f[:2])
        removed.intersection_update(back)
        steps.pop(k)


def _swap(options: list[Option], steps: list[dict], removed: set[int], cost: Cost, budget: float,
          round_to: int) -> bool:
    """Trade one group's last cut for another group's next cut, the trade that loses the least
    importance within the budget; False when no trade loses less than the cut it undoes. Each trade
    lowers the importance lost, so repeating it ends. Price-per-millisecond greedy takes big savings
    first and can be left with slack no single step fits (the steps of a small model are coarse)."""
    last = {s["group"]: k for k, s in enumerate(steps)}
    best = None
    for k in last.values():
        undone = removed - set(steps[k]["classes"])
        undone_total = cost.total(cost.widths(undone))
        for o in options:
            if o.name == steps[k]["group"]:
                continue
            kept = len(o.classes) - len(undone.intersection(o.classes))
            new = next_width(kept, o.floor, round_to)
            if new is None:
                continue
            lost = float(np.sum(o.scores[new:kept]))
            gain = steps[k]["lost"] - lost
            if gain <= 1e-12 or (best is not None and gain <= best[0]):
                continue
            trial = undone | set(o.classes[new:kept])
            total = cost.total(cost.widths(trial))
            if total <= budget:
                best = (gain, k, trial, {"group": o.name, "width": new, "lost": lost,
                                         "saved": undone_total - total,
                                         "classes": list(o.classes[new:kept])})
    if best is None:
        return False
    _, k, trial, step = best
    steps.pop(k)
    steps.append(step)
    removed.clear()
    removed.update(trial)
    return True
