"""How far long work is: a live line on a terminal, one line per finished phase in a log.

On a terminal (the stage's stderr was one before :mod:`train2infer.core.quiet` put its filter in
between) a phase rewrites one line in place, at most twice a second: ``evaluate: timing 1 thread
· round 7 of ~30 · 41 s left``. Wherever output is a file or a pipe (``dvc repro > log``, CI) no
line is rewritten; each phase ends with one line on stdout saying what it did and how long it
took, so a log shows where the time went without carriage-return noise.
"""

from __future__ import annotations

import os
import time

_terminal: int | None = None  # the terminal's file descriptor, set by quiet.install()


def set_terminal(fd: int | None) -> None:
    """Where live lines go: a file descriptor that is a terminal, or None for none."""
    global _terminal
    _terminal = fd if fd is not None and os.isatty(fd) else None


def terminal() -> int | None:
    """The terminal's file descriptor, or None (live lines off)."""
    if _terminal is None and os.environ.get("T2I_QUIET_INSTALLED") != str(os.getpid()):
        try:
            return 2 if os.isatty(2) else None
        except OSError:
            return None
    return _terminal


class Phase:
    """One phase of a stage's work, e.g. ``Phase("evaluate", "timing 1 thread", total=30)``.

    Call :meth:`update` as work is done (``done`` of ``total`` units; the total may be revised);
    :meth:`end` clears the live line and prints ``"{stage}: {what}: {summary} in {s} s"``.
    """

    def __init__(self, stage: str, what: str, total: float | None = None, unit: str = ""):
        self.stage, self.what, self.total, self.unit = stage, what, total, unit
        self.start = self._last = time.perf_counter()
        self.fd = terminal()

    def update(self, done: float, total: float | None = None, left_s: float | None = None) -> None:
        """Report ``done`` units (of ``total``); ``left_s`` overrides the linear estimate."""
        if total is not None:
            self.total = total
        now = time.perf_counter()
        if self.fd is None or now - self._last < 0.5:
            return
        self._last = now
        elapsed = now - self.start
        if left_s is None and self.total and done:
            left_s = max(elapsed * (self.total - done) / done, 0.0)
        of = f" of {'~' if left_s is not None and self.total and done < self.total else ''}{self.total:g}" \
            if self.total else ""
        left = f" · {left_s:.0f} s left" if left_s is not None else ""
        self._write(f"\r{self.stage}: {self.what} · {self.unit}{' ' if self.unit else ''}{done:g}{of}{left}\x1b[K")

    def end(self, summary: str = "") -> float:
        """Clear the live line, print the phase's one line, return its seconds."""
        seconds = time.perf_counter() - self.start
        self._write("\r\x1b[K")
        print(f"{self.stage}: {self.what}{': ' + summary if summary else ''} in {seconds:.0f} s", flush=True)
        return seconds

    def _write(self, text: str) -> None:
        if self.fd is not None:
            try:
                os.write(self.fd, text.encode())
            except OSError:
                self.fd = None
