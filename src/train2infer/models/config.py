"""``model`` (``conf/model/<name>.yaml``): one schema per architecture, defaults only in YAML."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from train2infer.core.params import choice, listed, ranged

MODELS = ("cnn", "mobilenet")


@dataclass
class CnnConfig:
    """``model=cnn``: stages of Conv2D -> BatchNorm -> ReLU, pooling, an optional hidden Dense."""

    SECTION: ClassVar[str] = "model"
    name: str = choice(*MODELS)
    filters: list[int] = listed("stage width", lo=1)
    convs_per_stage: int = ranged(1)
    kernel_size: int = ranged(1)
    dense_units: int = ranged(0)
    dropout: float = ranged(0, 1, hi_open=True)
    bn_momentum: float = ranged(0, 1, hi_open=True)


@dataclass
class MobileNetConfig:
    """``model=mobilenet``: a MobileNet-style chain that XNNPACK's sparse kernels accept."""

    SECTION: ClassVar[str] = "model"
    name: str = choice(*MODELS)
    stem_filters: int = ranged(1)
    filters: list[int] = listed("stage width", lo=1)
    blocks_per_stage: int = ranged(1)
    dropout: float = ranged(0, 1, hi_open=True)
    bn_momentum: float = ranged(0, 1, hi_open=True)


SCHEMAS: dict[str, type] = {"cnn": CnnConfig, "mobilenet": MobileNetConfig}


def options(cfg) -> dict:
    """The builder's keyword arguments of a model config (everything but ``name``)."""
    from train2infer.core.params import as_dict

    return {k: v for k, v in as_dict(cfg).items() if k != "name"}
