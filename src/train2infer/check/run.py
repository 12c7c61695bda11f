"""The check stage's work: validate every params section; the stamp that says so.

DVC removes a stage's outputs before it runs the stage's command, so a bad value that only the
stage itself finds (``dvc exp run -S train.epochs=-1``) costs the last good model and reports
(git shows them deleted). Every stage with parameters depends on this stage's stamp, so DVC runs
``check`` first and a bad value stops the pipeline here, before anything is removed. The stamp's
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

    config.load_checked(params)
    return STAMP
