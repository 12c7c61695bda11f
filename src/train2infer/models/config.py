"""``model`` (``conf/model/<name>.yaml``): one schema per kind of model, defaults only in YAML.

Every kind has ``path``: the file the model comes from, which DVC tracks as a dependency of
``train`` (``dvc.yaml`` interpolates it): the builders' code for models built here, the
user's saved model for ``model=file``, a local weights file for an application.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Optional

from train2infer.core.params import ParamError, choice, listed, ranged

MODELS = ("cnn", "resnet", "mobilenet", "application", "file")
# tf_keras.applications built here (weights=None: nothing downloads), and whether they take ``alpha``.
ARCHS = {"MobileNetV2": True, "MobileNetV3Small": True, "MobileNetV3Large": True, "ResNet50": False,
         "EfficientNetB0": False, "DenseNet121": False}
APPLICATION_MIN_SIZE = 32  # every listed application downsamples by 32


@dataclass
class CnnConfig:
    """``model=cnn``: stages of Conv2D -> BatchNorm -> ReLU, pooling, an optional hidden Dense."""

    SECTION: ClassVar[str] = "model"
    name: str = choice(*MODELS)
    path: str
    filters: list[int] = listed("stage width", lo=1)
    convs_per_stage: int = ranged(1)
    kernel_size: int = ranged(1)
    dense_units: int = ranged(0)
    dropout: float = ranged(0, 1, hi_open=True)
    bn_momentum: float = ranged(0, 1, hi_open=True)

    def min_image_size(self) -> int:
        """Each stage ends in a 2x2 max pooling (valid), which needs at least 2x2 pixels."""
        return 2 ** len(self.filters)


@dataclass
class ResNetConfig:
    """``model=resnet``: ResNet-9-style stages (conv, pooling, residual blocks of two convs)."""

    SECTION: ClassVar[str] = "model"
    name: str = choice(*MODELS)
    path: str
    filters: list[int] = listed("stage width", lo=1)
    residual_blocks: list[int] = listed("residual blocks of a stage", lo=0)
    dropout: float = ranged(0, 1, hi_open=True)
    bn_momentum: float = ranged(0, 1, hi_open=True)

    def check(self) -> None:
        if len(self.residual_blocks) != len(self.filters):
            raise ParamError("residual_blocks", self.residual_blocks, f"needs one entry per stage of model.filters "
                             f"({len(self.filters)})")

    def min_image_size(self) -> int:
        """Every stage after the first ends in a 2x2 max pooling (valid)."""
        return 2 ** (len(self.filters) - 1)


@dataclass
class MobileNetConfig:
    """``model=mobilenet``: a MobileNet-style chain that XNNPACK's sparse kernels accept."""

    SECTION: ClassVar[str] = "model"
    name: str = choice(*MODELS)
    path: str
    stem_filters: int = ranged(1)
    filters: list[int] = listed("stage width", lo=1)
    blocks_per_stage: int = ranged(1)
    dropout: float = ranged(0, 1, hi_open=True)
    bn_momentum: float = ranged(0, 1, hi_open=True)


    def min_image_size(self) -> int:
        """Padded 3x3 stride-2 convolutions take any size >= 1."""
        return 1


@dataclass
class ApplicationConfig:
    """``model=application``: a ``tf_keras.applications`` body (no top) with our classifier head."""

    SECTION: ClassVar[str] = "model"
    name: str = choice(*MODELS)
    path: str
    arch: str = choice(*ARCHS)
    alpha: float = ranged(0, lo_open=True)
    weights: Optional[str]  # null: random initialisation; else a local weights file (= path)
    dropout: float = ranged(0, 1, hi_open=True)
    bn_momentum: float = ranged(0, 1, hi_open=True)

    def check(self) -> None:
        if self.alpha != 1.0 and not ARCHS[self.arch]:
            raise ParamError("alpha", self.alpha, f"is not an option of {self.arch} (leave it at 1.0)")
        if self.weights is not None:
            if self.weights != self.path:
                raise ParamError("weights", self.weights, f"must also be model.path (now {self.path!r}) so that "
                                 "DVC tracks the file")
            if not Path(self.weights).is_file():
                raise ParamError("weights", self.weights, "is not a file")

    def min_image_size(self) -> int:
        return APPLICATION_MIN_SIZE


@dataclass
class FileConfig:
    """``model=file``: the user's tf_keras model (``.keras``, ``.h5`` or a SavedModel folder
    written by Keras); its shapes are checked against the data when ``train`` loads it."""

    SECTION: ClassVar[str] = "model"
    name: str = choice(*MODELS)
    path: str

    def check(self) -> None:
        if not Path(self.path).exists():
            raise ParamError("path", self.path, "does not exist (a .keras or .h5 file, or a SavedModel folder)")

    def min_image_size(self) -> int:
        return 1


SCHEMAS: dict[str, type] = {"cnn": CnnConfig, "resnet": ResNetConfig, "mobilenet": MobileNetConfig,
                            "application": ApplicationConfig, "file": FileConfig}


def check_fits(cfg, image_size: int, channels: int, epochs: int) -> None:
    """Rules between ``model`` and the other sections, checked before any work.

    Raises:
        ParamError: The images are too small for the architecture's downsampling, pretrained
            weights get other than 3 channels, or ``train.epochs=0`` would pass on random weights.
    """
    need = cfg.min_image_size()
    if image_size < need:
        what = cfg.arch if cfg.name == "application" else f"model={cfg.name} with these settings"
        raise ParamError("name", cfg.name, f"needs prepare.image_size >= {need} ({what} downsamples that much); "
                         f"got {image_size}", "model")
    if getattr(cfg, "weights", None) is not None and channels != 3:
        raise ParamError("weights", cfg.weights, f"are for RGB images; prepare.channels is {channels}", "model")
    if epochs == 0 and cfg.name != "file" and getattr(cfg, "weights", None) is None:
        raise ParamError("epochs", 0, f"would pass on untrained weights: model={cfg.name} starts from random "
                         "initialisation (epochs=0 is for model=file or an application with weights)", "train")


def options(cfg) -> dict:
    """The builder's keyword arguments of a model config (everything but ``name``)."""
    from train2infer.core.params import as_dict

    return {k: v for k, v in as_dict(cfg).items() if k not in ("name", "path")}
