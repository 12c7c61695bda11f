"""``prune`` (``conf/prune/default.yaml``): TF-MOT magnitude pruning and its fine-tuning."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from train2infer.core.params import ParamError, check_range, choice, ranged

SCHEDULES = ("polynomial_decay", "constant_sparsity")
PATTERNS = ("unstructured", "m_by_n", "block")
POLICIES = ("none", "xnnpack")


@dataclass
class PruneConfig:
    """Schedule, pattern and selection of TF-MOT's ``prune_low_magnitude``."""

    SECTION: ClassVar[str] = "prune"
    start_from: str = choice("trained", "shrunk")
    distill_weight: float = ranged(0, 1)  # share of the trained model's softened outputs in the loss; 0: off
    temperature: float = ranged(0, lo_open=True)
    schedule: str = choice(*SCHEDULES)
    initial_sparsity: float = ranged(0)
    final_sparsity: float = ranged(0, 1, hi_open=True)
    begin_fraction: float = ranged(0, 1, hi_open=True)
    end_fraction: float = ranged(0, 1)
    frequency: int = ranged(1)
    epochs: int = ranged(1)
    batch_size: int = ranged(1)
    learning_rate: float = ranged(0, lo_open=True)
    tolerance: float = ranged(0, 1)
    pattern: str = choice(*PATTERNS)
    m_by_n: list[int]
    block_size: list[int]
    policy: str = choice(*POLICIES)
    include: list[str]
    exclude: list[str]

    def check(self) -> None:
        check_range("initial_sparsity", self.initial_sparsity, 0, self.final_sparsity)
        check_range("end_fraction", self.end_fraction, self.begin_fraction, 1, lo_open=True)
        if len(self.m_by_n) != 2 or not 0 < self.m_by_n[0] < self.m_by_n[1]:
            raise ParamError("m_by_n", list(self.m_by_n), "must be [m, n] with 0 < m < n (m zeros in every n)")
        if len(self.block_size) != 2 or min(self.block_size) < 1:
            raise ParamError("block_size", list(self.block_size), "must be [rows, cols], each >= 1")
        if self.policy == "xnnpack" and self.pattern != "unstructured":
            raise ParamError("policy", self.policy, "works with prune.pattern=unstructured only")

    @property
    def target_sparsity(self) -> float:
        """The sparsity each pruned kernel must reach (``m_by_n`` fixes it at m / n)."""
        if self.pattern == "m_by_n":
            return self.m_by_n[0] / self.m_by_n[1]
        return self.final_sparsity

    def mask_steps(self, total_steps: int) -> tuple[int, int]:
        """:func:`schedule_steps` of this section over ``total_steps`` fine-tuning steps."""
        return schedule_steps(total_steps, self.begin_fraction, self.end_fraction, self.frequency)


def schedule_steps(
    total_steps: int, begin_fraction: float, end_fraction: float, frequency: int
) -> tuple[int, int]:
    """Begin and end steps of a pruning schedule, with the end on a mask-update step.

    TF-MOT updates masks only on steps where ``(step - begin) % frequency == 0``; an end
    step between two updates means the final sparsity is never applied, and a frequency
    larger than the schedule means masks are never updated at all.

    Args:
        total_steps: Fine-tuning steps (epochs x steps per epoch).
        begin_fraction: Start of the schedule as a fraction of ``total_steps``.
        end_fraction: End of the schedule as a fraction of ``total_steps``.
        frequency: Steps between mask updates.

    Returns:
        ``(begin_step, end_step)`` with ``end_step - begin_step`` a positive multiple of
        ``frequency`` and ``end_step < total_steps``.

    Raises:
        ParamError: If no mask update fits between begin and end.
    """
    begin = int(round(begin_fraction * total_steps))
    end_target = min(int(round(end_fraction * total_steps)), total_steps - 1)
    updates = (end_target - begin) // frequency
    if updates < 1:
        raise ParamError(
            "frequency", frequency,
            f"never updates the pruning masks: the schedule spans only {max(end_target - begin, 0)} of "
            f"{total_steps} fine-tuning steps (lower frequency, or raise epochs or end_fraction)")
    return begin, begin + updates * frequency
