"""train2infer: carry a tf_keras model from training to fast inference.

Importing this package is the one place that fixes the Keras flavour for the whole
process: TF-MOT supports Keras 2 only, so ``TF_USE_LEGACY_KERAS=1`` must be set before
TensorFlow is first imported. Every stage script and every test imports ``train2infer``
(or one of its modules) before anything imports TensorFlow.

This module itself imports no TensorFlow, so configuration errors are reported before
the slow TensorFlow start-up. It also filters TensorFlow's start-up noise out of stderr
(:mod:`train2infer.core.quiet`), which must happen before TensorFlow loads too.
"""

import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

if "tensorflow" in sys.modules and "tf_keras" not in sys.modules:  # pragma: no cover
    # TensorFlow read TF_USE_LEGACY_KERAS at import time; if it was imported first,
    # tf.keras may already be bound to Keras 3 and TF-MOT would fail obscurely.
    import warnings

    warnings.warn(
        "tensorflow was imported before train2infer; import train2infer first so that "
        "TF_USE_LEGACY_KERAS=1 takes effect",
        RuntimeWarning,
        stacklevel=2,
    )


if "pytest" not in sys.modules:  # tests capture stderr themselves
    from train2infer.core import quiet

    quiet.install()  # TensorFlow's CUDA-probe and NodeDef noise out of the stage output (see there)


class Train2InferError(Exception):
    """An error caused by the user's input (parameters, data or files), not by a bug.

    Stage entry points print it as one ``error: ...`` line and exit non-zero.
    """


class CheckFailed(Train2InferError):
    """A check of the pipeline's own result failed (a converted model off by more than its
    tolerance): nothing the user typed is wrong. Stage entry points exit with code 3."""


__all__ = ["CheckFailed", "Train2InferError"]
