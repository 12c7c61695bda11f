"""Loading and saving tf_keras models (one clear error for a missing or corrupt file), and the one
TFLite converter set-up (:func:`to_tflite`: the convert stage's exports and evaluate's GEMM peaks)."""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras as keras

from train2infer import Train2InferError
from train2infer.core.publish import stable_zip
from train2infer.core.variants import PRECISIONS


def load_model(path) -> keras.Model:
    """Load a saved tf_keras model (``.keras``, ``.h5``, SavedModel folder), turning a missing,
    corrupt or unloadable file into one clear error."""
    p = Path(path)
    if p.is_dir() and not (p / "saved_model.pb").is_file():
        raise Train2InferError(f"cannot load model {p}: a folder, but not a SavedModel (no saved_model.pb in it)")
    if not (p.is_file() or (p / "saved_model.pb").is_file()):
        raise Train2InferError(f"model not found: {p}")
    if p.is_file() and not (zipfile.is_zipfile(p) or p.read_bytes()[:8] == HDF5_SIGNATURE):
        raise Train2InferError(f"cannot load model {p}: not a Keras model file (neither a .keras zip archive nor "
                               f"HDF5; {p.stat().st_size:,} bytes): truncated, or another format")
    try:
        return keras.models.load_model(p, compile=False)
    except Exception as exc:
        raise Train2InferError(f"cannot load model {p}: {load_failure(exc)}") from None


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def load_failure(exc: Exception) -> str:
    """Keras's reason, whole (its first line), or what to do about a Lambda layer."""
    text = str(exc).strip()
    if "Lambda" in text and ("safe_mode" in text or "unsafe" in text.lower()):
        return ("it holds a Lambda layer (Python code, which Keras does not load from a file unless trusted): "
                "replace the Lambda with a layer class, or re-save the model without it")
    return (text.splitlines() or [type(exc).__name__])[0]


