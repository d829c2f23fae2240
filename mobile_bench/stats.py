"""Latency statistics (milliseconds) from raw per-inference durations."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def latency_stats(seconds: Sequence[float]) -> dict[str, float | int]:
    """p50, p90, mean, std (population), min, max in ms, and the number of runs."""
    if len(seconds) == 0:
        raise ValueError("no timing samples")
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {
        "runs": int(ms.size),
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "mean_ms": float(ms.mean()),
        "std_ms": float(ms.std()),
        "min_ms": float(ms.min()),
        "max_ms": float(ms.max()),
    }


def speedup(reference_ms: float | None, row_ms: float | None) -> float | None:
    """How many times faster `row` is than `reference` (None when either is unknown)."""
    if not reference_ms or not row_ms:
        return None
    return reference_ms / row_ms
