"""The benchmark run: every row at every thread count, then accuracy once per row, into one results dict."""
from __future__ import annotations

import gc
import logging
import resource
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .machine import machine_info
from artefact.infer import topk_accuracy

from .measure import KS, Loaded, Queries, load_and_warm, predict_all, time_interleaved
from .models import ModelSpec
from .stats import speedup

log = logging.getLogger("artefact")


@dataclass
class Settings:
    threads: Sequence[int] = (1, 2)
    runs: int = 50
    warmup: int = 5
    max_seconds: float = 10.0
    min_runs: int = 5
    accuracy: bool = True
    accuracy_threads: int | None = None  # default: the highest thread count
    progress: bool = True


def _set_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def run_benchmark(specs: Sequence[ModelSpec], queries: Queries, settings: Settings, reference: str,
                  query_note: dict, field_queries: Queries | None = None) -> dict:
    """Time every spec at every thread count (interleaved), then measure accuracy at the highest count.

    `field_queries`: field versions of `queries` (artefact.field), measured in the same accuracy pass.
    """
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    latency: list[dict] = []
    logprobs: dict[str, np.ndarray] = {}
    field_logprobs: dict[str, np.ndarray] = {}
    threads_sorted = sorted(set(settings.threads))
    accuracy_threads = settings.accuracy_threads if settings.accuracy_threads in threads_sorted else threads_sorted[-1]
    phases: dict[str, float] = {}
    tick = time.perf_counter()
    contracts = [m.preprocess for s in specs if s.trained for m in (s.members or [s])]
    queries.prepare(contracts)
    if field_queries is not None and settings.accuracy:
        field_queries.prepare(contracts)
    phases["preprocess_queries"] = time.perf_counter() - tick
    for threads in threads_sorted:
        _set_torch_threads(threads)
        log.info(f"{threads} thread(s): loading and warming {len(specs)} models")
        tick = time.perf_counter()
        loaded: list[Loaded] = [load_and_warm(s, threads, queries, settings.warmup, settings.max_seconds / 2)
                                for s in specs]
        time_interleaved(loaded, settings.runs, settings.max_seconds, min_runs=settings.min_runs,
                         offset=1 + settings.warmup, progress=settings.progress)
        latency += [row.result for row in loaded]
        phases[f"latency_{threads}_threads"] = time.perf_counter() - tick
        tick = time.perf_counter()
        if settings.accuracy and threads == accuracy_threads:
            _accuracy_pass(loaded, queries, logprobs, settings.progress)
            if field_queries is not None:
                _accuracy_pass(loaded, field_queries, field_logprobs, settings.progress)
            phases["accuracy"] = time.perf_counter() - tick
        del loaded
        gc.collect()
    models = [_model_entry(s, logprobs, queries) for s in specs]
    if field_queries is not None:
        _add_field(models, field_logprobs, field_queries)
    _add_comparisons(models, latency, reference)
    return {
        "machine": machine_info(),
        "settings": {
            "threads": threads_sorted, "runs": settings.runs, "warmup": settings.warmup,
            "max_seconds_per_row": settings.max_seconds, "min_runs": settings.min_runs, "batch": 1, "interleaved": True,
            "timed": "model invocation on one real test photo at batch 1, input prepared beforehand (as TFLite "
                     "benchmark_model); rows marked end-to-end include the contract's normalisation",
            "accuracy_threads": accuracy_threads,
        },
        "queries": query_note,
        "reference": reference,
        "models": models,
        "latency": latency,
        "seconds": round(time.perf_counter() - started, 1),
        "cpu_seconds": round(_cpu_seconds() - cpu_started, 1),
        "phase_seconds": {k: round(v, 1) for k, v in phases.items()},
    }


def _accuracy_pass(loaded: Sequence[Loaded], queries: Queries, logprobs: dict[str, np.ndarray], progress: bool) -> None:
    """Log-probabilities of every trained row on `queries` into `logprobs` (ensembles from their members)."""
    for row in loaded:
        if not row.spec.trained or row.spec.name in logprobs:
            continue
        members = [m.name for m in row.spec.members]
        if members and all(m in logprobs for m in members):
            probs = sum(np.exp(logprobs[m]) for m in members) / len(members)
            logprobs[row.spec.name] = np.log(np.maximum(probs, 1e-30))
        else:
            logprobs[row.spec.name] = predict_all(row, queries, progress=progress)


def _add_field(models: list[dict], field_logprobs: dict[str, np.ndarray], field_queries: Queries) -> None:
    """Field top-k of every measured row and its gap to the studio top-k, in points."""
    for m in models:
        if m["name"] in field_logprobs and m.get("accuracy"):
            m["field_accuracy"] = topk_accuracy(field_logprobs[m["name"]], field_queries.targets, KS)
            m["field_gap_points"] = {k: round(100 * (m["accuracy"][k] - v), 2) for k, v in m["field_accuracy"].items()}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _model_entry(spec: ModelSpec, logprobs: dict[str, np.ndarray], queries: Queries) -> dict:
    entry = spec.to_dict()
    entry["accuracy"] = topk_accuracy(logprobs[spec.name], queries.targets, KS) if spec.name in logprobs else None
    source = logprobs.get(spec.source) if spec.source else None
    if source is not None and spec.name in logprobs:
        entry["agreement_with_source"] = float(np.mean(logprobs[spec.name].argmax(1) == source.argmax(1)))
    return entry


def _add_comparisons(models: list[dict], latency: list[dict], reference: str) -> None:
    """Accuracy delta and speed-up of every row against the reference row (same thread count)."""
    by_name = {m["name"]: m for m in models}
    ref = by_name.get(reference)
    ref_acc = ref["accuracy"] if ref else None
    for m in models:
        if ref_acc and m["accuracy"]:
            m["delta_vs_reference"] = {k: m["accuracy"][k] - ref_acc[k] for k in ref_acc}
        source = by_name.get(m.get("source") or "")
        if source and source["accuracy"] and m["accuracy"]:
            m["delta_vs_source"] = {k: m["accuracy"][k] - source["accuracy"][k] for k in source["accuracy"]}
    ref_p50 = {row["threads"]: row["p50_ms"] for row in latency if row["model"] == reference}
    for row in latency:
        row["speedup_vs_reference"] = speedup(ref_p50.get(row["threads"]), row["p50_ms"])


def resolve_reference(specs: Sequence[ModelSpec], wanted: str | None) -> str:
    """The row others are compared with: `wanted` (exact name or unique substring), else the first bundle."""
    names = [s.name for s in specs]
    if wanted:
        if wanted in names:
            return wanted
        matches = [n for n in names if wanted in n]
        if len(matches) == 1:
            return matches[0]
        from artefact.errors import ArtefactError

        raise ArtefactError(f"--reference {wanted!r} matches {len(matches)} rows; rows are: {', '.join(names)}")
    first = next((s for s in specs if s.kind == "bundle"), specs[0])
    return first.name
