"""``scratch`` (``conf/scratch/default.yaml``): the shrunk architecture trained from scratch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from train2infer.core.params import ParamError


@dataclass
class ScratchConfig:
    """How long the control trains; everything else is the ``train`` section's recipe."""

    SECTION: ClassVar[str] = "scratch"
    epochs: Optional[int]  # null: the shrunk model's epochs in all (train's epochs run + shrink.epochs)

    def check(self) -> None:
        if self.epochs is not None and (isinstance(self.epochs, bool) or self.epochs < 1):
            raise ParamError("epochs", self.epochs, "must be >= 1, or null for the shrunk model's epochs in all")
