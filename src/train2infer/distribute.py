"""Choosing a ``tf.distribute`` strategy from the visible devices."""

from __future__ import annotations

import logging
import os

import tensorflow as tf

log = logging.getLogger(__name__)


def select_strategy(kind: str = "auto") -> tf.distribute.Strategy:
    """The distribution strategy for ``train.strategy``.

    Args:
        kind: ``auto``: several GPUs -> ``MirroredStrategy`` over them, one GPU ->
            ``OneDeviceStrategy`` on it, no GPU -> the default (CPU) strategy.
            ``default``: no distribution. ``mirrored``: ``MirroredStrategy`` over all GPUs,
            or over all logical CPU devices when there is no GPU (how the GPU path is
            exercised on a CPU-only machine). ``multi_worker``:
            ``MultiWorkerMirroredStrategy`` over the cluster in ``TF_CONFIG`` (each worker
            runs the same program; create it before TensorFlow runs any op).

    Returns:
        The strategy; ``strategy.num_replicas_in_sync`` tells the replica count.
    """
    # Before anything else: listing devices starts the runtime, and collectives must be
    # configured before it starts.
    if kind == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            from train2infer.core.params import ParamError

            raise ParamError("strategy", kind, "needs the TF_CONFIG environment variable")
        return tf.distribute.MultiWorkerMirroredStrategy()
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
    name = "default"
    public = (  # tf.distribute's names (classes may report internal ones)
        (tf.distribute.MultiWorkerMirroredStrategy, "MultiWorkerMirroredStrategy"),
        (tf.distribute.MirroredStrategy, "MirroredStrategy"),
        (tf.distribute.OneDeviceStrategy, "OneDeviceStrategy"),
    )
    for cls, public_name in public:
        if isinstance(strategy, cls):
            name = public_name
            break
    return {
        "strategy": name,
        "replicas": int(strategy.num_replicas_in_sync),
        "devices": devices,
        "gpus_visible": len(tf.config.list_logical_devices("GPU")),
    }


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the one process that should write outputs.

    Single-process strategies: always. Multi-worker: the ``chief`` task, or worker 0
    when the cluster has no chief (TensorFlow's convention).
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief


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
