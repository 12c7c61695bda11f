"""Keep TensorFlow's start-up noise out of the stage output (real errors and warnings stay).

TensorFlow writes some lines before its logging is initialised, so ``TF_CPP_MIN_LOG_LEVEL``
does not hide them: on a machine without a GPU every process prints ``failed call to cuInit``
(an ``E`` line that reads like a failure) and tf.data prints ``NodeDef mentions attribute
use_unbounded_threadpool`` (a version skew between TensorFlow's Python and C++ halves that
changes nothing). :func:`install` routes file descriptor 2 through a small filter process that
drops exactly the lines in :data:`NOISE` and passes everything else through unchanged. The
CUDA lines are dropped only where no NVIDIA device exists: on a GPU machine they are real.

A separate process (not a thread) drains the pipe: whatever this process printed reaches the
terminal even if it aborts. It ignores SIGINT and SIGTERM (a Ctrl-C signals the whole process
group): it ends when the stage's end closes the pipe, after the stage's own last line.
Set ``T2I_TF_LOGS=all`` to see everything.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys

NOISE = (
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "oneDNN custom operations are on",
    "cpu_feature_guard.cc",
    "NodeDef mentions attribute use_unbounded_threadpool",
    "Created TensorFlow Lite XNNPACK delegate for CPU",
    "fully_quantize: 0, inference_type: ",  # the TFLite quantizer's settings, printed per conversion
)
CUDA_NOISE = (
    "cudart_stub.cc",
    "failed call to cuInit",
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "computation_placer.cc",
    "TF-TRT Warning: Could not find TensorRT",
)
_FILTER = r"""
import signal, sys
# Ctrl-C and SIGTERM reach the whole process group: the stage reports them in one line; this
# filter carries on until the stage closes the pipe (EOF), so that line still gets through.
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
drop = tuple(sys.argv[1:])
out = sys.stdout.buffer
for line in sys.stdin.buffer:
    if not any(p.encode() in line for p in drop):
        out.write(line)
        out.flush()
"""


def has_gpu() -> bool:
    """Whether an NVIDIA driver or device is present (then CUDA messages matter)."""
    return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidia0")


def patterns() -> tuple[str, ...]:
    """The lines to drop on this machine."""
    return NOISE + (() if has_gpu() else CUDA_NOISE)


def install() -> bool:
    """Filter this process's (and its children's) file descriptor 2 through :data:`NOISE`.

    Returns:
        Whether the filter is in place (not when ``T2I_TF_LOGS=all``, or already installed).
    """
    if os.environ.get("T2I_TF_LOGS") == "all" or os.environ.get("T2I_QUIET_INSTALLED") == str(os.getpid()):
        return False
    try:
        sys.stderr.flush()
        original = os.dup(2)
        read, write = os.pipe()
        child = subprocess.Popen([sys.executable, "-I", "-c", _FILTER, *patterns()], stdin=read, stdout=original,
                                 stderr=original, close_fds=True)
    except OSError:
        return False
    os.close(read)
    os.dup2(write, 2)
    os.close(write)
    os.environ["T2I_QUIET_INSTALLED"] = str(os.getpid())
    from train2infer.core import progress

    progress.set_terminal(original)  # live progress lines go around the line filter, to the terminal

    def restore() -> None:  # ordered output at a normal exit: drain the filter, then go on
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(original, 2)
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:  # a child process still holds the pipe: let it drain alone
            pass

    atexit.register(restore)
    return True
