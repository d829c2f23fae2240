"""Resident memory of this process: current RSS and the peak since the last reset.

On Linux the peak (VmHWM) can be reset by writing 5 to /proc/self/clear_refs, which lets
one process attribute a peak to each model it loads in turn. Elsewhere the peak is the
process-lifetime maximum (`resource.getrusage`), so per-model deltas are upper bounds.
"""
from __future__ import annotations

import gc
import resource
import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def reset_peak() -> bool:
    """Start a new peak-RSS window; False when the OS cannot (then peaks are lifetime maxima)."""
    gc.collect()
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident memory (MiB) since the last `reset_peak` (or since the process started)."""
    if _STATUS.is_file():
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024
