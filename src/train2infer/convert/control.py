"""Accuracy-controlled int8: keep the ops that cost the most accuracy in float, until within a floor.

Full integer quantization can lose more than a user accepts (an activation with outliers, a
logit range far wider than the decision needs). NNCF's ``quantize_with_accuracy_control`` keeps
OpenVINO int8 within ``max_drop`` by reverting the layers that hurt most to float; TFLite has no
such thing, so here is one, built on TensorFlow's ``QuantizationDebugger`` (it lists every
quantized op's output tensor and converts with any of them *denylisted*, i.e. left in float with
quantize / dequantize ops around it).

Why rank by measured effect and not by the debugger's per-layer error (``rmse / scale``): that
statistic is relative to each tensor's own scale, so it does not see the common failure — a tensor
whose range is so wide that its useful values all round to the same step (the scale grows with
the range, the error per step looks normal). What matters is the end-to-end accuracy, so every
candidate op is reverted alone and the validation accuracy measured (one conversion each; tens of
ops take seconds to minutes); then the worst are reverted together, one more at a time, until the
drop is within ``max_drop`` or ``max_float_layers`` ops are float. ``ai-edge-quantizer`` (per-op
recipes with validation) would do the same job; it is alpha and being renamed, so not used here.
"""

from __future__ import annotations

import csv
import functools
import io as _io
import warnings

import numpy as np

from train2infer import stats


def debugger(model, representative: np.ndarray, denied: list[str] = (), int8_io: bool = False):
    """A ``QuantizationDebugger`` over the full-integer conversion of ``model`` with the output
    tensors ``denied`` left in float (float ops are allowed beside the int8 ones)."""
    import tensorflow as tf

    from train2infer.models.io import tflite_converter

    converter = tflite_converter(model, "int8", representative, int8_io=int8_io)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(denied))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
        return tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=converter.representative_dataset, debug_options=options)


def candidates(model, representative: np.ndarray) -> list[dict]:
    """Every quantized op of the full-integer model: ``op`` (e.g. ``CONV_2D``), ``tensor`` (its
    output tensor's name, which denylisting takes) and ``rmse_per_scale`` (the debugger's
    statistic, reported beside the measured effect)."""
    dbg = debugger(model, representative)
    with warnings.catch_warnings():  # the debugger runs TensorFlow's own (deprecated) interpreter
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
        dbg.run()
    buf = _io.StringIO()
    dbg.layer_statistics_dump(buf)
    buf.seek(0)
    return [{"op": r["op_name"], "tensor": r["tensor_name"],
             "rmse_per_scale": float(np.sqrt(float(r["mean_squared_error"])) / float(r["scale"]))}
            for r in csv.DictReader(buf)]


def quantize_without(model, representative: np.ndarray, denied: list[str], int8_io: bool = False) -> bytes:
    """The int8 ``.tflite`` bytes with the ops writing ``denied`` tensors in float."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
        return debugger(model, representative, denied, int8_io).get_nondebug_quantized_model()


def correct(content: bytes, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Whether a ``.tflite`` model (LiteRT, batch 1) gets each of ``(x, y)`` right."""
    from train2infer import litert

    return np.argmax(litert.predict(content, x), -1) == y


