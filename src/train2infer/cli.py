"""Shared entry-point plumbing for the stage scripts (no TensorFlow import here)."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from train2infer import Train2InferError


def run(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> None:
    """Run a stage's ``main``; user errors become one ``error:`` line and exit code 2.

    Args:
        main: The stage function; it receives ``argv``.
        argv: Command-line arguments, or None for ``sys.argv[1:]``.
    """
    try:
        main(argv)
    except Train2InferError as exc:
        message = " ".join(str(exc).split())
        print(f"error: {message}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr, flush=True)
        sys.exit(130)


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser whose help text is the stage module's docstring."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
