"""The training recipe: augmentation, the warm-up + cosine schedule, label smoothing, knowledge
distillation (on tiny real data and hand-computed values)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from train2infer import distill, fit


def _images(n=12, size=8):
    """Images whose every pixel is distinct (so a flip or shift always shows), labels 0..n-1."""
    x = (np.arange(n * size * size * 3).reshape(n, size, size, 3) % 251).astype(np.uint8)
    return x, np.arange(n)


def _batches(ds):
    xs, ys = zip(*[(a.numpy(), b.numpy()) for a, b in ds])
    return np.concatenate(xs), np.concatenate(ys)


def test_augmentation_changes_pixels_not_labels():
    x, y = _images()
    plain, _ = _batches(fit.make_dataset(x, y, 4, shuffle=False, seed=0))
    aug, labels = _batches(fit.make_dataset(x, y, 4, shuffle=False, seed=0, flip=True, translate=2))
    np.testing.assert_array_equal(labels, y)  # same order, same labels
    assert aug.shape == plain.shape and not np.allclose(aug, plain)
    again, _ = _batches(fit.make_dataset(x, y, 4, shuffle=False, seed=0, flip=True, translate=2))
    np.testing.assert_array_equal(aug, again)  # same seed, same pixels
    for k in range(len(x)):  # every image is a window of its reflect-padded (maybe flipped) original
        padded = np.pad(plain[k], [(2, 2), (2, 2), (0, 0)], mode="reflect")
        windows = [p[i:i + 8, j:j + 8] for p in (padded, padded[:, ::-1]) for i in range(5) for j in range(5)]
        assert any(np.array_equal(aug[k], w) for w in windows), k


def test_augmentation_differs_between_epochs_and_flip_only_mirrors():
    x, y = _images()
    ds = fit.make_dataset(x, y, 4, shuffle=False, seed=1, translate=2)
    first, second = _batches(ds)[0], _batches(ds)[0]
    assert not np.array_equal(first, second)  # other shifts every epoch
    plain, _ = _batches(fit.make_dataset(x, y, 4, shuffle=False, seed=1))
    flipped, _ = _batches(fit.make_dataset(x, y, 4, shuffle=False, seed=1, flip=True))
    for k in range(len(x)):
        assert np.array_equal(flipped[k], plain[k]) or np.array_equal(flipped[k], plain[k][:, ::-1])
    assert any(not np.array_equal(flipped[k], plain[k]) for k in range(len(x)))


def test_recipe_decides_augmentation_by_data_source(tiny):
    assert tiny.train.augment == "auto"
    photos, digits = fit.recipe(tiny.train, "folder"), fit.recipe(tiny.train, "digits")
    assert (photos.flip, photos.translate) == (True, tiny.train.translate)
    assert (digits.flip, digits.translate) == (False, 0)
    assert fit.recipe(tiny.train, "keras").flip and not fit.recipe(tiny.train, "shapes").flip


def test_warmup_cosine_schedule():
    s = fit.WarmupCosine(0.1, total_steps=110, warmup_steps=10)
    assert float(s(0)) == pytest.approx(0.01)  # (step + 1) / warm-up
    assert float(s(9)) == pytest.approx(0.1)
    assert float(s(10)) == pytest.approx(0.1)
    assert float(s(60)) == pytest.approx(0.05)  # half way down the cosine
    assert float(s(85)) == pytest.approx(0.05 * (1 + math.cos(math.pi * 0.75)))
    assert float(s(110)) == pytest.approx(0.0, abs=1e-9) and float(s(500)) == pytest.approx(0.0, abs=1e-9)


def test_label_smoothing_loss_by_hand():
    logits = np.array([[2.0, 0.0, -1.0]], np.float32)
    p = np.exp(logits[0]) / np.exp(logits[0]).sum()
    target = np.array([0.9 + 0.1 / 3, 0.1 / 3, 0.1 / 3])
    got = fit.classification_loss(0.1)(np.array([0]), logits)
    assert float(np.mean(got)) == pytest.approx(-(target * np.log(p)).sum(), rel=1e-5)


def test_distillation_loss_by_hand():
    """Three classes, T = 2, weight 0.25: (1 - w) CE + w T^2 KL(p_teacher^T || p_student^T)."""
    s, t = np.array([[1.0, 2.0, 0.5]], np.float32), np.array([[3.0, 0.0, 1.0]], np.float32)

    def softmax(z):
        e = np.exp(z - z.max())
        return e / e.sum()

    ce = -np.log(softmax(s[0])[1])  # label 1
    pt, ps = softmax(t[0] / 2), softmax(s[0] / 2)
    kl = float((pt * np.log(pt / ps)).sum())
    want = 0.75 * ce + 0.25 * 4 * kl
    got = distill.distillation_loss(np.array([1]), s, t, weight=0.25, temperature=2.0)
    assert float(got[0]) == pytest.approx(want, rel=1e-5)
    same = distill.distillation_loss(np.array([1]), s, s, weight=1.0, temperature=2.0)
    assert float(same[0]) == pytest.approx(0.0, abs=1e-6)  # a student equal to its teacher: no soft loss


def test_distilling_fits_the_student_and_leaves_the_teacher(trained, digits):
    from train2infer.models import builders, io

    splits, names = digits
    teacher_weights = [w.copy() for w in trained.get_weights()]
    student = lambda: builders.build_cnn(splits["train"][0].shape[1:], len(names), filters=(8, 16),  # noqa: E731
                                         convs_per_stage=1, dense_units=0, seed=3)
    build = distill.wrap(student, lambda: io.clone(trained), weight=0.5, temperature=4.0)
    model, info = fit.fit_classifier(build, tf.distribute.get_strategy(), splits["train"], splits["val"], epochs=4,
                                     batch_size=32, learning_rate=0.01, scale_learning_rate=False, seed=0,
                                     verbose=0)
    assert isinstance(model, distill.Distilling) and set(info["history"]) >= {"accuracy", "val_accuracy"}
    out = distill.student_of(model)
    assert out.output_shape == (None, len(names)) and out.count_params() < trained.count_params()
    assert fit.accuracy(out, *splits["val"]) > 0.3  # it learned (10 classes: chance is 0.1)
    for a, b in zip(trained.get_weights(), teacher_weights):
        np.testing.assert_array_equal(a, b)
    assert distill.wrap(student, None, weight=0.0, temperature=4.0) is student  # off: the student itself


def test_ctrl_c_during_fit_stops_at_the_next_batch_end(digits):
    """A real SIGINT sent to this process during model.fit: the fit ends at the next batch end with
    Interrupted (SIGINT), no epoch-end callback sees the partial epoch, and the handlers are restored."""
    import os
    import signal

    import tf_keras as keras

    from train2infer.core.cli import Interrupted
    from train2infer.models import builders

    splits, names = digits
    seen = {"batches": [], "epoch_ends": 0}

    class Ctrl(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen["batches"].append(batch)
            if batch == 1:
                os.kill(os.getpid(), signal.SIGINT)

        def on_epoch_end(self, epoch, logs=None):
            seen["epoch_ends"] += 1

    build = lambda: builders.build_cnn(splits["train"][0].shape[1:], len(names), filters=(8,),  # noqa: E731
                                       convs_per_stage=1, dense_units=0, seed=3)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(Interrupted) as got:
        fit.fit_classifier(build, tf.distribute.get_strategy(), splits["train"], splits["val"], epochs=2,
                           batch_size=8, learning_rate=0.01, scale_learning_rate=False, seed=0,
                           callbacks=[Ctrl()], verbose=0)
    assert got.value.name == "SIGINT"
    assert seen == {"batches": [0, 1], "epoch_ends": 0}  # the stop callback runs first: batch 2 never ended
    assert signal.getsignal(signal.SIGINT) is before and signal.getsignal(signal.SIGTERM) is not None
