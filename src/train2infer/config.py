"""Every params section and its schema: ``params.yaml`` validated whole, before any work.

Whichever stage runs first refuses a bad value anywhere in the file (``dvc exp run -S
train.epochs=50 -S prune.final_sparsity=1.0`` fails at once, not after training). The
schemas live beside their stages (``train2infer.<stage>.config``); this module only lists
them. Sections with one schema per option (``prepare``, ``model``) pick it by ``name``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from train2infer.convert.config import ConvertConfig
from train2infer.core import params as P
from train2infer.evaluate.config import EvaluateConfig
from train2infer.models import config as model_config
from train2infer.prepare import config as prepare_config
from train2infer.prune.config import PruneConfig
from train2infer.scratch.config import ScratchConfig
from train2infer.shrink.config import ShrinkConfig
from train2infer.train.config import TrainConfig

SECTIONS: dict[str, type | dict[str, type]] = {
    "prepare": prepare_config.SCHEMAS,
    "model": model_config.SCHEMAS,
    "train": TrainConfig,
    "shrink": ShrinkConfig,
    "prune": PruneConfig,
    "scratch": ScratchConfig,
    "convert": ConvertConfig,
    "evaluate": EvaluateConfig,
}


def section(params, name: str):
    """Validate one section of the parameter tree and return it as its dataclass.

    Raises:
        ParamError / ParamsFileError: On a missing section, unknown option, unknown or
            missing key, wrong type or bad value.
    """
    from omegaconf import DictConfig, OmegaConf

    if isinstance(params, dict):
        params = OmegaConf.create(params)
    if name not in params or params[name] is None:
        raise P.ParamsFileError(f"params: section '{name}' is missing")
    schema = SECTIONS[name]
    if isinstance(schema, dict):  # one schema per option (conf/<group>/<option>.yaml)
        option = params[name].get("name") if isinstance(params[name], DictConfig) else None
        P.check_choice(f"{name}.name", option, tuple(schema))
        schema = schema[option]
    return P.build(schema, params[name], name)


@dataclass
class Params:
    """The whole, validated ``params.yaml``: one attribute per section, plus ``seed``."""

    prepare: object
    model: object
    train: TrainConfig
    shrink: ShrinkConfig
    prune: PruneConfig
    scratch: ScratchConfig
    convert: ConvertConfig
    evaluate: EvaluateConfig
    seed: int


def load_checked(path: str | Path = "params.yaml") -> Params:
    """Read ``params.yaml`` and validate every section and the seed.

    Raises:
        ParamError / ParamsFileError: On the first bad value found.
    """
    tree = P.load(path)
    return from_tree(tree)


def from_tree(tree) -> Params:
    """Validate an already composed parameter tree (a mapping) as :func:`load_checked` does."""
    params = Params(**{name: section(tree, name) for name in SECTIONS}, seed=P.seed(tree))
    model_config.check_fits(params.model, params.prepare.image_size, params.prepare.channels, params.train.epochs)
    params.train.check_image(params.prepare.image_size)
    return params
