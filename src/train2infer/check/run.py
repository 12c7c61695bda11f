"""The check stage's work: validate every params section; the stamp that says so.

DVC removes a stage's outputs before it runs the stage's command, so a bad value that only the
stage itself finds (``dvc exp run -S train.epochs=-1``) costs the last good model and reports
(git shows them deleted). Every stage with parameters depends on this stage's stamp, so DVC runs
``check`` first and a bad value stops the pipeline here, before anything is removed. It also
checks that ``prepare.path`` and ``model.path`` exist (DVC would fail on them with ``[Errno 2]``). The stamp's
bytes never change: passing re-runs nothing downstream.
"""

from __future__ import annotations

from pathlib import Path

STAMP = "every section of the parameters passed validation (train2infer.config.load_checked)\n"


def run(params: str | Path) -> str:
    """Validate every section and the seed of ``params``; return the stamp to write.

    Raises:
        ParamError / ParamsFileError: On the first bad value (one line naming the key).
    """
    from train2infer import config

    checked = config.load_checked(params)
    check_paths({"prepare.path": checked.prepare.path, "model.path": checked.model.path})
    return STAMP


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
