"""TensorFlow's start-up noise stays out of stage output; real errors and warnings do not."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers import ROOT
from train2infer.core import quiet

NOISE = [
    "E0000 00:00:1795941923.267025    2097 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error",
    "I0000 00:00:1795941921.181694    2097 cudart_stub.cc:31] Could not find cuda drivers on your machine",
    "E0000 00:00:1795941986.923774    3045 node_def_util.cc:682] NodeDef mentions attribute use_unbounded_threadpool",
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
]


def python(code: str, **env) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("T2I_")} | {"PYTHONPATH": str(ROOT / "src")} | env
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, cwd=ROOT,
                          timeout=300)


@pytest.mark.skipif(quiet.has_gpu(), reason="on a GPU machine the CUDA lines are real and pass through")
def test_noise_is_dropped_and_real_lines_pass_in_order():
    lines = NOISE + ["W0000 real_warning.cc:1] something the user must see"]
    code = ("import os, sys, train2infer\n"
            f"for line in {lines!r}: os.write(2, (line + '\\n').encode())\n"
            "print('error: the last line', file=sys.stderr)\nsys.exit(2)")
    proc = python(code)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["W0000 real_warning.cc:1] something the user must see",
                                        "error: the last line"]
    shown = python(code, T2I_TF_LOGS="all")  # the switch shows everything
    assert all(line in shown.stderr for line in NOISE)


def test_a_crash_still_shows_what_was_printed_before_it():
    proc = python("import os, train2infer\nos.write(2, b'fatal: about to abort\\n')\nos.abort()")
    assert proc.returncode != 0 and "fatal: about to abort" in proc.stderr


@pytest.mark.slow
@pytest.mark.skipif(quiet.has_gpu(), reason="on a GPU machine the CUDA lines are real and pass through")
def test_tensorflow_start_up_prints_no_cuda_or_nodedef_lines():
    code = ("import train2infer, tensorflow as tf\n"
            "ds = tf.data.Dataset.range(8).map(lambda x: x * 2, num_parallel_calls=2).batch(4)\n"
            "print(sum(int(b.numpy().sum()) for b in ds))")
    proc = python(code)
    assert proc.returncode == 0 and proc.stdout.strip() == "56", proc.stderr[-2000:]
    for word in ("cuInit", "cuda", "NodeDef", "absl::InitializeLog"):
        assert word not in proc.stderr, proc.stderr
    loud = python(code, T2I_TF_LOGS="all")  # proves the test would see it: TensorFlow does print it here
    assert "cuInit" in loud.stderr
