"""``evaluate`` (``conf/evaluate/default.yaml``): how accuracy, latency, throughput and memory are measured."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from train2infer.core.params import listed, ranged


@dataclass
class EvaluateConfig:
    """The measurement method (see :mod:`train2infer.evaluate.timing`)."""

    SECTION: ClassVar[str] = "evaluate"
    threads: list[int] = listed("thread count", lo=0)  # 0 = all cores
    warmup_runs: int = ranged(1)
    min_runs: int = ranged(200)
    min_seconds: float = ranged(0)
    runs_per_round: int = ranged(1)
    block_warmup: int = ranged(0)
    batch_sizes: list[int] = listed("batch size", lo=1)
    throughput_seconds: float = ranged(0, lo_open=True)
    cv_threshold: float = ranged(0, 1, lo_open=True)
