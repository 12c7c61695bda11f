"""``prepare`` (``conf/prepare/<name>.yaml``): where images come from, how they are shaped and split.

``path`` is the folder the prepare stage reads and DVC tracks as its dependency (``dvc.yaml``
interpolates it). Sources that read no files (digits, shapes, keras) point it at
``data/sources``, a small tracked folder, so the dependency always exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Optional

from train2infer.core.params import ParamError, check_range, choice, ranged

SOURCES = ("digits", "folder", "shapes", "keras")
SHAPE_CLASSES = ("circle", "ellipse", "square", "rectangle", "triangle", "line", "cross", "star",
                 "ring", "hexagon")
KERAS_DATASETS = ("mnist", "fashion_mnist", "cifar10")
MAX_IMAGE_SIZE = 2048  # pixels a side: the prepared splits are held in memory (2048 x 2048 x 3 = 12 MB an image)


@dataclass
class DigitsConfig:
    """``prepare=digits``: scikit-learn's bundled handwritten digits."""

    SECTION: ClassVar[str] = "prepare"
    name: str = choice(*SOURCES)
    path: str
    image_size: int = ranged(1, MAX_IMAGE_SIZE)  # side in pixels
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
    """``prepare=folder``: an image tree ``path/<class name>/<images>`` (every format Pillow reads),
    or split folders inside ``path`` (``train_path``, ``val_path``, ``test_path``) each holding the
    class folders, as benchmarks ship them: a given split is used as it is, a missing one is cut
    from the training folder (``val_fraction`` / ``test_fraction``, stratified)."""

    val_fraction: Optional[float]  # null when val_path is given
    test_fraction: Optional[float]  # null when test_path is given
    workers: int = ranged(0)  # decode processes; 0 = one per core
    train_path: Optional[str]  # folders inside path; null: path itself holds the class folders
    val_path: Optional[str]
    test_path: Optional[str]

    def check(self) -> None:
        if not str(self.path).strip():
            raise ParamError("path", self.path, "must name a folder")
        for key in ("train_path", "val_path", "test_path"):
            sub = getattr(self, key)
            if sub is not None and (not str(sub).strip() or Path(sub).is_absolute() or ".." in Path(sub).parts):
                raise ParamError(key, sub, "must name a folder inside prepare.path (which DVC tracks), e.g. test")
        for split in ("val", "test"):
            given, fraction = getattr(self, f"{split}_path"), getattr(self, f"{split}_fraction")
            if given is not None and self.train_path is None:
                raise ParamError(f"{split}_path", given, "needs prepare.train_path, the training folder beside it "
                                 "(class folders and split folders cannot share one folder)")
            if given is not None and fraction is not None:
                raise ParamError(f"{split}_fraction", fraction, f"is not used when prepare.{split}_path is given "
                                 "(that folder is the split); set it to null")
            if given is None and fraction is None:
                raise ParamError(f"{split}_fraction", None, f"must be a fraction unless prepare.{split}_path is given")
            if fraction is not None:
                check_range(f"{split}_fraction", fraction, 0, 1, lo_open=True, hi_open=True)
        if (self.val_fraction or 0) + (self.test_fraction or 0) >= 1:
            raise ParamError("val_fraction", self.val_fraction, "plus prepare.test_fraction must be < 1")

    def folders(self) -> dict[str, Optional[Path]]:
        """Where each split comes from: ``train`` always, ``val`` / ``test`` when given (else None)."""
        root = Path(self.path)
        return {"train": root / self.train_path if self.train_path else root,
                "val": root / self.val_path if self.val_path else None,
                "test": root / self.test_path if self.test_path else None}


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