def accuracy(content: bytes, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of a ``.tflite`` model on ``(x, y)``."""
    return float(np.mean(correct(content, x, y)))


def within_floor(model, content: bytes, float_correct: np.ndarray, val: tuple, representative: np.ndarray,
                 max_drop: float, max_float_layers: int, int8_io: bool = False) -> tuple[bytes, dict]:
    """``content`` (full int8) if it is within ``max_drop`` points of float on ``val`` or not
    significantly worse (exact McNemar, p >= 0.05: a few images of a small validation split decide
    nothing), else the int8 model with the fewest ops (in order of measured harm) kept in float
    that is within the floor.

    Args:
        model: The Keras model ``content`` was converted from.
        content: Its full-integer ``.tflite`` bytes.
        float_correct: Whether the float32 TFLite model gets each image of ``val`` right.
        val: ``(x, y)`` validation images and labels (float32 in [0, 1]).
        representative: The calibration images ``content`` was made with.
        max_drop: Accuracy points int8 may lose against float on ``val``.
        max_float_layers: At most this many ops kept in float.
        int8_io: As the conversion of ``content``.

    Returns:
        The chosen bytes and the report: accuracies and drops before and after, every candidate's
        measured drop when kept in float alone, the ops kept in float, ``within`` the floor.
    """
    x, y = val
    right = correct(content, x, y)
    before = float(np.mean(right))
    p = stats.mcnemar(float_correct, right)["p_value"]
    report = {"max_drop": max_drop, "float_accuracy": float(np.mean(float_correct)), "int8_accuracy": before,
              "drop_before": 100 * (float(np.mean(float_correct)) - before), "mcnemar_p": p, "float_ops": [],
              "candidates": []}
    if report["drop_before"] <= max_drop or p >= 0.05:  # within the floor, or not significantly worse
        return content, report | {"drop_after": report["drop_before"], "within": True}
    float_accuracy = report["float_accuracy"]
    found = candidates(model, representative)
    drop_of = functools.partial(_drop, model, representative, int8_io, float_accuracy, val,
                                frozenset(c["tensor"] for c in found))
    for c in found:  # the effect of each op alone
        c["drop_alone"] = drop_of([c["tensor"]])[1]
    ranked = sorted(found, key=lambda c: (c["drop_alone"], -c["rmse_per_scale"]))
    best, drop, best_denied = accumulate([c["tensor"] for c in ranked[:max_float_layers]], content,
                                         report["drop_before"], max_drop, drop_of)
    given_back = []
    if drop <= max_drop and len(best_denied) > 1:
        best, drop, best_denied, given_back = give_back(best, drop, best_denied, max_drop, drop_of)
    if best is None:  # only with every op in float: that is the float model, not int8
        best, drop, best_denied = content, report["drop_before"], []
    float_ops = [f"{c['op']} {c['tensor']}" for c in ranked if c["tensor"] in best_denied]
    report |= {"candidates": found, "float_ops": float_ops, "given_back": given_back, "drop_after": drop,
               "within": drop <= max_drop}
    if best is not content:
        report["latency_ms"] = latency_cost(content, best, x[:1])
    return best, report


def accumulate(order: list[str], content: bytes, drop: float, max_drop: float, drop_of) -> tuple:
    """Keep the ops writing ``order``'s tensors in float, one more at a time, until within
    ``max_drop``: ``(bytes, drop, denied)`` of the smallest drop met on the way (``content`` and
    ``drop`` if none is smaller)."""
    best, best_denied, denied = content, [], []
    for tensor in order:
        denied.append(tensor)
        trial, trial_drop = drop_of(denied)
        if trial_drop < drop:
            best, drop, best_denied = trial, trial_drop, list(denied)
        if trial_drop <= max_drop:
            break
    return best, drop, best_denied


def _drop(model, representative, int8_io: bool, float_accuracy: float, val, every: frozenset,
          denied: list[str]) -> tuple:
    """The int8 bytes with ``denied`` kept float, and their drop in points against float on ``val``;
    ``(None, 0.0)`` when ``denied`` is ``every`` op (the float model: the debugger cannot convert it)."""
    if every <= set(denied):
        return None, 0.0
    trial = quantize_without(model, representative, denied, int8_io)
    return trial, drop_points(trial, float_accuracy, val)


def drop_points(content: bytes, float_accuracy: float, val: tuple) -> float:
    """Accuracy points a ``.tflite`` model loses on ``val`` against the float model's accuracy."""
    return 100 * (float_accuracy - accuracy(content, *val))


def give_back(content: bytes, drop: float, denied: list[str], max_drop: float, drop_of) -> tuple:
    """Return ops to int8, the last added first, while the drop stays within ``max_drop``.

    Ops measured one at a time all look harmless when the damage needs two of them in float
    together (an outlier channel: the op writing it and the op reading it); the accumulation then
    keeps every op it tried until the pair is in. Each op is tried back in int8 once.

    Args:
        content, drop, denied: The accumulated model, its drop and its float ops' tensors.
        max_drop: The floor, in points.
        drop_of: ``denied -> (bytes, drop)``.

    Returns:
        ``(content, drop, denied, given_back)``: the same or fewer ops in float, still within.
    """
    given_back = []
    for tensor in list(reversed(denied)):
        fewer = [t for t in denied if t != tensor]
        trial, trial_drop = drop_of(fewer)
        if trial_drop <= max_drop:
            content, drop, denied = trial, trial_drop, fewer
            given_back.append(tensor)
    return content, drop, denied, given_back


def latency_cost(full: bytes, mixed: bytes, x: np.ndarray, seconds: float = 2.0, name: str = "with_float_ops") -> dict:
    """p50 latency (LiteRT, batch 1, 1 thread) of full int8 and of the int8 model that replaced it
    (``name``: some ops kept float, or ``qat_int8``), in one interleaved run: what the accuracy
    cost in time."""
    from train2infer import timing

    return timing.tflite_p50({"full_int8": full, name: mixed}, x, 1, seconds)
