"""Evaluation: top-k accuracy overall, per collection and per catalogue size; confusions; ensembles."""
from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from artefact import atomic
from artefact.bundle import Bundle
from artefact.data import Sample, catalogue_sizes, natural_key
from artefact.errors import ArtefactError
from artefact.infer import predict_logprobs, rank_of_target, topk_accuracy

KS = (1, 3, 5, 10)


def ensemble_logprobs(bundles: Sequence[Bundle], samples: Sequence[Sample], batch_size: int = 32,
                      progress: bool = True) -> np.ndarray:
    """Log of the mean probability over bundles (one bundle: its own log-probabilities)."""
    first = bundles[0]
    for other in bundles[1:]:
        if other.label_hash != first.label_hash:
            raise ArtefactError(f"bundles {first.path} and {other.path} have different labels; cannot ensemble")
    probs = None
    for bundle in bundles:
        logprobs = predict_logprobs(bundle.model, bundle.preprocess, samples, batch_size,
                                    desc=f"evaluating {bundle.name}", progress=progress)
        probs = np.exp(logprobs) if probs is None else probs + np.exp(logprobs)
    return np.log(np.maximum(probs / len(bundles), 1e-30))


def compute_metrics(logprobs: np.ndarray, samples: Sequence[Sample], label_ids: Sequence[str],
                    catalogue: dict[str, int] | None = None) -> dict:
    """All accuracy figures for people and for CI, as plain JSON-able numbers."""
    index = {obj: i for i, obj in enumerate(label_ids)}
    targets = np.array([index[s.object_id] for s in samples])
    ranks = rank_of_target(logprobs, targets)
    predicted = logprobs.argmax(1)

    def group(key_of) -> dict:
        groups = collections.defaultdict(list)
        for i, s in enumerate(samples):
            groups[key_of(s)].append(i)
        return {str(k): {"queries": len(ix), **{f"top{k_}": float(np.mean(ranks[ix] < k_)) for k_ in KS}}
                for k, ix in sorted(groups.items(), key=lambda kv: natural_key(str(kv[0])))}

    confusions = collections.Counter(
        (s.object_id, label_ids[p]) for s, p, r in zip(samples, predicted, ranks) if r > 0
    )
    metrics = {
        "queries": len(samples),
        "objects": len({s.object_id for s in samples}),
        **topk_accuracy(logprobs, targets, KS),
        "per_collection": group(lambda s: s.collection or "-"),
        "per_object": group(lambda s: s.object_id),
        "confused_pairs": [{"true": t, "predicted": p, "count": c} for (t, p), c in confusions.most_common(15)],
    }
    if catalogue:
        metrics["per_catalogue_size"] = group(lambda s: catalogue.get(s.object_id, 0))
    return metrics


def evaluate(bundles: Sequence[Bundle], samples: Sequence[Sample], all_samples: Sequence[Sample] | None = None,
             batch_size: int = 32, progress: bool = True) -> tuple[dict, np.ndarray]:
    """Metrics of a bundle (or an ensemble of bundles) on labelled query photos."""
    for bundle in bundles:
        bundle.check_labels([s.object_id for s in samples], "query photos")
    logprobs = ensemble_logprobs(bundles, samples, batch_size, progress)
    metrics = compute_metrics(logprobs, samples, bundles[0].label_ids, catalogue_sizes(all_samples or []))
    metrics["bundles"] = [str(b.path) for b in bundles]
    return metrics, logprobs


def headline(metrics: dict) -> str:
    return (f"top-1 {metrics['top1']:.1%}  top-3 {metrics['top3']:.1%}  top-5 {metrics['top5']:.1%}  "
            f"top-10 {metrics['top10']:.1%}  ({metrics['queries']} queries, {metrics['objects']} objects)")


def markdown_report(metrics: dict, title: str) -> str:
    lines = [f"# {title}", "", f"Bundles: {', '.join(metrics['bundles'])}", "", headline(metrics), "",
             "| | queries | top-1 | top-3 | top-5 | top-10 |", "|---|---:|---:|---:|---:|---:|"]

    def rows(table: dict, prefix: str) -> list[str]:
        return [f"| {prefix}{k} | {v['queries']} | " + " | ".join(f"{v[f'top{k_}']:.1%}" for k_ in KS) + " |"
                for k, v in table.items()]

    lines += rows({"all": {**metrics}}, "")
    lines += ["", "## Per collection", "", "| collection | queries | top-1 | top-3 | top-5 | top-10 |",
              "|---|---:|---:|---:|---:|---:|"] + rows(metrics["per_collection"], "")
    if "per_catalogue_size" in metrics:
        lines += ["", "## Per catalogue size (photos of the object in training)", "",
                  "| n photos | queries | top-1 | top-3 | top-5 | top-10 |", "|---|---:|---:|---:|---:|---:|"]
        lines += rows(metrics["per_catalogue_size"], "")
    lines += ["", "## Most confused pairs", "", "| true object | predicted as | times |", "|---|---|---:|"]
    lines += [f"| {c['true']} | {c['predicted']} | {c['count']} |" for c in metrics["confused_pairs"]]
    return "\n".join(lines) + "\n"


def plot_catalogue_size(metrics: dict, path: Path) -> Path | None:
    """Accuracy vs photos per object (the study's Fig. 4 analogue)."""
    table = metrics.get("per_catalogue_size")
    if not table:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [int(k) for k in table]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for k in (1, 5, 10):
        ax.plot(sizes, [table[str(n)][f"top{k}"] * 100 for n in sizes], marker="o", label=f"top-{k}")
    ax.set_xlabel("catalogue photos of the object (training split)")
    ax.set_ylabel("accuracy on new photos (%)")
    ax.set_ylim(0, 101)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Accuracy vs photos per object")
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def write_report(metrics: dict, out: Path, title: str = "artefact evaluation") -> dict[str, Path]:
    """Write eval.json, eval.md and the catalogue-size plot into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "eval.json", "markdown": out / "eval.md"}
    atomic.write_text(paths["json"], json.dumps(metrics, indent=2) + "\n")
    plot = plot_catalogue_size(metrics, out / "accuracy_vs_photos.png")
    markdown = markdown_report(metrics, title)
    if plot:
        paths["plot"] = plot
        markdown += f"\n![accuracy vs photos per object]({plot.name})\n"
    atomic.write_text(paths["markdown"], markdown)
    return paths
