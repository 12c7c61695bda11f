"""Variants as data: what was exported, from which model, for which runtime, at which precision.

One naming rule: ``{source}_{format}_{precision}`` plus ``_sparse`` for weights stored in
TFLite's sparse format, e.g. ``trained_keras_float`` (the baseline), ``shrunk_tflite_int8``.
The format says what runs it (:data:`RUNTIME`): ``keras`` and ``saved_model`` TensorFlow,
``tflite`` LiteRT, ``openvino`` OpenVINO (reading the float ``.tflite``). The precision
vocabulary is the one of ``convert.quantization`` plus ``float`` and OpenVINO's ``bf16``:

=========  ==========================================================================
float      float32 weights and activations
dynamic    dynamic-range: int8 weights (tensors of >= 1,024 elements), float activations
float16    float16 weights, float32 compute
int8       full integer: int8 weights and activations, calibrated on training images
pqat       full integer after pruning-preserving quantization-aware training
bf16       OpenVINO computing in bfloat16 (its default where the CPU has BF16 units)
=========  ==========================================================================

``convert`` writes the :func:`write_manifest` file beside the exported models; evaluate,
report and the sweep tools read it (or evaluate's outputs): nothing parses file names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from train2infer import Train2InferError
from train2infer.core.publish import read_json, write_json

SOURCES = ("trained", "shrunk", "pruned", "scratch")
FORMATS = ("keras", "tflite", "saved_model", "openvino")
RUNTIME = {"keras": "tensorflow", "saved_model": "tensorflow", "tflite": "litert", "openvino": "openvino"}
QUANTIZATIONS = ("dynamic", "float16", "int8", "pqat")  # what convert.quantization may list
PRECISIONS = ("float", *QUANTIZATIONS, "bf16")
INTEGER = ("dynamic", "int8", "pqat")  # computed with int8 kernels (the int8 peak applies)
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Variant:
    """One model as it would be deployed.

    Attributes:
        source: Which Keras model it comes from (``trained``, ``shrunk``, ``pruned``, ``scratch``).
        format: ``keras``, ``tflite`` or ``saved_model``.
        precision: One of :data:`PRECISIONS`.
        sparse: Weights stored in TFLite's sparse format.
        path: Where the artefact is (relative to the manifest's folder in a manifest).
    """

    source: str
    format: str
    precision: str = "float"
    sparse: bool = False
    path: str = ""

    def __post_init__(self):
        for key, value, options in (("source", self.source, SOURCES), ("format", self.format, FORMATS),
                                    ("precision", self.precision, PRECISIONS)):
            if value not in options:
                raise ValueError(f"variant {key} {value!r} is not one of {', '.join(options)}")

    @property
    def name(self) -> str:
        """The one name of this variant (see the module docstring)."""
        return "_".join([self.source, self.format, self.precision] + (["sparse"] if self.sparse else []))

    @property
    def runtime(self) -> str:
        """What runs it: ``tensorflow``, ``litert`` or ``openvino``."""
        return RUNTIME[self.format]

    @property
    def integer(self) -> bool:
        """Whether it computes with int8 kernels."""
        return self.precision in INTEGER

    @property
    def float_twin(self) -> str:
        """Name of the dense float variant of the same source and format (what
        quantization or the sparse format is compared with)."""
        return Variant(self.source, self.format).name

    def to_dict(self) -> dict:
        return {"name": self.name, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "Variant":
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


BASELINE = Variant("trained", "keras")


def write_manifest(folder: str | Path, variants: list[Variant], sources: dict) -> None:
    """Write ``manifest.json`` in ``folder``: the exported variants, in order, and per
    source model the facts evaluate needs without loading it (work, sparsity)."""
    write_json(Path(folder) / MANIFEST, {"variants": [v.to_dict() for v in variants], "sources": sources})


def read_manifest(folder: str | Path) -> tuple[list[Variant], dict]:
    """The variants (paths made relative to the current folder) and sources of a manifest.

    Raises:
        Train2InferError: If the manifest is missing, corrupt, lists nothing, or names a
            file that is not there.
    """
    folder = Path(folder)
    data = read_json(folder / MANIFEST, "export manifest")
    try:
        variants = [Variant.from_dict(d) for d in data["variants"]]
        sources = dict(data["sources"])
    except (KeyError, TypeError, ValueError) as exc:
        raise Train2InferError(f"export manifest is malformed: {folder / MANIFEST} ({exc})") from None
    if not variants:
        raise Train2InferError(f"export manifest lists no variant: {folder / MANIFEST}")
    placed = [dataclasses.replace(v, path=str(folder / v.path)) for v in variants]
    missing = [v.path for v in placed if not Path(v.path).exists()]
    if missing:
        raise Train2InferError(f"exported model not found: {missing[0]} (listed in {folder / MANIFEST})")
    return placed, sources
