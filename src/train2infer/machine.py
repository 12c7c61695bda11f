"""What the measurements ran on: CPU model and SIMD flags, core count, runtime versions, and
the machine's state during the run (load average, frequency governor, CPU time others used)."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path


def _cpuinfo(key: str) -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key:
                return value.strip()
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


def cpu_id() -> str:
    """Family, model and stepping, and the cache size /proc/cpuinfo gives: a VM's model name
    (``AMD EPYC``) hides which generation it is, and latency tables of one do not hold on another."""
    found = {k: _cpuinfo(k) for k in ("cpu family", "model", "stepping", "cache size")}
    return ", ".join(f"{k} {v}" for k, v in found.items() if v) or "unknown"


def describe() -> dict:
    """CPU (name, generation, flags), cores, Python, TensorFlow and LiteRT versions."""
    return {"cpu": cpu_name(), "cpu_id": cpu_id(), "cpus": os.cpu_count(), "cpu_flags": cpu_flags(),
            "python": platform.python_version(), "tensorflow": version("tensorflow"),
            "ai_edge_litert": version("ai-edge-litert")}


def governor() -> str | None:
    """The CPU frequency governor (``performance``, ``powersave`` ...), or None where the
    kernel does not expose it (as in most VMs)."""
    try:
        return Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor").read_text().strip() or None
    except OSError:
        return None


def snapshot() -> dict:
    """The machine's CPU counters now: load average, all CPUs' busy and total seconds from
    ``/proc/stat`` (None where unreadable), and this process's own CPU seconds, its waited-for
    children (the measurement workers) included."""
    busy = total = None
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        hz = os.sysconf("SC_CLK_TCK")
        total = sum(fields[:8]) / hz  # user nice system idle iowait irq softirq steal
        busy = total - (fields[3] + fields[4]) / hz
    except (OSError, ValueError, IndexError):
        pass
    t = os.times()
    return {"time": time.monotonic(), "loadavg": list(os.getloadavg()), "busy_s": busy, "total_s": total,
            "own_s": t.user + t.system + t.children_user + t.children_system}


def state(before: dict, after: dict, busy_threshold: float) -> dict:
    """What the machine did between two :func:`snapshot` calls.

    Returns:
        ``loadavg_before``/``loadavg_after`` (1, 5, 15 min), ``governor``, ``wall_s``, and the
        fraction of all CPUs' time that was busy (``busy_fraction``), busy with this run
        (``own_fraction``) and busy with other processes (``others_fraction``, None where
        ``/proc/stat`` is unreadable); ``busy`` is True when ``others_fraction`` exceeds
        ``busy_threshold``: other work competed with the measurement.
    """
    out = {"loadavg_before": before["loadavg"], "loadavg_after": after["loadavg"], "governor": governor(),
           "wall_s": round(after["time"] - before["time"], 3), "busy_fraction": None, "own_fraction": None,
           "others_fraction": None, "busy_threshold": busy_threshold, "busy": False}
    if before["total_s"] is not None and after["total_s"] is not None and after["total_s"] > before["total_s"]:
        total = after["total_s"] - before["total_s"]
        busy, own = after["busy_s"] - before["busy_s"], after["own_s"] - before["own_s"]
        others = max(0.0, busy - own)
        out |= {"busy_fraction": round(busy / total, 4), "own_fraction": round(min(own, busy) / total, 4),
                "others_fraction": round(others / total, 4), "busy": others / total > busy_threshold}
    return out
