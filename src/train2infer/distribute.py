"""Choosing a ``tf.distribute`` strategy from the visible devices."""

from __future__ import annotations

import logging

import tensorflow as tf

log = logging.getLogger(__name__)


def select_strategy(kind: str = "auto") -> tf.distribute.Strategy:
    """The distribution strategy for ``train.strategy``.

    Args:
        kind: ``auto``: several GPUs -> ``MirroredStrategy`` over them, one GPU ->
            ``OneDeviceStrategy`` on it, no GPU -> the default (CPU) strategy.
            ``default``: no distribution. ``mirrored``: ``MirroredStrategy`` over all GPUs,
            or over all logical CPU devices when there is no GPU (how the GPU path is
            exercised on a CPU-only machine).

    Returns:
        The strategy; ``strategy.num_replicas_in_sync`` tells the replica count.
    """
    gpus = tf.config.list_logical_devices("GPU")
    if kind == "default":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    if kind == "auto":
        if len(gpus) > 1:
            return tf.distribute.MirroredStrategy(devices=[d.name for d in gpus])
        if len(gpus) == 1:
            return tf.distribute.OneDeviceStrategy(gpus[0].name)
        return tf.distribute.get_strategy()
    raise ValueError(f"unknown strategy {kind!r}")


def describe(strategy: tf.distribute.Strategy) -> dict:
    """Name, replica count and devices of a strategy, for reports."""
    try:
        devices = list(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy has no device list: current device
        devices = [d.name for d in tf.config.list_logical_devices()[:1]]
    return {
        "strategy": type(strategy).__name__,
        "replicas": int(strategy.num_replicas_in_sync),
        "devices": devices,
        "gpus_visible": len(tf.config.list_logical_devices("GPU")),
    }


def use_mixed_precision(requested: bool) -> bool:
    """Set the ``mixed_float16`` policy if requested and a GPU is visible.

    Returns:
        True if mixed precision is now on. On a CPU-only machine the request is
        ignored with a warning (float16 matmuls are slower than float32 there).
    """
    import tf_keras as keras

    if not requested:
        keras.mixed_precision.set_global_policy("float32")
        return False
    if not tf.config.list_logical_devices("GPU"):
        log.warning("train.mixed_precision=true ignored: no GPU visible")
        keras.mixed_precision.set_global_policy("float32")
        return False
    keras.mixed_precision.set_global_policy("mixed_float16")
    return True


def split_cpu(n: int) -> None:
    """Split the physical CPU into ``n`` logical devices (before TensorFlow starts up).

    Lets ``MirroredStrategy`` run with ``n`` replicas on a CPU-only machine.
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    if len(tf.config.get_logical_device_configuration(cpu) or ()) == n:
        return
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
