"""``shrink`` (``conf/shrink/default.yaml``): channel pruning that rebuilds a smaller dense model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from train2infer.core.params import ParamError, choice, ranged

CRITERIA = ("none", "dead", "l1", "l2")
RANKINGS = ("group", "global")
TARGETS = ("keep", "latency", "macs")
PRECISIONS = ("float", "int8")


@dataclass
class ShrinkConfig:
    """Which channels go (``criterion``, ``keep``), and the fine-tuning of the smaller model."""

    SECTION: ClassVar[str] = "shrink"
    criterion: str = choice(*CRITERIA)
    keep: float = ranged(0, 1, lo_open=True)  # fraction of each group's channels kept (l1 / l2)
    ranking: str = choice(*RANKINGS)  # keep per group, or one importance threshold across groups
    min_channels: int = ranged(1)
    round_to: int = ranged(1)  # kept widths are multiples of this
    exclude: list[str]  # layer-name patterns: a group running through a matching layer stays whole
    probe_images: int = ranged(1)  # training images on which dead channels are looked for
    epochs: int = ranged(0)  # in all, shared out over the steps
    batch_size: int = ranged(1)
    learning_rate: float = ranged(0, lo_open=True)
    steps: int = ranged(1)  # gradual shrinking: cut keep^(1/steps) of the channels, fine-tune, repeat
    distill_weight: float = ranged(0, 1)  # share of the trained model's softened outputs in the loss; 0: off
    temperature: float = ranged(0, lo_open=True)
    target: str = choice(*TARGETS)  # keep: the fraction above; latency / macs: a budget of the dense model's
    budget: float = ranged(0, 1, lo_open=True)  # ... predicted latency or MACs, as a fraction
    budget_ms: Optional[float]  # latency: milliseconds instead of a fraction (null: use budget)
    precision: str = choice(*PRECISIONS)  # the TFLite precision the latency tables are measured at
    grid_points: int = ranged(2)  # table widths per axis, from the floor to the full width
    time_layers: bool  # measure the tables (where the time goes) even with target keep

    def check(self) -> None:
        if self.distill_weight and not self.epochs:
            raise ParamError("distill_weight", self.distill_weight, "needs shrink.epochs >= 1: distillation "
                             "happens while fine-tuning (set shrink.distill_weight=0 for no fine-tuning)")
        if self.steps > 1 and self.criterion not in ("l1", "l2"):
            raise ParamError("steps", self.steps, f"needs shrink.criterion l1 or l2 (criterion {self.criterion} "
                             "cuts once)")
        if self.steps > 1 and self.epochs < self.steps:
            raise ParamError("steps", self.steps, f"needs shrink.epochs >= steps ({self.epochs} now): every step "
                             "fine-tunes at least one epoch")

        if self.target != "keep" and self.criterion not in ("l1", "l2"):
            raise ParamError("target", self.target, f"needs shrink.criterion l1 or l2 (criterion {self.criterion} "
                             "does not choose widths)")
        if self.budget_ms is not None and (self.target != "latency" or isinstance(self.budget_ms, bool)
                                           or not self.budget_ms > 0):
            raise ParamError("budget_ms", self.budget_ms, "must be > 0 milliseconds, and only with "
                             "shrink.target=latency (null: the fraction shrink.budget)")

    def step_keep(self) -> float:
        """The fraction each of the ``steps`` cuts keeps (their product is ``keep``)."""
        return self.keep ** (1.0 / self.steps)

    def step_epochs(self) -> list[int]:
        """Fine-tuning epochs of each step (``epochs`` shared out, the remainder to the last)."""
        share = self.epochs // self.steps
        return [share] * (self.steps - 1) + [self.epochs - share * (self.steps - 1)]
