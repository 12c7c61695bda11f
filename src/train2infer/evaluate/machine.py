"""What the measurements ran on: CPU model and SIMD flags, core count, runtime versions."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def _cpuinfo(key: str) -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    """The CPU's model name."""
    return _cpuinfo("model name") or platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    """The SIMD extensions the CPU reports (XNNPACK picks its kernels, and its sparse path, by them)."""
    flags = (_cpuinfo("flags") or "").split()
    return sorted(f for f in flags if f.startswith(("sse", "avx", "fma", "f16c")))


def version(dist: str) -> str:
    """An installed distribution's version, or ``unknown``."""
    from importlib.metadata import PackageNotFoundError, version as _version

    try:
        return _version(dist)
    except PackageNotFoundError:
        return "unknown"


def describe() -> dict:
    """CPU, cores, flags, Python, TensorFlow and LiteRT versions."""
    return {"cpu": cpu_name(), "cpus": os.cpu_count(), "cpu_flags": cpu_flags(),
            "python": platform.python_version(), "tensorflow": version("tensorflow"),
            "ai_edge_litert": version("ai-edge-litert")}
