"""``train`` (``conf/train/default.yaml``): optimisation and device placement."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from train2infer.core.params import ParamError, choice, ranged

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine")
AUGMENTS = ("auto", "none", "flip", "translate", "flip_translate")


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
    # the recipe, also used by every fine-tune (shrink, prune)
    optimizer: str = choice(*OPTIMIZERS)
    schedule: str = choice(*SCHEDULES)
    warmup_epochs: float = ranged(0)
    weight_decay: float = ranged(0, 1, hi_open=True)
    label_smoothing: float = ranged(0, 1, hi_open=True)
    augment: str = choice(*AUGMENTS)
    translate: int = ranged(0)

    def check(self) -> None:
        if self.schedule == "cosine" and self.patience:
            raise ParamError("patience", self.patience, "would stop a cosine schedule before it decays; set "
                             "train.patience=0 with train.schedule=cosine (it trains all train.epochs)")
        if self.warmup_epochs and self.schedule != "cosine":
            raise ParamError("warmup_epochs", self.warmup_epochs, "needs train.schedule=cosine")
        if self.epochs and self.warmup_epochs >= self.epochs:
            raise ParamError("warmup_epochs", self.warmup_epochs, f"must be < train.epochs ({self.epochs}): the "
                             "schedule would never decay")
        if self.jit_compile and self.deterministic:
            raise ParamError("jit_compile", True, "needs train.deterministic=false: XLA has no deterministic "
                             "implementation of every gradient (e.g. MaxPool's)")

    def check_image(self, image_size: int) -> None:
        """Rules against the prepared images: a shift must leave part of the image (reflect padding)."""
        if self.translate >= image_size:
            raise ParamError("translate", self.translate, f"shifts by more than the image (prepare.image_size="
                             f"{image_size}); it must be < {image_size}", self.SECTION)
