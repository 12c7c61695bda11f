"""``evaluate`` (``conf/evaluate/default.yaml``): how accuracy, latency, throughput and memory are measured."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from train2infer.core.params import ParamError, listed, ranged

RUNTIMES = ("litert", "tensorflow", "openvino")


@dataclass
class EvaluateConfig:
    """The measurement method (see :mod:`train2infer.timing`)."""

    SECTION: ClassVar[str] = "evaluate"
    runtimes: list[str] = listed("runtime", choice=RUNTIMES)
    threads: list[int] = listed("thread count", lo=0)  # 0 = all cores
    warmup_runs: int = ranged(1)
    min_runs: int = ranged(200)
    min_seconds: float = ranged(0)
    min_seconds_others: float = ranged(0)  # the thread counts after the first
    runs_per_round: int = ranged(1)
    block_warmup: int = ranged(0)
    batch_sizes: list[int] = listed("batch size", lo=1)
    throughput_seconds: float = ranged(0, lo_open=True)
    cv_threshold: float = ranged(0, 1, lo_open=True)
    busy_threshold: float = ranged(0, 1, lo_open=True)
    quiet_tolerance: float = ranged(0, lo_open=True)
    bootstrap_block: int = ranged(1)
    session_cv: float = ranged(0, 1)
    chance_check: bool  # stop when the baseline is not significantly above the most common class
    max_drop: float = ranged(0, 100)  # accuracy floor, points: "best" loses at most this, not significantly

    def check(self) -> None:
        import os

        cores = os.cpu_count() or 1
        if any(t > cores for t in self.threads):
            raise ParamError("threads", list(self.threads), f"asks for more threads than this machine's {cores} "
                             "cores: the figures would time contention, not the model (0 = all cores)")
        if len(set(self.runtimes)) != len(self.runtimes):
            raise ParamError("runtimes", list(self.runtimes), "must not repeat a runtime")
        if "openvino" in self.runtimes:
            import importlib.util

            if importlib.util.find_spec("openvino") is None:
                raise ParamError("runtimes", list(self.runtimes), "lists openvino, which is not installed: "
                                 "pip install -e '.[openvino]' (or drop it from evaluate.runtimes)")
