"""The check stage's work: validate every params section; the stamp that says so.

DVC removes a stage's outputs before it runs the stage's command, so a bad value that only the
stage itself finds (``dvc exp run -S train.epochs=-1``) costs the last good model and reports
(git shows them deleted). Every stage with parameters depends on this stage's stamp, so DVC runs
``check`` first and a bad value stops the pipeline here, before anything is removed. It also
checks that ``prepare.path`` and ``model.path`` exist (DVC would fail on them with ``[Errno 2]``), and
what depends on the data: the number of training images prepare will make is known from the
files and the parameters (:func:`train_images`), so a pruning schedule that would never update its
masks (``prune.frequency`` against the fine-tuning steps) stops here too, not in prune after
train and shrink ran. (``check`` does not depend on the images: a missing ``prepare.path`` must
reach its one line, not DVC's; images added later are checked again by prune itself.) The stamp's
bytes never change: passing re-runs nothing downstream.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

STAMP = "every section of the parameters passed validation (train2infer.config.load_checked)\n"


def run(params: str | Path) -> str:
    """Validate every section and the seed of ``params``; return the stamp to write.

    Raises:
        ParamError / ParamsFileError: On the first bad value (one line naming the key).
    """
    from train2infer import config

    checked = config.load_checked(params)
    check_paths({"prepare.path": checked.prepare.path, "model.path": checked.model.path})
    check_schedule(checked.prune, train_images(checked.prepare))
    return STAMP


def train_images(prepare) -> int | None:
    """How many training images the prepare stage will make, from class counts alone (no image is
    decoded): the bundled digits' labels, ``shapes``' balanced classes, the image files of a
    folder's classes (a file that then fails to decode makes the real count smaller). None for
    ``prepare=keras`` (its counts are inside the cached archive)."""
    from train2infer.prepared import scan_folder, split_sizes

    val = prepare.val_fraction or 0.0
    test = prepare.test_fraction or 0.0
    if prepare.name == "digits":
        from sklearn.datasets import load_digits

        counts = np.bincount(load_digits().target).tolist()
    elif prepare.name == "shapes":
        k = len(prepare.classes)
        counts = [prepare.count // k + (c < prepare.count % k) for c in range(k)]
    elif prepare.name == "folder":
        counts = [len(files) for files in scan_folder(prepare.folders()["train"]).files]
    else:
        return None
    return sum(split_sizes(n, val, test)[0] for n in counts)


def check_schedule(prune, images: int | None) -> None:
    """The pruning schedule updates its masks at least once over ``prune.epochs`` on ``images``
    training images (one replica; several would make fewer steps, which prune checks again).

    Raises:
        ParamError: Naming ``prune.frequency`` and the step counts.
    """
    from train2infer.core.params import ParamError

    if not images:
        return
    steps = prune.epochs * math.ceil(images / prune.batch_size)
    try:
        prune.mask_steps(steps)
    except ParamError as err:
        raise ParamError(err.key, err.value, f"{err.rule} on the {images} training images prepare will make "
                         f"(prune.batch_size={prune.batch_size})", "prune") from None


def check_paths(paths: dict[str, str]) -> None:
    """The files DVC will read as dependencies exist (relative to the project root, where DVC runs
    stages): else one line naming the key, not DVC's ``[Errno 2]`` at the stage that reads it.

    Raises:
        ParamError: Naming the first key whose path does not exist.
    """
    from train2infer.core.params import ParamError

    for key, path in paths.items():
        if not Path(path).exists():
            section, name = key.split(".", 1)
            raise ParamError(name, path, f"does not exist (relative to {Path.cwd()}); DVC reads it as a "
                             "dependency", section=section)
