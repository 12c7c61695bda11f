"""The stage entry point: arguments in, one ``error:`` line and exit code 2 for user errors."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from train2infer import Train2InferError
from train2infer.core.params import ParamError


def run(main: Callable[[list[str] | None], None], argv: list[str] | None = None, section: str | None = None) -> None:
    """Run a stage's ``main``; user errors become one ``error:`` line and exit code 2.

    Args:
        main: The stage function; it receives ``argv``.
        argv: Command-line arguments, or None for ``sys.argv[1:]``.
        section: The stage's params section: a :class:`ParamError` raised by library code
            without a section is reported as ``params: <section>.<key>=...``.
    """
    try:
        main(argv)
    except ParamError as exc:
        fail(str(exc.within(section) if section else exc))
    except Train2InferError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr, flush=True)
        sys.exit(130)


def fail(message: str) -> None:
    """Print ``error: message`` on one line and exit with code 2."""
    print(f"error: {' '.join(message.split())}", file=sys.stderr, flush=True)
    sys.exit(2)


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
