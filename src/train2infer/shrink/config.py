"""``shrink`` (``conf/shrink/default.yaml``): channel pruning that rebuilds a smaller dense model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from train2infer.core.params import choice, ranged

CRITERIA = ("none", "dead", "l1", "l2")
RANKINGS = ("group", "global")


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
    epochs: int = ranged(0)
    batch_size: int = ranged(1)
    learning_rate: float = ranged(0, lo_open=True)
