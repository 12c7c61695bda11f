"""The stage entry point: arguments in, one ``error:`` line and exit code 2 for user errors."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Callable

from train2infer import CheckFailed, Train2InferError
from train2infer.core.params import ParamError


def run(main: Callable[[list[str] | None], None], argv: list[str] | None = None, section: str | None = None) -> None:
    """Run a stage's ``main``; user errors become one ``error:`` line and exit code 2 (a failed
    check of the pipeline's own result, :class:`train2infer.CheckFailed`: exit code 3).

    Ctrl-C (SIGINT) and SIGTERM end it with ``error: interrupted`` and exit code 130 (143 for
    SIGTERM), no traceback; :func:`train2infer.core.publish.publish` has then published nothing.

    Args:
        main: The stage function; it receives ``argv``.
        argv: Command-line arguments, or None for ``sys.argv[1:]``.
        section: The stage's params section: a :class:`ParamError` raised by library code
            without a section is reported as ``params: <section>.<key>=...``.
    """
    signal.signal(signal.SIGTERM, _terminated)
    try:
        main(argv)
    except ParamError as exc:
        fail(str(exc.within(section) if section else exc))
    except CheckFailed as exc:
        fail(f"check failed: {exc}", code=3)
    except Train2InferError as exc:
        fail(str(exc))
    except Interrupted as exc:
        print(f"error: interrupted ({exc.name})", file=sys.stderr, flush=True)
        sys.exit(128 + exc.signum)
    except KeyboardInterrupt:
        print("error: interrupted (SIGINT)", file=sys.stderr, flush=True)
        sys.exit(130)


class Interrupted(KeyboardInterrupt):
    """A termination signal, raised where the stage is so that its clean-up runs."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum, self.name = signum, signal.Signals(signum).name


def _terminated(signum, frame) -> None:
    raise Interrupted(signum)


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` on one line and exit with ``code`` (2: bad input; 3: a check of
    the pipeline's own result failed)."""
    print(f"error: {' '.join(message.split())}", file=sys.stderr, flush=True)
    sys.exit(code)


def parser(doc: str | None, *required: str, params: bool = True) -> argparse.ArgumentParser:
    """An argument parser whose help text is the stage module's docstring.

    Args:
        doc: The stage module's docstring.
        *required: Names of required path options (``--data``, ``--model`` ...).
        params: Add ``--params`` (default ``params.yaml``).
    """
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if params:
        ap.add_argument("--params", default="params.yaml")
    for name in required:
        ap.add_argument(name, required=True)
    return ap
