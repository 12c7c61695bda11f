"""Knowledge distillation while fine-tuning (shared by shrink and prune).

The student learns from the labels and from the trained model's softened outputs (Hinton et al.,
"Distilling the Knowledge in a Neural Network", 2015)::

    loss = (1 - weight) * CE(labels, student) + weight * T^2 * KL(softmax(teacher / T) || softmax(student / T))

Fitting needs no custom training loop: :class:`Distilling` is one functional model whose output
is the student's logits beside the frozen teacher's, and which compiles with its own loss. Keras'
own ``fit`` (so ``tf.distribute``, TF-MOT's pruning callbacks, checkpoints) works unchanged;
:func:`student_of` takes the student back out.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras


def distillation_loss(labels, student_logits, teacher_logits, weight: float, temperature: float,
                      label_smoothing: float = 0.0):
    """Per-example distillation loss (see the module docstring).

    Args:
        labels: Integer class labels, shape ``(batch,)`` or ``(batch, 1)``.
        student_logits: ``(batch, classes)``.
        teacher_logits: ``(batch, classes)``; no gradient flows into them.
        weight: Share of the soft (teacher) term, in [0, 1].
        temperature: Softening temperature T (>= 1 softens); the soft term is scaled by T^2 so
            that its gradients keep their size as T changes.
        label_smoothing: Of the hard (label) term.

    Returns:
        A ``(batch,)`` tensor.
    """
    classes = tf.shape(student_logits)[-1]
    onehot = tf.one_hot(tf.cast(tf.reshape(labels, [-1]), tf.int32), classes)
    hard = keras.losses.categorical_crossentropy(onehot, student_logits, from_logits=True,
                                                 label_smoothing=label_smoothing)
    t = tf.stop_gradient(tf.cast(teacher_logits, tf.float32)) / temperature
    s = tf.cast(student_logits, tf.float32) / temperature
    p_teacher = tf.nn.softmax(t)
    kl = tf.reduce_sum(p_teacher * (tf.nn.log_softmax(t) - tf.nn.log_softmax(s)), axis=-1)
    return (1.0 - weight) * hard + weight * temperature**2 * kl


class Distilling(keras.Model):
    """One functional model whose output is ``[student logits, teacher logits]`` side by side, the
    teacher frozen and in inference mode (its BatchNorm statistics and dropout stay as trained).

    It knows its own loss: :meth:`compile` keeps the optimiser it is given and puts
    :func:`distillation_loss` and the student's accuracy (named ``accuracy``) in place of the
    loss and metrics, so the shared fitting code compiles and fits it like any classifier.
    """

    def __init__(self, student: keras.Model, teacher: keras.Model, weight: float, temperature: float,
                 label_smoothing: float = 0.0):
        teacher.trainable = False
        teacher._name = "teacher"  # nested models need names of their own; the teacher is a loaded copy
        inputs = keras.Input(student.input_shape[1:], name="image")
        both = keras.layers.Concatenate(name="student_teacher")([student(inputs), teacher(inputs, training=False)])
        super().__init__(inputs, both, name="distill")
        self.student, self.settings = student, (weight, temperature, label_smoothing)

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, **kwargs):  # noqa: D102 (see the class)
        weight, temperature, smoothing = self.settings

        def distill(labels, output):
            student, teacher = tf.split(output, 2, axis=-1)
            return distillation_loss(labels, student, teacher, weight, temperature, smoothing)

        def accuracy(labels, output):
            return keras.metrics.sparse_categorical_accuracy(labels, tf.split(output, 2, axis=-1)[0])

        super().compile(optimizer=optimizer, loss=distill,
                        metrics=[keras.metrics.MeanMetricWrapper(accuracy, name="accuracy")], **kwargs)


def student_of(model: keras.Model) -> keras.Model:
    """The student inside a :class:`Distilling` model (any other model: itself)."""
    return model.student if isinstance(model, Distilling) else model


def wrap(build_student, load_teacher, weight: float, temperature: float, label_smoothing: float = 0.0):
    """A model builder for fitting: ``build_student`` itself when ``weight`` is 0, else a
    :class:`Distilling` of a fresh student and ``load_teacher()`` (both built in the caller's
    ``tf.distribute`` scope)."""
    if not weight:
        return build_student
    return lambda: Distilling(build_student(), load_teacher(), weight, temperature, label_smoothing)
