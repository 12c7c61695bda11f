"""Fitting classifiers, shared by train, shrink, prune and convert (PQAT).

The tf.data input pipeline, compile + fit under a ``tf.distribute`` strategy, DVCLive
logging that survives a resume, and the run set-up every fitting stage does first.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf
import tf_keras as keras

from train2infer.core import live as livelog
from train2infer.core.cli import Interrupted
from train2infer.prepared import to_float


@dataclass(frozen=True)
class Recipe:
    """How a model is fitted beyond epochs, batch and rate: optimiser, schedule, regularisation and
    augmentation (the ``train`` section's recipe keys, resolved for the data; shared by train and
    every fine-tune). :data:`PLAIN` is Adam at a constant rate with nothing else."""

    optimizer: str  # adam | sgd (Nesterov momentum 0.9)
    schedule: str  # constant | cosine (linear warm-up, then cosine decay to 0 at the last step)
    warmup_epochs: float
    weight_decay: float  # decoupled (scaled by the rate), not on BatchNorm parameters or biases
    label_smoothing: float
    flip: bool  # random horizontal flips
    translate: int  # random shifts of up to this many pixels (reflect padding, random crop)


PLAIN = Recipe("adam", "constant", 0.0, 0.0, 0.0, False, 0)
PHOTO_SOURCES = ("folder", "keras")  # augment=auto flips and shifts these; digits and shapes stay as they are


def recipe(cfg, source: str, warmup: bool = True) -> Recipe:
    """The :class:`Recipe` of a ``train`` section for data from ``source`` (``meta.json``'s).

    ``augment: auto`` means flips and shifts for photos (``prepare=folder`` or ``keras``) and none
    for the digits and the drawn shapes (a flipped 2 is no 2). Fine-tunes pass ``warmup=False``:
    they start from trained weights.
    """
    augment = cfg.augment
    if augment == "auto":
        augment = "flip_translate" if source in PHOTO_SOURCES else "none"
    return Recipe(cfg.optimizer, cfg.schedule, cfg.warmup_epochs if warmup else 0.0, cfg.weight_decay,
                  cfg.label_smoothing, "flip" in augment, cfg.translate if "translate" in augment else 0)


def augment_image(image, rnd, seed: int, flip: bool, translate: int):
    """One image, randomly flipped and shifted by stateless ops keyed by ``(rnd, seed)``: the same
    keys give the same pixels (deterministic, whatever the thread count)."""
    key = tf.stack([rnd, tf.constant(seed, tf.int64)])
    if translate:
        padded = tf.pad(image, [[translate, translate], [translate, translate], [0, 0]], mode="REFLECT")
        image = tf.image.stateless_random_crop(padded, tf.shape(image), seed=key + [0, 1])
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, seed=key)
    return image


def make_dataset(
    x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool, seed: int, drop_remainder: bool = False,
    flip: bool = False, translate: int = 0, epoch: tf.Variable | None = None,
):
    """A tf.data pipeline: scale to [0, 1], shuffle per epoch, augment, batch, prefetch.

    A shuffled or augmented pipeline is a function of ``(seed, epoch)``: epoch ``e`` has the order
    ``stateless_shuffle(seed, e)`` and image ``i`` of it the augmentation key ``(e * n + i, seed)``.
    The epoch is the ``epoch`` variable's value when an epoch's first batch is drawn, and every
    pass adds one; :class:`EpochKey` sets it from Keras's epoch number, so a run resumed at epoch
    ``k`` sees exactly the batches an uninterrupted run saw from epoch ``k`` on.

    Args:
        x: uint8 images.
        y: Integer labels.
        batch_size: Global batch size.
        shuffle: Reshuffle every epoch (training).
        seed: Shuffle and augmentation seed.
        drop_remainder: Drop the last partial batch.
        flip: Random horizontal flips (training).
        translate: Random shifts of up to this many pixels (training; 0: none).
        epoch: int64 variable holding the next epoch's number (a new one counting from 0 if None).

    Returns:
        A ``tf.data.Dataset`` of ``(float32 images, int64 labels)`` batches.
    """
    if shuffle or flip or translate:
        ds = _epoch_keyed(x, y, shuffle, seed, flip, translate, epoch)
    else:
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        ds = ds.map(lambda a, b: (tf.cast(a, tf.float32) / 255.0, b), num_parallel_calls=tf.data.AUTOTUNE).cache()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    options = tf.data.Options()
    # In-memory data has no files to shard: multi-worker training shards by element.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def _epoch_keyed(x, y, shuffle: bool, seed: int, flip: bool, translate: int, epoch: tf.Variable | None):
    """The examples of one epoch, drawn lazily: the epoch number is read (and advanced) when the
    first example is asked for, not when Keras creates the iterator."""
    n, images, labels = len(x), tf.constant(x), tf.constant(y)
    counter = epoch if epoch is not None else tf.Variable(0, dtype=tf.int64, trainable=False)
    key_seed = tf.constant(seed, tf.int64)

    def one_epoch(_):
        e = counter.assign_add(1) - 1
        order = tf.range(n, dtype=tf.int64)
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(order, seed=tf.stack([key_seed, e]))

        def load(i):
            image = tf.cast(tf.gather(images, i), tf.float32) / 255.0
            if flip or translate:
                image = augment_image(image, e * n + i, seed, flip, translate)
            return image, tf.gather(labels, i)

        return tf.data.Dataset.from_tensor_slices(order).map(load, num_parallel_calls=tf.data.AUTOTUNE)

    return tf.data.Dataset.range(1).flat_map(one_epoch).apply(tf.data.experimental.assert_cardinality(n))


class EpochKey(keras.callbacks.Callback):
    """Makes epoch ``e`` a function of ``(seed, e)`` alone, so a resumed run repeats an uninterrupted
    one to the bit: sets a :func:`make_dataset` epoch variable to the epoch Keras is about to run
    (after ``BackupAndRestore`` has moved it on), before the epoch's first batch is drawn, and
    reseeds every dropout-like layer's generator (their state is not in the checkpoint) from
    ``(seed, e, its place in the model)``; :func:`setup` gives those layers generators."""

    def __init__(self, epoch: tf.Variable, seed: int):
        super().__init__()
        self.epoch, self.seed = epoch, seed

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch.assign(int(epoch))
        for k, module in enumerate(self.model.submodules):  # nested models (distillation) included
            generator = getattr(getattr(module, "_random_generator", None), "_generator", None)
            if generator is not None:
                generator.reset_from_seed(int(np.random.SeedSequence([self.seed, int(epoch), k]).generate_state(1)[0]))


def input_throughput(dataset, min_seconds: float = 1.0) -> dict:
    """Images/s the input pipeline alone delivers, after one pass that fills its cache.

    A benchmark for "does the input keep the trainer busy": compare with the training
    throughput (the trainer consumes images far slower than this when the answer is yes).

    Args:
        dataset: A batched ``tf.data.Dataset`` of ``(images, labels)``, finite.
        min_seconds: Keep re-reading it until this much time has passed (at least one pass).

    Returns:
        ``{"images_per_second", "passes", "seconds"}``.
    """
    import time

    for _ in dataset:  # warm-up pass: traces the map function and fills the cache
        pass
    images, passes, start = 0, 0, time.perf_counter()
    while True:
        for xb, _ in dataset:
            images += int(xb.shape[0])
        passes += 1
        seconds = time.perf_counter() - start
        if seconds >= min_seconds:
            break
    return {"images_per_second": round(images / seconds, 1), "passes": passes, "seconds": round(seconds, 3)}


class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``peak`` over ``warmup_steps``, then cosine decay to 0 at ``total_steps``."""

    def __init__(self, peak: float, total_steps: int, warmup_steps: int):
        super().__init__()
        self.peak, self.total_steps, self.warmup_steps = float(peak), int(total_steps), int(warmup_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = self.peak * (step + 1.0) / max(self.warmup_steps, 1)
        progress = tf.clip_by_value((step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1), 0.0, 1.0)
        return tf.where(step < self.warmup_steps, warm, 0.5 * self.peak * (1.0 + tf.cos(math.pi * progress)))

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps}


def make_optimizer(rec: Recipe, learning_rate: float, steps_per_epoch: int, epochs: int):
    """The recipe's optimiser with its schedule; weight decay skips BatchNorm parameters and biases."""
    rate = learning_rate
    if rec.schedule == "cosine":
        rate = WarmupCosine(learning_rate, steps_per_epoch * epochs, round(rec.warmup_epochs * steps_per_epoch))
    wd = rec.weight_decay or None
    if rec.optimizer == "sgd":
        opt = keras.optimizers.SGD(rate, momentum=0.9, nesterov=True, weight_decay=wd)
    else:
        opt = keras.optimizers.Adam(rate, weight_decay=wd)
    if wd:
        opt.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return opt


def classification_loss(label_smoothing: float = 0.0):
    """Cross-entropy on logits against integer labels, with optional label smoothing."""
    if not label_smoothing:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def smoothed(y, logits):
        onehot = tf.one_hot(tf.cast(tf.reshape(y, [-1]), tf.int32), tf.shape(logits)[-1])
        return keras.losses.categorical_crossentropy(onehot, logits, from_logits=True, label_smoothing=label_smoothing)

    return smoothed


def compile_classifier(model: keras.Model, learning_rate: float, jit_compile: bool = False, *,
                       rec: Recipe = PLAIN, steps_per_epoch: int = 1, epochs: int = 1) -> keras.Model:
    """The recipe's optimiser + cross-entropy on logits + accuracy (optionally XLA)."""
    model.compile(
        optimizer=make_optimizer(rec, learning_rate, steps_per_epoch, epochs),
        loss=classification_loss(rec.label_smoothing),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=jit_compile,
    )
    return model


class LiveLogger(keras.callbacks.Callback):
    """Logs every epoch's Keras metrics to a DVCLive ``Live`` (``train/…`` and ``val/…``).

    The DVCLive step is the epoch number. When training resumes at epoch ``k`` (after
    ``BackupAndRestore`` restored a checkpoint), rows logged for epochs ``>= k`` by the
    interrupted run are dropped first, so the curves have one row per epoch, no gap and
    no duplicate; ``resumed_from_epoch`` records ``k`` (0 for a fresh start).
    DVCLive's own Keras callback imports Keras 3; this one stays on tf_keras.
    """

    def __init__(self, live, prefix: str = ""):
        super().__init__()
        self.live = live
        self.prefix = prefix
        self.resumed_from_epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.resumed_from_epoch is None:
            self.resumed_from_epoch = int(epoch)
            truncate_live(self.live, epoch)

    def on_epoch_end(self, epoch, logs=None):
        self.live.step = int(epoch)
        for key, value in sorted((logs or {}).items()):
            split, name = ("val", key[4:]) if key.startswith("val_") else ("train", key)
            self.live.log_metric(f"{self.prefix}{split}/{name}", float(value))
        self.live.make_summary()


def truncate_live(live, step: int) -> None:
    """Drop DVCLive plot rows with ``step >= step`` and set the live step to ``step``."""
    livelog.truncate(live.plots_dir, step)
    live.step = step


class EpochTimer(keras.callbacks.Callback):
    """Wall time of every epoch (the first includes graph tracing)."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []
        self._t0 = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        import time

        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        import time

        self.seconds.append(time.perf_counter() - self._t0)


def throughput(epoch_seconds: Sequence[float], images_per_epoch: int, replicas: int) -> dict:
    """Steady-state training throughput from epoch times.

    The first timed epoch (graph tracing, cache filling) is left out when there are more.

    Returns:
        ``images_per_second`` (all replicas), ``images_per_second_per_replica``,
        ``epochs_timed``, ``median_epoch_seconds``.
    """
    times = list(epoch_seconds[1:] if len(epoch_seconds) > 1 else epoch_seconds)
    median = float(np.median(times))
    ips = images_per_epoch / median
    return {
        "images_per_second": round(ips, 1),
        "images_per_second_per_replica": round(ips / replicas, 1),
        "epochs_timed": len(times),
        "median_epoch_seconds": round(median, 4),
    }


class StopAtBatchEnd(keras.callbacks.Callback):
    """Ctrl-C or SIGTERM during ``model.fit`` ends it at the next batch end, by raising
    :class:`train2infer.core.cli.Interrupted` from this callback, instead of a ``KeyboardInterrupt``
    anywhere inside TensorFlow's Python code while its threads run. Once in a ``make test`` run
    (2026-12-01, not again in three re-runs) a Ctrl-C during training ended the process with glibc's
    ``corrupted double-linked list`` (exit -6) instead of the one ``error: interrupted`` line; a
    batch end is a point where no step is half-run. A second signal raises at once. The checkpoint
    of the last whole epoch is what is kept, as before (no epoch-end callback runs).
    """

    def __init__(self):
        super().__init__()
        self.signum: int | None = None
        self._supports_tf_logs = True  # the logs stay tensors: no host sync per batch for this check

    def handler(self, signum, frame) -> None:
        again, self.signum = self.signum is not None, signum
        if again:
            self._check()

    def _check(self, *_args, **_kwargs) -> None:
        if self.signum is not None:
            raise Interrupted(self.signum)

    on_train_batch_end = on_test_batch_end = on_epoch_begin = _check


@contextlib.contextmanager
def signals_at_batch_ends():
    """Yield a :class:`StopAtBatchEnd` whose handler takes SIGINT and SIGTERM while in the block
    (the main thread only: elsewhere signals cannot be handled and the callback never fires)."""
    stop = StopAtBatchEnd()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    old = {s: signal.signal(s, stop.handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    stop._check()  # a signal after the last batch end


def fit_classifier(
    build: Callable[[], keras.Model],
    strategy: tf.distribute.Strategy,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    scale_learning_rate: bool,
    seed: int,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    jit_compile: bool = False,
    verbose: int = 2,
    rec: Recipe = PLAIN,
) -> tuple[keras.Model, dict]:
    """Build (inside the strategy's scope), compile and fit a classifier.

    Args:
        build: Returns a fresh, uncompiled model; called inside ``strategy.scope()``.
        strategy: Where to train; the global batch is ``batch_size`` x replicas.
        train: uint8 images and labels to fit.
        val: uint8 images and labels for per-epoch validation.
        epochs: Passes over ``train``.
        batch_size: Per-replica batch size.
        learning_rate: Learning rate for one replica.
        scale_learning_rate: Multiply the rate by the replica count (linear scaling rule).
        seed: Shuffle seed.
        callbacks: Extra Keras callbacks (e.g. :class:`LiveLogger`, pruning steps,
            ``BackupAndRestore``), called in this order.
        jit_compile: XLA-compile the train step.
        verbose: Keras progress output (2 = one line per epoch).
        rec: Optimiser, schedule, regularisation and augmentation (:func:`recipe`).

    Returns:
        ``(model, info)`` where ``info`` has the replica count, global batch, learning
        rate, steps per epoch and the Keras history.
    """
    replicas = strategy.num_replicas_in_sync
    global_batch = batch_size * replicas
    lr = learning_rate * (replicas if scale_learning_rate else 1)
    steps = int(np.ceil(len(train[0]) / global_batch))
    with strategy.scope():
        model = build()
        compile_classifier(model, lr, jit_compile=jit_compile, rec=rec, steps_per_epoch=steps, epochs=epochs)
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)  # which epoch's order and augmentation to draw
    train_ds = make_dataset(*train, global_batch, shuffle=True, seed=seed, flip=rec.flip, translate=rec.translate,
                            epoch=epoch)
    val_ds = make_dataset(*val, global_batch, shuffle=False, seed=seed)
    with signals_at_batch_ends() as stop:
        history = model.fit(train_ds, validation_data=val_ds, epochs=epochs,
                            callbacks=[stop, *callbacks, EpochKey(epoch, seed)], verbose=verbose)
    info = {
        "replicas": replicas,
        "global_batch_size": global_batch,
        "learning_rate": lr,
        "steps_per_epoch": steps,
        "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
    }
    return model, info


def accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
    """Top-1 accuracy of a logits model on uint8 images (inference mode)."""
    logits = model.predict(to_float(x), batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == y))


def as_float32(model: keras.Model, build: Callable[[], keras.Model]) -> keras.Model:
    """A float32 copy of a (possibly mixed-precision) model, for export.

    Args:
        model: Trained model.
        build: Builds the same architecture; called with the float32 policy set.
    """
    if all(layer.dtype_policy.name == "float32" for layer in model.layers):
        return model
    keras.mixed_precision.set_global_policy("float32")
    copy = build()
    copy.set_weights(model.get_weights())
    return copy


def run_key(settings: dict) -> str:
    """A short stable hash of everything that defines a training run.

    A backup is resumed only by a run with the same key, so a changed parameter never
    continues from another run's weights.
    """
    import hashlib
    import json

    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def setup(cfg, seed: int) -> tf.distribute.Strategy:
    """What every fitting stage does first: pick the strategy (before TensorFlow runs any op;
    multi-worker needs that), op determinism, the global seed.

    Args:
        cfg: The ``train`` section (:class:`train2infer.train.config.TrainConfig`).
        seed: Global seed.

    Raises:
        ParamError: If ``multi_worker`` is asked for without a ``TF_CONFIG``.
    """
    from train2infer import distribute
    from train2infer.core.params import ParamError

    try:
        strategy = distribute.select_strategy(cfg.strategy)
    except ParamError as exc:
        raise exc.within(cfg.SECTION) from None
    from tensorflow.python.framework import config as tf_config  # disable_op_determinism has no public alias

    if cfg.deterministic:  # process-wide: set it either way
        tf_config.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()
    keras.backend.experimental.enable_tf_random_generator()  # dropout state a fit can reseed (EpochKey)
    keras.utils.set_random_seed(seed)
    return strategy