def clone(model: keras.Model) -> keras.Model:
    """An independent copy (new layers, same weights): never wrap a model you still use."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def save_for_inference(model: keras.Model, path) -> None:
    """Save weights and architecture only (no optimizer state) as a ``.keras`` file.

    The native format has no ``include_optimizer`` switch, so an uncompiled clone is
    saved; sizes reported for the Keras baseline are therefore weights, not Adam slots.
    The same model gives the same bytes: the save date tf_keras writes into ``metadata.json``
    and the zip entries' times are removed (:func:`stable_zip`), so DVC sees an unchanged file.
    """
    clone(model).save(path)
    stable_zip(path, edit=_without_save_date)


def _without_save_date(name: str, data: bytes) -> bytes:
    """``metadata.json`` without ``date_saved`` (nothing reads it back); other entries as they are."""
    if name != "metadata.json":
        return data
    import json

    meta = json.loads(data)
    meta.pop("date_saved", None)
    return json.dumps(meta).encode()


def same_weights(a: keras.Model, b: keras.Model) -> bool:
    """Whether two models have the same weight shapes and values."""
    wa, wb = a.get_weights(), b.get_weights()
    return len(wa) == len(wb) and all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(wa, wb))


def load_user_model(path, input_shape, num_classes: int) -> tuple[keras.Model, list[str]]:
    """The user's model (``model=file``), checked against the data, as a flat functional model
    with one image input and one logits output.

    A ``Sequential`` model becomes functional; free (None) input dimensions are fixed to the
    data's; a final softmax is removed (the pipeline works on logits; argmax is unchanged).

    Args:
        path: ``.keras`` / ``.h5`` file or SavedModel folder written by tf_keras.
        input_shape: ``(height, width, channels)`` of the prepared images.
        num_classes: Classes in the data.

    Returns:
        The model and a list of what was changed (for the train report).

    Raises:
        Train2InferError: One line naming the file and the mismatch.
    """
    from train2infer.models import graph

    model, notes = graph.functional(load_model(path)), []
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise Train2InferError(f"model {path}: has {len(model.inputs)} inputs and {len(model.outputs)} outputs; the "
                               "pipeline takes one image input and one logits output")
    nested = [layer.name for layer in model.layers if isinstance(layer, keras.Model)]
    if nested:
        raise Train2InferError(f"model {path}: layer {nested[0]!r} is a nested model; save a flat functional model, "
                               "e.g. keras.Model(body.input, head(body.output))")
    shape, want = tuple(model.input_shape[1:]), tuple(int(d) for d in input_shape)
    if len(shape) != 3 or any(d is not None and d != w for d, w in zip(shape, want)):
        raise Train2InferError(f"model {path}: takes inputs of shape {shape}, the prepared images are {want} "
                               "(prepare.image_size, prepare.channels)")
    if len(model.output_shape) != 2 or model.output_shape[-1] != num_classes:
        raise Train2InferError(f"model {path}: outputs shape {tuple(model.output_shape[1:])} per image, the data has "
                               f"{num_classes} classes")
    edits = {"input_shape": want} if None in shape else {}
    last = model.get_layer(model.output.node.layer.name) if hasattr(model.output, "node") else model.layers[-1]
    if last.get_config().get("activation") == "softmax" or isinstance(last, keras.layers.Softmax):
        if isinstance(last, (keras.layers.Activation, keras.layers.Softmax)):
            edits["drop"] = {last.name: graph.wiring(model)[0][last.name][0]}
        else:
            edits["configs"] = {last.name: {"activation": "linear"}}
        notes.append(f"final softmax of {last.name} removed: the pipeline works on logits (argmax unchanged)")
    if "input_shape" in edits:
        notes.append(f"input shape {shape} fixed to {want}")
    return (graph.edit(model, **edits) if edits else model), notes


def to_tflite(
    model: keras.Model,
    precision: str = "float",
    representative: np.ndarray | None = None,
    int8_io: bool = False,
    sparse: bool = False,
) -> bytes:
    """Convert a Keras model to a TFLite flatbuffer.

    Args:
        model: A float32 tf_keras model (for ``pqat``: one from :func:`quantize_aware`,
            fine-tuned).
        precision: One of :data:`train2infer.core.variants.PRECISIONS`: ``float`` (float32
            weights); ``dynamic`` (dynamic-range: int8 weights for tensors of at least
            1,024 elements, float activations); ``float16`` (float16 weights); ``int8``
            (full integer: int8 weights and activations calibrated on ``representative``);
            ``pqat`` (int8 from the ranges learned in quantization-aware training).
        representative: float32 images for ``int8`` calibration.
        int8_io: For ``int8`` / ``pqat``: int8 input and output tensors instead of float.
        sparse: Store sparse weights in TFLite's sparse format
            (``Optimize.EXPERIMENTAL_SPARSITY``), which XNNPACK's sparse kernels need.

    Returns:
        The ``.tflite`` bytes.
    """
    converter = tflite_converter(model, precision, representative, int8_io, sparse)
    with warnings.catch_warnings():  # full-integer conversion warns about legacy input stats we do not use
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
        return converter.convert()


def tflite_converter(model: keras.Model, precision: str = "float", representative: np.ndarray | None = None,
                     int8_io: bool = False, sparse: bool = False) -> tf.lite.TFLiteConverter:
    """The converter :func:`to_tflite` uses (same arguments), set up and not yet run."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    optimizations = [] if precision == "float" else [tf.lite.Optimize.DEFAULT]
    if sparse:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    converter.optimizations = optimizations
    if precision == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if precision == "int8":
        if representative is None or len(representative) == 0:
            raise ValueError("int8 quantization needs representative images")
        converter.representative_dataset = lambda: ([representative[i : i + 1].astype(np.float32)]
                                                    for i in range(len(representative)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if int8_io and precision in ("int8", "pqat"):
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter
