"""``train`` (``conf/train/default.yaml``): optimisation and device placement."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from train2infer.core.params import ParamError, choice, ranged

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")


@dataclass
class TrainConfig:
    """How the model is fitted; ``strategy`` and ``deterministic`` also apply to the
    fine-tuning in shrink and prune."""

    SECTION: ClassVar[str] = "train"
    epochs: int = ranged(0)  # 0: pass the model on as it is (model=file, or an application with weights)
    patience: int = ranged(0)  # early stopping on validation loss, best weights restored; 0: off
    batch_size: int = ranged(1)
    learning_rate: float = ranged(0, lo_open=True)
    scale_learning_rate: bool
    strategy: str = choice(*STRATEGIES)
    mixed_precision: bool
    jit_compile: bool
    deterministic: bool

    def check(self) -> None:
        if self.jit_compile and self.deterministic:
            raise ParamError("jit_compile", True, "needs train.deterministic=false: XLA has no deterministic "
                             "implementation of every gradient (e.g. MaxPool's)")
