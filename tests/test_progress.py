"""Progress lines: live on a terminal (a real pseudo-terminal here), one line per phase in a log."""

from __future__ import annotations

import os
import pty
import time

from train2infer import timing
from train2infer.core import progress


def _read_all(fd: int) -> str:
    os.set_blocking(fd, False)
    chunks = []
    while True:
        try:
            chunks.append(os.read(fd, 4096))
        except (BlockingIOError, OSError):
            return b"".join(chunks).decode()


def test_a_phase_rewrites_one_line_on_a_terminal_and_prints_one_line_at_its_end(capsys, monkeypatch):
    master, slave = pty.openpty()
    try:
        progress.set_terminal(slave)
        phase = progress.Phase("evaluate", "timing 3 models, 1 thread", unit="round")
        monkeypatch.setattr(phase, "_last", time.perf_counter() - 1)  # the first update is due at once
        phase.update(2, 10, left_s=12.4)
        phase.update(3, 10)  # within half a second of the last: not written
        live = _read_all(master)
        assert live.startswith("\revaluate: timing 3 models, 1 thread · round 2 of ~10 · 12 s left")
        assert "round 3" not in live
        seconds = phase.end("30 rounds")
        assert _read_all(master) == "\r\x1b[K"  # the live line is cleared
        assert capsys.readouterr().out == f"evaluate: timing 3 models, 1 thread: 30 rounds in {seconds:.0f} s\n"
    finally:
        progress.set_terminal(None)
        os.close(master)
        os.close(slave)


def test_without_a_terminal_only_the_end_line_is_written(capsys, tmp_path, monkeypatch):
    with open(tmp_path / "log", "w") as log:
        progress.set_terminal(log.fileno())  # a file is no terminal: refused
    assert progress._terminal is None
    monkeypatch.setattr(os, "isatty", lambda fd: False)  # stderr too is a log (as under dvc repro > log)
    phase = progress.Phase("convert", "2 models to SavedModel and TFLite", unit="model")
    assert phase.fd is None
    phase._last = 0.0
    phase.update(1, 2)
    phase.end("8 variants")
    assert capsys.readouterr().out.splitlines() == ["convert: 2 models to SavedModel and TFLite: 8 variants in 0 s"]


def test_rotating_rounds_reports_rounds_and_seconds_left():
    seen = []
    samples, rounds = timing.rotating_rounds(["a", "b"], lambda name: [1.0, 1.0], min_runs=8, min_seconds=0,
                                             runs_per_round=2, on_round=lambda *a: seen.append(a))
    assert rounds == 4 and [s[0] for s in seen] == [1, 2, 3, 4] and len(samples["a"]) == 8
    assert all(expected >= done for done, expected, _ in seen) and seen[-1][2] == 0.0
