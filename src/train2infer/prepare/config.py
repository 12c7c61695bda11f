"""``prepare`` (``conf/prepare/<name>.yaml``): where images come from, how they are shaped and split.

``path`` is the folder the prepare stage reads and DVC tracks as its dependency (``dvc.yaml``
interpolates it). Sources that read no files (digits, shapes, keras) point it at
``data/sources``, a small tracked folder, so the dependency always exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from train2infer.core.params import ParamError, check_range, choice, ranged

SOURCES = ("digits", "folder", "shapes", "keras")
SHAPE_CLASSES = ("circle", "ellipse", "square", "rectangle", "triangle", "line", "cross", "star",
                 "ring", "hexagon")
KERAS_DATASETS = ("mnist", "fashion_mnist", "cifar10")


@dataclass
class DigitsConfig:
    """``prepare=digits``: scikit-learn's bundled handwritten digits."""

    SECTION: ClassVar[str] = "prepare"
    name: str = choice(*SOURCES)
    path: str
    image_size: int = ranged(1)
    channels: int = choice(1, 3)
    val_fraction: float = ranged(0, 1, lo_open=True, hi_open=True)
    test_fraction: Optional[float]  # a fraction; null only for prepare=keras

    def check(self) -> None:
        if not str(self.path).strip():
            raise ParamError("path", self.path, "must name a folder")
        if self.test_fraction is None:
            raise ParamError("test_fraction", None, f"must be a fraction for prepare={self.name}")
        check_range("test_fraction", self.test_fraction, 0, 1, lo_open=True, hi_open=True)
        if self.val_fraction + self.test_fraction >= 1:
            raise ParamError("test_fraction", self.test_fraction, "plus prepare.val_fraction must be < 1")


@dataclass
class FolderConfig(DigitsConfig):
    """``prepare=folder``: an image tree ``path/<class name>/*.png|jpg|jpeg|bmp|gif``."""

    workers: int = ranged(0)  # decode processes; 0 = one per core


@dataclass
class ShapesConfig(DigitsConfig):
    """``prepare=shapes``: procedurally drawn geometric shapes, deterministic by ``seed``."""

    count: int = ranged(1)
    classes: list[str] = choice(*SHAPE_CLASSES, each=True)
    min_size: float = ranged(0, 0.5, lo_open=True)
    max_size: float = ranged(0, 0.5)
    noise: float = ranged(0, 1)
    workers: int = ranged(0)

    def check(self) -> None:
        super().check()
        if len(self.classes) < 2:
            raise ParamError("classes", list(self.classes), "must list at least two shapes")
        if len(set(self.classes)) != len(self.classes):
            raise ParamError("classes", list(self.classes), "must not repeat a shape")
        check_range("max_size", self.max_size, self.min_size, 0.5)


@dataclass
class KerasConfig(DigitsConfig):
    """``prepare=keras``: a ``tf_keras.datasets`` dataset; its own test split is the test split."""

    dataset: str = choice(*KERAS_DATASETS)
    cache_dir: Optional[str]  # null: $KERAS_HOME or ~/.keras, as Keras does

    def check(self) -> None:
        if not str(self.path).strip():
            raise ParamError("path", self.path, "must name a folder")
        if self.test_fraction is not None:
            raise ParamError("test_fraction", self.test_fraction,
                             "is not used by prepare=keras (the dataset's own test split is the test split); "
                             "set it to null")


SCHEMAS: dict[str, type] = {"digits": DigitsConfig, "folder": FolderConfig, "shapes": ShapesConfig,
                            "keras": KerasConfig}
