"""Typed, validated views of the sections of ``params.yaml``.

``params.yaml`` is composed by DVC's Hydra integration from ``conf/``; each stage reads it
once and validates only the sections it uses, before doing any work (and before importing
TensorFlow), so a bad parameter costs a second, not a training run.

Each section is a dataclass mirroring ``conf/<section>/*.yaml``. Unknown keys, wrong types
and out-of-range values raise :class:`ConfigError` naming ``section.key``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from train2infer import Train2InferError

DATA_SOURCES = ("digits", "folder", "shapes", "keras")
SHAPE_CLASSES = ("circle", "ellipse", "square", "rectangle", "triangle", "line", "cross", "star",
                 "ring", "hexagon")
KERAS_DATASETS = ("mnist", "fashion_mnist", "cifar10")
MODELS = ("cnn", "mobilenet")
STRATEGIES = ("auto", "default", "mirrored", "multi_worker")
PRUNE_SCHEDULES = ("polynomial_decay", "constant_sparsity")
PRUNE_PATTERNS = ("unstructured", "m_by_n", "block")
PRUNE_POLICIES = ("none", "xnnpack")
CHANNEL_CRITERIA = ("none", "dead", "l1", "l2")
QUANTIZATIONS = ("none", "dynamic", "float16", "int8", "pqat")


class ConfigError(Train2InferError):
    """A parameter is missing, unknown, of the wrong type or out of range."""


def _fail(section: str, key: str, value: Any, rule: str) -> None:
    raise ConfigError(f"params: {section}.{key}={value!r} {rule}")


def _check_range(section, key, value, lo=None, hi=None, lo_open=False, hi_open=False):
    if lo is not None and (value < lo or (lo_open and value == lo)):
        _fail(section, key, value, f"must be {'>' if lo_open else '>='} {lo}")
    if hi is not None and (value > hi or (hi_open and value == hi)):
        _fail(section, key, value, f"must be {'<' if hi_open else '<='} {hi}")


def _check_choice(section, key, value, choices):
    if value not in choices:
        _fail(section, key, value, f"is not one of: {', '.join(map(str, choices))}")


@dataclass
class DataConfig:
    """``data`` (``conf/data/digits.yaml``): where images come from and how they are shaped and split.

    ``path`` is the folder the prepare stage reads and DVC tracks as its dependency
    (``dvc.yaml`` interpolates it). Sources that read no files (digits, shapes, keras)
    point it at ``data/sources``, a small tracked folder, so the dependency always exists.
    """

    name: str = "digits"
    path: str = "data/sources"
    image_size: int = 32
    channels: int = 1
    val_fraction: float = 0.15
    test_fraction: Any = 0.15  # a float; None only for data=keras

    def check(self) -> None:
        _check_choice("data", "name", self.name, DATA_SOURCES)
        if not str(self.path).strip():
            _fail("data", "path", self.path, "must name a folder")
        _check_range("data", "image_size", self.image_size, lo=1)
        _check_choice("data", "channels", self.channels, (1, 3))
        _check_range("data", "val_fraction", self.val_fraction, lo=0, hi=1, lo_open=True, hi_open=True)
        if self.test_fraction is None:  # only data=keras, which keeps the dataset's own test split
            return
        _check_range("data", "test_fraction", self.test_fraction, lo=0, hi=1, lo_open=True, hi_open=True)
        if self.val_fraction + self.test_fraction >= 1:
            _fail("data", "test_fraction", self.test_fraction, "plus data.val_fraction must be < 1")


@dataclass
class FolderDataConfig(DataConfig):
    """``data=folder``: an image tree ``path/<class name>/*.png|jpg|jpeg|bmp|gif``."""

    name: str = "folder"
    path: str = "data/images"
    channels: int = 3
    workers: int = 0  # decode processes; 0 = one per core

    def check(self) -> None:
        super().check()
        _check_range("data", "workers", self.workers, lo=0)


@dataclass
class ShapesDataConfig(DataConfig):
    """``data=shapes``: procedurally drawn geometric shapes, deterministic by ``seed``."""

    name: str = "shapes"
    image_size: int = 64
    channels: int = 3
    count: int = 50000
    classes: list[str] = field(default_factory=lambda: ["circle", "rectangle", "triangle", "line", "cross", "star"])
    min_size: float = 0.35  # shape radius range, as a fraction of the image side
    max_size: float = 0.48
    noise: float = 0.08  # std of the Gaussian pixel noise, as a fraction of 255
    workers: int = 0

    def check(self) -> None:
        super().check()
        _check_range("data", "count", self.count, lo=1)
        if len(self.classes) < 2:
            _fail("data", "classes", list(self.classes), "must list at least two shapes")
        for i, c in enumerate(self.classes):
            _check_choice("data", f"classes[{i}]", c, SHAPE_CLASSES)
        if len(set(self.classes)) != len(self.classes):
            _fail("data", "classes", list(self.classes), "must not repeat a shape")
        _check_range("data", "min_size", self.min_size, lo=0, hi=0.5, lo_open=True)
        _check_range("data", "max_size", self.max_size, lo=self.min_size, hi=0.5)
        _check_range("data", "noise", self.noise, lo=0, hi=1)
        _check_range("data", "workers", self.workers, lo=0)


@dataclass
class KerasDataConfig(DataConfig):
    """``data=keras``: a ``tf_keras.datasets`` dataset; its own test split is the test split."""

    name: str = "keras"
    dataset: str = "mnist"
    cache_dir: Any = None  # None: $KERAS_HOME or ~/.keras, as Keras does
    image_size: int = 28
    test_fraction: Any = None  # unused: the dataset's own test split is kept

    def check(self) -> None:
        _check_choice("data", "dataset", self.dataset, KERAS_DATASETS)
        if self.test_fraction is not None:
            _fail("data", "test_fraction", self.test_fraction,
                  "is not used by data=keras (the dataset's own test split is the test split); remove it")
        super().check()
        if self.cache_dir is not None and not isinstance(self.cache_dir, str):
            _fail("data", "cache_dir", self.cache_dir, "must be a folder path or null")


DATA_SCHEMAS: dict[str, type] = {
    "digits": DataConfig,
    "folder": FolderDataConfig,
    "shapes": ShapesDataConfig,
    "keras": KerasDataConfig,
}


@dataclass
class ModelConfig:
    """``model`` (``conf/model/cnn.yaml``): the architecture built by :func:`train2infer.models.build_model`."""

    name: str = "cnn"
    filters: list[int] = field(default_factory=lambda: [32, 64])
    convs_per_stage: int = 2
    kernel_size: int = 3
    dense_units: int = 64
    dropout: float = 0.2
    bn_momentum: float = 0.9

    def check(self) -> None:
        _check_choice("model", "name", self.name, MODELS)
        if not self.filters:
            _fail("model", "filters", list(self.filters), "must list at least one stage width")
        for i, f in enumerate(self.filters):
            _check_range("model", f"filters[{i}]", f, lo=1)
        _check_range("model", "convs_per_stage", self.convs_per_stage, lo=1)
        _check_range("model", "kernel_size", self.kernel_size, lo=1)
        _check_range("model", "dense_units", self.dense_units, lo=0)
        _check_range("model", "dropout", self.dropout, lo=0, hi=1, hi_open=True)
        _check_range("model", "bn_momentum", self.bn_momentum, lo=0, hi=1, hi_open=True)


@dataclass
class MobileNetConfig:
    """``model=mobilenet``: a MobileNet-style chain that XNNPACK's sparse kernels accept."""

    name: str = "mobilenet"
    stem_filters: int = 16
    filters: list[int] = field(default_factory=lambda: [32, 64, 128])
    blocks_per_stage: int = 2
    dropout: float = 0.2
    bn_momentum: float = 0.9

    def check(self) -> None:
        _check_choice("model", "name", self.name, MODELS)
        _check_range("model", "stem_filters", self.stem_filters, lo=1)
        if not self.filters:
            _fail("model", "filters", list(self.filters), "must list at least one stage width")
        for i, f in enumerate(self.filters):
            _check_range("model", f"filters[{i}]", f, lo=1)
        _check_range("model", "blocks_per_stage", self.blocks_per_stage, lo=1)
        _check_range("model", "dropout", self.dropout, lo=0, hi=1, hi_open=True)
        _check_range("model", "bn_momentum", self.bn_momentum, lo=0, hi=1, hi_open=True)


MODEL_SCHEMAS: dict[str, type] = {"cnn": ModelConfig, "mobilenet": MobileNetConfig}


@dataclass
class TrainConfig:
    """``train``: optimisation and device placement for the train stage."""

    epochs: int = 15
    batch_size: int = 32
    learning_rate: float = 0.002
    strategy: str = "auto"
    mixed_precision: bool = False
    jit_compile: bool = False
    deterministic: bool = True
    scale_learning_rate: bool = True

    def check(self) -> None:
        _check_range("train", "epochs", self.epochs, lo=1)
        _check_range("train", "batch_size", self.batch_size, lo=1)
        _check_range("train", "learning_rate", self.learning_rate, lo=0, lo_open=True)
        _check_choice("train", "strategy", self.strategy, STRATEGIES)


@dataclass
class ChannelConfig:
    """``prune.channels``: channel pruning that rebuilds a smaller dense model (before TF-MOT)."""

    criterion: str = "l1"  # none | dead | l1 | l2
    keep: float = 0.5  # fraction of each layer's channels kept (l1 / l2); dead ones always go
    min_channels: int = 4
    exclude: list[str] = field(default_factory=list)  # layer-name patterns left at full width
    epochs: int = 6  # fine-tuning of the smaller model
    learning_rate: float = 0.001

    def check(self) -> None:
        _check_choice("prune", "channels.criterion", self.criterion, CHANNEL_CRITERIA)
        _check_range("prune", "channels.keep", self.keep, lo=0, hi=1, lo_open=True)
        _check_range("prune", "channels.min_channels", self.min_channels, lo=1)
        _check_range("prune", "channels.epochs", self.epochs, lo=0)
        _check_range("prune", "channels.learning_rate", self.learning_rate, lo=0, lo_open=True)


@dataclass
class PruneConfig:
    """``prune``: channel pruning, then TF-MOT magnitude pruning, each with fine-tuning."""

    schedule: str = "polynomial_decay"
    initial_sparsity: float = 0.3
    final_sparsity: float = 0.8
    begin_fraction: float = 0.0
    end_fraction: float = 0.6
    frequency: int = 10
    epochs: int = 6
    batch_size: int = 32
    learning_rate: float = 0.0005
    tolerance: float = 0.01
    pattern: str = "unstructured"
    m_by_n: list[int] = field(default_factory=lambda: [2, 4])
    block_size: list[int] = field(default_factory=lambda: [1, 4])
    policy: str = "none"
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    start_from: str = "trained"
    channels: ChannelConfig = field(default_factory=ChannelConfig)

    def check(self) -> None:
        _check_choice("prune", "schedule", self.schedule, PRUNE_SCHEDULES)
        _check_range("prune", "final_sparsity", self.final_sparsity, lo=0, hi=1, hi_open=True)
        _check_range("prune", "initial_sparsity", self.initial_sparsity, lo=0, hi=self.final_sparsity)
        _check_range("prune", "begin_fraction", self.begin_fraction, lo=0, hi=1, hi_open=True)
        _check_range("prune", "end_fraction", self.end_fraction, lo=self.begin_fraction, hi=1, lo_open=True)
        _check_range("prune", "frequency", self.frequency, lo=1)
        _check_range("prune", "epochs", self.epochs, lo=1)
        _check_range("prune", "batch_size", self.batch_size, lo=1)
        _check_range("prune", "learning_rate", self.learning_rate, lo=0, lo_open=True)
        _check_range("prune", "tolerance", self.tolerance, lo=0, hi=1)
        _check_choice("prune", "pattern", self.pattern, PRUNE_PATTERNS)
        if len(self.m_by_n) != 2 or not 0 < self.m_by_n[0] < self.m_by_n[1]:
            _fail("prune", "m_by_n", list(self.m_by_n), "must be [m, n] with 0 < m < n (m zeros in every n)")
        if len(self.block_size) != 2 or min(self.block_size) < 1:
            _fail("prune", "block_size", list(self.block_size), "must be [rows, cols], each >= 1")
        _check_choice("prune", "policy", self.policy, PRUNE_POLICIES)
        _check_choice("prune", "start_from", self.start_from, ("trained", "shrunk"))
        if self.policy == "xnnpack" and self.pattern != "unstructured":
            _fail("prune", "policy", self.policy, "works with prune.pattern=unstructured only")
        self.channels.check()

    @property
    def target_sparsity(self) -> float:
        """The sparsity each pruned kernel must reach (``m_by_n`` fixes it at m / n)."""
        if self.pattern == "m_by_n":
            return self.m_by_n[0] / self.m_by_n[1]
        return self.final_sparsity


@dataclass
class ConvertConfig:
    """``convert``: TFLite conversion, quantization, and the output checks."""

    quantization: str = "dynamic"
    int8_io: bool = False
    sparse_format: bool = False
    representative_images: int = 200
    check_images: int = 100
    float_atol: float = 1e-4
    fold_atol: float = 1e-5
    pqat_epochs: int = 2
    pqat_learning_rate: float = 0.0001
    batch_size: int = 32

    def check(self) -> None:
        _check_choice("convert", "quantization", self.quantization, QUANTIZATIONS)
        if self.int8_io and self.quantization not in ("int8", "pqat"):
            _fail("convert", "int8_io", self.int8_io, "needs convert.quantization=int8 or pqat")
        _check_range("convert", "representative_images", self.representative_images, lo=1)
        _check_range("convert", "check_images", self.check_images, lo=1)
        _check_range("convert", "float_atol", self.float_atol, lo=0, lo_open=True)
        _check_range("convert", "fold_atol", self.fold_atol, lo=0, lo_open=True)
        _check_range("convert", "pqat_epochs", self.pqat_epochs, lo=1)
        _check_range("convert", "pqat_learning_rate", self.pqat_learning_rate, lo=0, lo_open=True)
        _check_range("convert", "batch_size", self.batch_size, lo=1)


@dataclass
class EvaluateConfig:
    """``evaluate``: how accuracy, latency, throughput and memory are measured."""

    threads: list[int] = field(default_factory=lambda: [1, 0])
    warmup_runs: int = 50
    min_runs: int = 300
    min_seconds: float = 20.0
    runs_per_round: int = 25
    block_warmup: int = 5
    batch_sizes: list[int] = field(default_factory=lambda: [1, 4, 16, 64])
    throughput_seconds: float = 1.0
    cv_threshold: float = 0.10

    def check(self) -> None:
        if not self.threads:
            _fail("evaluate", "threads", list(self.threads), "must list at least one thread count")
        for i, t in enumerate(self.threads):
            _check_range("evaluate", f"threads[{i}]", t, lo=0)
        _check_range("evaluate", "warmup_runs", self.warmup_runs, lo=1)
        _check_range("evaluate", "min_runs", self.min_runs, lo=200)
        _check_range("evaluate", "min_seconds", self.min_seconds, lo=0)
        _check_range("evaluate", "runs_per_round", self.runs_per_round, lo=1)
        _check_range("evaluate", "block_warmup", self.block_warmup, lo=0)
        if not self.batch_sizes:
            _fail("evaluate", "batch_sizes", list(self.batch_sizes), "must list at least one batch size")
        for i, b in enumerate(self.batch_sizes):
            _check_range("evaluate", f"batch_sizes[{i}]", b, lo=1)
        _check_range("evaluate", "throughput_seconds", self.throughput_seconds, lo=0, lo_open=True)
        _check_range("evaluate", "cv_threshold", self.cv_threshold, lo=0, hi=1, lo_open=True)


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "prune": PruneConfig,
    "convert": ConvertConfig,
    "evaluate": EvaluateConfig,
}


def load_params(path: str | Path = "params.yaml") -> DictConfig:
    """Read ``params.yaml`` (once per stage).

    Raises:
        ConfigError: If the file is missing, empty or not a YAML mapping.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"params file not found: {p}")
    try:
        params = OmegaConf.load(p)
    except Exception as exc:  # yaml.YAMLError and OmegaConf errors alike
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"params file {p} is not valid YAML: {first}") from None
    if not isinstance(params, DictConfig) or len(params) == 0:
        raise ConfigError(f"params file {p} is empty or not a mapping")
    return params


def section(params: DictConfig | dict, name: str):
    """Validate one section of the parameters and return it as its dataclass.

    Args:
        params: The whole parameter tree.
        name: A key of :data:`SECTIONS`.

    Returns:
        The dataclass instance for the section, checked.

    Raises:
        ConfigError: On a missing section, unknown key, wrong type or bad value.
    """
    schema = SECTIONS[name]
    if isinstance(params, dict):
        params = OmegaConf.create(params)
    if name not in params or params[name] is None:
        raise ConfigError(f"params: section '{name}' is missing")
    if name in ("data", "model"):  # one schema per option (conf/<group>/<option>.yaml)
        schemas = DATA_SCHEMAS if name == "data" else MODEL_SCHEMAS
        option = params[name].get("name", next(iter(schemas))) if isinstance(params[name], DictConfig) else None
        _check_choice(name, "name", option, tuple(schemas))
        schema = schemas[option]
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), params[name])
        obj = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or getattr(exc, "key", None) or "?"
        msg = str(exc).strip().splitlines()[0]
        raise ConfigError(f"params: {name}.{key}: {msg}") from None
    obj.check()
    return obj


def load_checked(path: str | Path = "params.yaml") -> DictConfig:
    """Read ``params.yaml`` and validate every section and the seed.

    Stages call this first: whichever stage runs first refuses a bad value anywhere in
    the file before any work is done (``dvc exp run -S train.epochs=50 -S
    prune.final_sparsity=1.0`` fails at once, not after training).

    Raises:
        ConfigError: On the first bad value found.
    """
    params = load_params(path)
    for name in SECTIONS:
        section(params, name)
    seed(params)
    return params


def seed(params: DictConfig | dict) -> int:
    """The global ``seed``, checked to be a non-negative integer."""
    value = params.get("seed") if params is not None else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"params: seed={value!r} must be a non-negative integer")
    return value


def as_dict(cfg) -> dict:
    """A section dataclass as a plain dict (for logging and reports)."""
    return dataclasses.asdict(cfg)
