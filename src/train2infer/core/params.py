"""Parameters: ``params.yaml`` read once, each section checked by one generic validator.

A section's schema is a dataclass beside its stage's code (``train2infer.<stage>.config``).
Its fields have **no defaults**: ``conf/`` is the only place defaults live, so a key deleted
from the YAML is an error, not a silent fallback. Ranges and choices are declared once, as
field metadata (:func:`ranged`, :func:`choice`, :func:`listed`), and checked by
:func:`validate`; rules between fields live in the schema's ``check()``.

Library code raises :class:`ParamError` naming the *key* of the config object it was given;
the stage's entry point (:func:`train2infer.core.cli.run`) adds the params section, so users
see ``params: prune.frequency=100 never updates ...`` while the library does not know the
layout of ``params.yaml``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from dataclasses import MISSING, field
from pathlib import Path
from typing import Any, Sequence

from train2infer import Train2InferError


class ParamError(Train2InferError):
    """A parameter is missing, unknown, of the wrong type, out of range, or does not fit.

    Args:
        key: The key within its section (``frequency``, ``filters[1]``).
        value: The offending value.
        rule: What is wrong, e.g. ``must be >= 1``.
        section: The params section, when the raiser knows it; the stage entry point
            fills it in otherwise.
    """

    def __init__(self, key: str, value: Any, rule: str, section: str | None = None):
        self.key, self.value, self.rule, self.section = key, value, rule, section
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.section}.{self.key}" if self.section else self.key
        return f"params: {where}={self.value!r} {self.rule}"

    def within(self, section: str) -> "ParamError":
        """This error qualified with ``section`` (unchanged if it already names one, or names a
        top-level key such as ``seed``: ``section=""``)."""
        return self if self.section is not None else ParamError(self.key, self.value, self.rule, section)


class ParamsFileError(Train2InferError):
    """The params file itself is missing, empty or not YAML, or a section is absent."""


def ranged(lo=None, hi=None, *, lo_open: bool = False, hi_open: bool = False, each: bool = False):
    """A required field whose value (or, with ``each``, every list item) lies in a range."""
    return field(metadata={"range": (lo, hi, lo_open, hi_open), "each": each})


def choice(*options, each: bool = False):
    """A required field whose value (or every list item) is one of ``options``."""
    return field(metadata={"choice": options, "each": each})


def listed(what: str, **rule):
    """A required list field that must not be empty (``what`` names an item), with an
    optional per-item :func:`ranged` or :func:`choice` rule."""
    inner = (ranged(**rule) if "choice" not in rule else choice(*rule["choice"])).metadata
    return field(metadata={**inner, "each": True, "nonempty": what})


def check_range(key: str, value, lo=None, hi=None, lo_open: bool = False, hi_open: bool = False) -> None:
    """Raise :class:`ParamError` unless ``lo <= value <= hi`` (strict where ``*_open``)."""
    if lo is not None and (value < lo or (lo_open and value == lo)):
        raise ParamError(key, value, f"must be {'>' if lo_open else '>='} {lo}")
    if hi is not None and (value > hi or (hi_open and value == hi)):
        raise ParamError(key, value, f"must be {'<' if hi_open else '<='} {hi}")


def check_choice(key: str, value, options) -> None:
    """Raise :class:`ParamError` unless ``value`` is one of ``options``."""
    if value not in options:
        raise ParamError(key, value, f"is not one of: {', '.join(map(str, options))}")


def _check_value(key: str, value, meta: dict) -> None:
    if "range" in meta:
        check_range(key, value, *meta["range"])
    if "choice" in meta:
        check_choice(key, value, meta["choice"])


def validate(obj) -> None:
    """Check every field of a schema instance against its metadata, then ``obj.check()``.

    Raises:
        ParamError: The first value that breaks a rule (key without section).
    """
    for f in dataclasses.fields(obj):
        meta, value = f.metadata, getattr(obj, f.name)
        if meta.get("nonempty") and not value:
            raise ParamError(f.name, list(value), f"must list at least one {meta['nonempty']}")
        if meta.get("each"):
            for i, item in enumerate(value):
                _check_value(f"{f.name}[{i}]", item, meta)
        elif meta:
            _check_value(f.name, value, meta)
    check = getattr(obj, "check", None)
    if check is not None:
        check()


def load(path: str | Path = "params.yaml"):
    """Read ``params.yaml``.

    Raises:
        ParamsFileError: If the file is missing, empty or not a YAML mapping.
    """
    from omegaconf import DictConfig, OmegaConf

    p = Path(path)
    if not p.is_file():
        raise ParamsFileError(f"params file not found: {p}")
    try:
        params = OmegaConf.load(p)
    except Exception as exc:  # yaml.YAMLError and OmegaConf errors alike
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ParamsFileError(f"params file {p} is not valid YAML: {first}") from None
    if not isinstance(params, DictConfig) or len(params) == 0:
        raise ParamsFileError(f"params file {p} is empty or not a mapping")
    return params


def build(schema: type, values, section: str):
    """The typed, validated section: ``values`` (a mapping) merged into ``schema``.

    Raises:
        ParamsFileError: On an unknown key, a missing key or a wrong type (OmegaConf's check).
        ParamError: On a value that breaks a rule, qualified with ``section``.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        obj = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), values))
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or getattr(exc, "key", None) or "?"
        msg = str(exc).strip().splitlines()[0]
        raise ParamsFileError(f"params: {section}.{key}: {msg}{did_you_mean(section, key, schema)}") from None
    try:
        validate(obj)
    except ParamError as exc:
        raise exc.within(section) from None
    return obj


def did_you_mean(section: str, key: str, schema: type) -> str:
    """``"; did you mean train.epochs?"`` for a key close to one of the schema's fields, else ""."""
    import difflib

    close = difflib.get_close_matches(str(key), [f.name for f in dataclasses.fields(schema)], n=1, cutoff=0.6)
    return f"; did you mean {section}.{close[0]}?" if close and close[0] != key else ""


def defaulted(schema: type) -> list[str]:
    """Fields of ``schema`` that carry a default (there should be none: defaults live in conf/)."""
    return [f.name for f in dataclasses.fields(schema) if f.default is not MISSING
            or f.default_factory is not MISSING]


def seed(params) -> int:
    """The global ``seed``, checked to be a non-negative integer."""
    value = params.get("seed") if params is not None else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ParamError("seed", value, "must be a non-negative integer", section="")  # top level, no section
    return value


def check_patterns(key: str, patterns: Sequence[str], names: Sequence[str]) -> None:
    """Every fnmatch pattern in ``patterns`` must match one of ``names`` (a model's layer names):
    a typo in an include or exclude list must not pass silently.

    Raises:
        ParamError: Naming the first pattern that matches nothing, and some of the names.
    """
    names = list(names)
    bad = [p for p in patterns if not any(fnmatch.fnmatchcase(n, str(p)) for n in names)]
    if bad:
        shown = ", ".join(names[:10]) + (f" ... ({len(names)} layers)" if len(names) > 10 else "")
        raise ParamError(key, list(patterns), f"{bad[0]!r} matches no layer of the model (its layers: {shown})")


def as_dict(cfg) -> dict:
    """A section dataclass as a plain dict (for logging, run keys and reports)."""
    return dataclasses.asdict(cfg)
