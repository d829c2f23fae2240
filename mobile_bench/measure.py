"""Measurements: real preprocessed query pixels, interleaved latency timing, memory, accuracy.

Rows loaded at the same thread count are timed interleaved (A B C, B C A, ...) so machine
noise hits every row alike; each timed run uses the next real test photo (see `invoke` for
what exactly is timed). Load time and the first inference (end to end) are timed once.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from artefact.contract import Preprocess
from artefact.data import Sample
from artefact.images import load_image
from artefact.runtimes import Runner

from . import memory
from .invoke import Prepare, timed_call
from .models import EnsembleRunner, ModelSpec, open_spec
from .stats import latency_stats

log = logging.getLogger("artefact")
KS = (1, 3, 5, 10)
TIMING_PHOTOS = 64  # photos cycled through when timing latency-only (untrained) rows


@dataclass
class Queries:
    """Labelled query photos as uint8 pixels, computed once per (size, crop) and shared by every row."""

    samples: list[Sample]
    label_ids: list[str]
    progress: bool = True
    _pixels: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        index = {obj: i for i, obj in enumerate(self.label_ids)}
        self.targets = np.array([index[s.object_id] for s in self.samples])

    def __len__(self) -> int:
        return len(self.samples)

    @staticmethod
    def _key(preprocess: Preprocess) -> tuple:
        return preprocess.input_size, preprocess.crop_fraction, preprocess.interpolation

    def prepare(self, preprocesses: Sequence[Preprocess]) -> None:
        """Decode every photo once and cache its pixels for each contract not cached yet."""
        todo = {self._key(p): p for p in preprocesses if self._key(p) not in self._pixels}
        if not todo:
            return
        arrays = {key: np.empty((len(self.samples), p.input_size, p.input_size, 3), np.uint8) for key, p in todo.items()}
        sizes = ", ".join(str(p.input_size) for p in todo.values())
        for i, s in enumerate(tqdm(self.samples, desc=f"preprocessing queries at {sizes} px", unit="img",
                                   disable=not self.progress, leave=False)):
            image = load_image(s.path)
            for key, p in todo.items():
                arrays[key][i] = p.to_pixels(image)
        self._pixels.update(arrays)

    def pixels(self, preprocess: Preprocess, first: int | None = None) -> np.ndarray:
        """uint8 (N, S, S, 3) pixels of every query under `preprocess` (or of the `first` queries only)."""
        key = self._key(preprocess)
        if first is None or key in self._pixels:
            self.prepare([preprocess])
            return self._pixels[key][:first]
        if (key, first) not in self._pixels:
            self._pixels[(key, first)] = np.stack([preprocess.to_pixels(load_image(s.path)) for s in self.samples[:first]])
        return self._pixels[(key, first)]


def _timed(prepare: Prepare, i: int) -> float:
    run = prepare(i)  # input preparation is not timed
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


@dataclass
class Loaded:
    """A row loaded at one thread count: `call(i)` prepares query i and returns the call to time."""

    spec: ModelSpec
    runner: Runner
    call: Prepare
    result: dict


def load_and_warm(spec: ModelSpec, threads: int, queries: Queries, warmup: int, max_warmup_seconds: float = 10.0) -> Loaded:
    """Load (timed), first inference (timed), warm-up runs (at most `max_warmup_seconds`); peak RSS meanwhile."""
    before = memory.rss_mb()
    memory.reset_peak()
    start = time.perf_counter()
    runner = open_spec(spec, threads)
    init_ms = (time.perf_counter() - start) * 1000
    pixels_of = (lambda r: queries.pixels(r.preprocess)) if spec.trained else (
        lambda r: queries.pixels(r.preprocess, first=TIMING_PHOTOS))  # latency-only rows: a few photos suffice
    start = time.perf_counter()
    first_prediction(runner, pixels_of)
    first_ms = (time.perf_counter() - start) * 1000
    call, timed = timed_call(runner, pixels_of)
    warm: list[float] = []
    while len(warm) < warmup and sum(warm) < max_warmup_seconds:
        warm.append(_timed(call, 1 + len(warm)))
    peak = memory.peak_rss_mb()
    result = {
        "model": spec.name, "threads": threads, "timed": timed, "init_ms": init_ms, "first_ms": first_ms,
        "warmup_runs": len(warm), "warmup_mean_ms": float(np.mean(warm) * 1000) if warm else None,
        "peak_rss_mb": peak, "rss_delta_mb": max(0.0, peak - before),
    }
    return Loaded(spec, runner, call, result)


def time_interleaved(loaded: Sequence[Loaded], runs: int, max_seconds: float, min_runs: int = 10,
                     offset: int = 0, progress: bool = True) -> None:
    """`runs` rounds; each round times every row once, starting at a rotating row.

    A row stops early once it has `min_runs` samples and has used `max_seconds` of timing
    (keeps slow untrained giants from dominating the run); its run count is reported.
    """
    samples: dict[int, list[float]] = {i: [] for i in range(len(loaded))}
    spent = dict.fromkeys(samples, 0.0)
    bar = tqdm(total=runs, desc=f"timing {len(loaded)} models interleaved", unit="round", disable=not progress, leave=False)
    for r in range(runs):
        order = [(r + j) % len(loaded) for j in range(len(loaded))]
        for i in order:
            if len(samples[i]) >= min_runs and spent[i] >= max_seconds:
                continue
            dt = _timed(loaded[i].call, offset + r)
            samples[i].append(dt)
            spent[i] += dt
        bar.update()
    bar.close()
    for i, row in enumerate(loaded):
        row.result.update(latency_stats(samples[i]))


def first_prediction(runner: Runner, pixels_of) -> np.ndarray:
    """Log-probabilities of the first query, end to end through the runner."""
    if isinstance(runner, EnsembleRunner):
        return runner.logprobs_by_size(lambda m: pixels_of(m)[:1])
    return runner.logprobs(pixels_of(runner)[:1])


def predict_all(row: Loaded, queries: Queries, batch: int = 16, progress: bool = True) -> np.ndarray:
    """Log-probabilities of every query (ensembles: mean probability of the members)."""
    runner = row.runner
    out = []
    for start in tqdm(range(0, len(queries), batch), desc=f"accuracy {row.spec.name}", unit="batch",
                      disable=not progress, leave=False):
        stop = min(start + batch, len(queries))
        if isinstance(runner, EnsembleRunner):
            out.append(runner.logprobs_by_size(lambda m: queries.pixels(m.preprocess)[start:stop]))
        else:
            out.append(runner.logprobs(queries.pixels(runner.preprocess)[start:stop]))
    return np.concatenate(out)
