"""``convert`` (``conf/convert/default.yaml``): TFLite conversion, quantization, output checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from train2infer.core.params import ParamError, choice, ranged
from train2infer.core.variants import QUANTIZATIONS


@dataclass
class ConvertConfig:
    """What convert exports (every listed quantization of every source) and how it checks it."""

    SECTION: ClassVar[str] = "convert"
    quantization: list[str] = choice(*QUANTIZATIONS, each=True)  # besides float32, always exported
    int8_io: bool
    sparse_format: bool
    representative_images: int = ranged(1)
    check_images: int = ranged(1)
    float_atol: float = ranged(0, lo_open=True)
    fold_atol: float = ranged(0, lo_open=True)
    pqat_epochs: int = ranged(1)
    pqat_learning_rate: float = ranged(0, lo_open=True)
    batch_size: int = ranged(1)
    max_drop: Optional[float]  # points; None: no accuracy control
    max_float_layers: int = ranged(1)
    control_images: int = ranged(1)
    qat_fallback: bool  # still outside after max_float_layers: quantization-aware training (pqat_epochs)

    def check(self) -> None:
        if self.max_drop is not None and (isinstance(self.max_drop, bool) or self.max_drop < 0):
            raise ParamError("max_drop", self.max_drop, "must be >= 0 (accuracy points), or null for no control")
        if len(set(self.quantization)) != len(self.quantization):
            raise ParamError("quantization", list(self.quantization), "must not repeat a mode")
        if self.int8_io and not {"int8", "pqat"} & set(self.quantization):
            raise ParamError("int8_io", self.int8_io, "needs int8 or pqat in convert.quantization")
