"""Evaluation analysis (artefact-eval --analysis): feature projections, confusions, per-object accuracy.

Adds to an evaluation report folder:
    projection_tsne.png, projection_pca.png   test-query features (pooled backbone output), by collection
    confusions.png                            most-confused pairs: query | Grad-CAM++ | catalogue photos
    per_object.png                            top-1 / top-5 per object
    analysis.json                             the numbers behind the figures
and appends their section to eval.md, then writes eval.html (self-contained: images inlined).
UMAP is not offered: umap-learn is not a dependency; t-SNE and PCA come from scikit-learn.
"""
from __future__ import annotations

import base64
import collections
import contextlib
import logging
import re
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from artefact import atomic
from artefact.bundle import Bundle
from artefact.data import Sample, natural_key
from artefact.images import load_image
from artefact.model import ArtefactNet

from .explain import DEFAULT_METHOD, catalogue_photos, overlay, pyplot, saliency, save_figure

log = logging.getLogger("artefact")
CONFUSION_ROWS = 8
MARKERS = "osD^vP*Xhp<>"
MIN_PROJECTED = 5  # fewer query photos: no projection plots


@contextlib.contextmanager
def capture_features(model: ArtefactNet, enabled: bool = True) -> Iterator[list[np.ndarray]]:
    """Collect the pooled backbone features of every batch `model` sees inside the block (in order)."""
    batches: list[np.ndarray] = []
    hook = model.backbone.register_forward_hook(
        lambda _m, _i, out: batches.append(out.detach().float().cpu().numpy())) if enabled else None
    try:
        yield batches
    finally:
        if hook is not None:
            hook.remove()


def project(features: np.ndarray, method: str, seed: int = 0) -> np.ndarray:
    """2-D coordinates (N, 2) of L2-normalised features by 'pca' or 'tsne' (t-SNE on the top 50 PCs)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    if method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(x)
    x = PCA(n_components=min(50, *x.shape), random_state=seed).fit_transform(x)
    perplexity = float(min(30.0, (len(x) - 1) / 3))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def plot_projection(coords: np.ndarray, samples: Sequence[Sample], correct: np.ndarray, title: str, path: Path) -> Path:
    """Scatter coloured by collection (by object when there is one collection); misrecognised queries as x."""
    plt = pyplot()
    groups = sorted({s.collection for s in samples}, key=natural_key)
    by_object = len(groups) == 1
    if by_object:
        groups = sorted({s.object_id for s in samples}, key=natural_key)
    key = np.array([s.object_id if by_object else s.collection for s in samples])
    cmap = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(7, 6), dpi=110)
    for i, group in enumerate(groups):
        style = {"color": cmap(i % cmap.N), "marker": MARKERS[(i // cmap.N) % len(MARKERS)]}
        hit, miss = (key == group) & correct, (key == group) & ~correct
        ax.scatter(coords[hit, 0], coords[hit, 1], s=10, alpha=0.7, label=group or "-", **style)
        ax.scatter(coords[miss, 0], coords[miss, 1], s=28, alpha=0.9, color=style["color"], marker="x")
    ax.scatter([], [], s=28, color="gray", marker="x", label="misrecognised (top-1)")
    if len(groups) <= 20:
        ax.legend(fontsize=7, markerscale=1.5, loc="best", title="object" if by_object else "collection")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    return save_figure(fig, path)


def per_object_rows(metrics: dict, samples: Sequence[Sample], predicted: Sequence[str]) -> list[dict]:
    """Per-object accuracy, worst first, with the object it is most often mistaken for."""
    collection = {s.object_id: s.collection for s in samples}
    mistaken = collections.defaultdict(collections.Counter)
    for s, p in zip(samples, predicted):
        if p != s.object_id:
            mistaken[s.object_id][p] += 1
    rows = [{"object": obj, "collection": collection.get(obj, ""), "queries": m["queries"], "top1": m["top1"],
             "top5": m["top5"], "mistaken_for": ", ".join(f"{o} ({n})" for o, n in mistaken[obj].most_common(2))}
            for obj, m in metrics["per_object"].items()]
    return sorted(rows, key=lambda r: (r["top1"], r["top5"], natural_key(r["object"])))


def plot_per_object(rows: list[dict], path: Path) -> Path:
    """Bars of top-5 (light) and top-1 (dark) accuracy per object, grouped by collection."""
    plt = pyplot()
    rows = sorted(rows, key=lambda r: (natural_key(r["collection"]), natural_key(r["object"])))
    groups = sorted({r["collection"] for r in rows}, key=natural_key)
    cmap = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20")
    colour = [cmap(groups.index(r["collection"]) % cmap.N) for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.16 * len(rows) + 2), 4.2), dpi=110)
    ax.bar(x, [100 * r["top5"] for r in rows], color=colour, alpha=0.3, width=0.85)
    ax.bar(x, [100 * r["top1"] for r in rows], color=colour, width=0.85)
    ax.set_xticks(x, [r["object"] for r in rows], rotation=90, fontsize=6 if len(rows) > 40 else 8)
    ax.set_xlim(-0.7, len(rows) - 0.3)
    ax.set_ylim(0, 101)
    ax.set_ylabel("accuracy (%): top-1 dark, top-5 light")
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(i % cmap.N)) for i in range(len(groups))]
    if 1 < len(groups) <= 20:
        ax.legend(handles, groups, fontsize=7, ncol=min(len(groups), 8), loc="lower left", bbox_to_anchor=(0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def confusion_examples(metrics: dict, samples: Sequence[Sample], logprobs: np.ndarray, label_ids: Sequence[str],
                       catalogue: dict[str, str], rows: int = CONFUSION_ROWS) -> list[dict]:
    """For the most-confused pairs: the most confident wrong query and a catalogue photo of each object."""
    index = {obj: i for i, obj in enumerate(label_ids)}
    predicted = logprobs.argmax(1)
    examples = []
    for pair in metrics["confused_pairs"][:rows]:
        wrong = [i for i, s in enumerate(samples)
                 if s.object_id == pair["true"] and predicted[i] == index[pair["predicted"]]]
        query = max(wrong, key=lambda i: logprobs[i, index[pair["predicted"]]])
        examples.append({**pair, "query": samples[query].path,
                         "probability": float(np.exp(logprobs[query, index[pair["predicted"]]])),
                         "catalogue_predicted": catalogue.get(pair["predicted"]),
                         "catalogue_true": catalogue.get(pair["true"])})
    return examples


def plot_confusions(examples: list[dict], bundle: Bundle, path: Path) -> Path:
    """One row per pair: query photo | saliency toward the wrong object | catalogue: predicted | catalogue: true."""
    import torch

    plt = pyplot()
    fig, axes = plt.subplots(len(examples), 4, figsize=(9, 2.45 * len(examples)), dpi=100, squeeze=False)
    index = {obj: i for i, obj in enumerate(bundle.label_ids)}
    for row, ex in zip(axes, examples):
        for ax in row:
            ax.axis("off")
        pixels = bundle.preprocess.to_pixels(load_image(ex["query"]))
        x = torch.from_numpy(bundle.preprocess.normalize(pixels))[None]
        heat = saliency(bundle.model, x, [index[ex["predicted"]]], DEFAULT_METHOD)[0]
        row[0].imshow(pixels)
        row[0].set_title(f"query: {ex['true']}\n{Path(ex['query']).name}", fontsize=7)
        row[1].imshow(overlay(pixels, heat))
        row[1].set_title(f"{DEFAULT_METHOD} toward {ex['predicted']}\n{ex['probability']:.0%}, {ex['count']}x confused", fontsize=7)
        for ax, key, what in ((row[2], "catalogue_predicted", "predicted"), (row[3], "catalogue_true", "true")):
            obj = ex["predicted" if what == "predicted" else "true"]
            if ex[key]:
                ax.imshow(bundle.preprocess.to_pixels(load_image(ex[key])))
            ax.set_title(f"catalogue: {obj}\n({what})" if ex[key] else f"{obj}: no catalogue photo", fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def analysis_markdown(files: dict[str, Path], rows: list[dict], examples: list[dict], n_queries: int,
                      backbone: str) -> str:
    """The Markdown section appended to eval.md (images referenced by file name)."""
    lines = ["", "## Feature projections", "",
             f"Pooled backbone features ({backbone}) of the {n_queries} query photos, L2-normalised; "
             "colour = collection (object when there is one), x = misrecognised at top-1. UMAP: not run "
             "(umap-learn is not a dependency).", ""]
    lines += [f"![{name}]({files[name].name})" for name in ("projection_tsne", "projection_pca") if name in files]
    if "accuracy_vs_photos" in files:
        lines += ["", "## Accuracy vs catalogue photos", "", f"![accuracy vs photos]({files['accuracy_vs_photos'].name})"]
    lines += ["", "## Most confused pairs: photos", ""]
    if examples:
        lines += [f"Each row: the most confident wrong query photo | {DEFAULT_METHOD} map of the wrong object's score | a "
                  "catalogue photo of the predicted object | a catalogue photo of the true object.", "",
                  f"![most confused pairs]({files['confusions'].name})"]
    else:
        lines += ["No query was misrecognised."]
    lines += ["", "## Per-object accuracy", "", f"![per-object accuracy]({files['per_object'].name})", "",
              "| object | collection | queries | top-1 | top-5 | most often mistaken for |",
              "|---|---|---:|---:|---:|---|"]
    lines += [f"| {r['object']} | {r['collection'] or '-'} | {r['queries']} | {r['top1']:.1%} | {r['top5']:.1%} | "
              f"{r['mistaken_for'] or '-'} |" for r in rows]
    return "\n".join(lines) + "\n"


def html_report(markdown_text: str, folder: Path, title: str) -> str:
    """A self-contained HTML page of a Markdown report, its PNGs inlined as data URIs."""
    import markdown

    def inline(match: re.Match) -> str:
        if not (folder / match.group(2)).is_file():
            return match.group(0)
        data = base64.b64encode((folder / match.group(2)).read_bytes()).decode("ascii")
        return f"![{match.group(1)}](data:image/png;base64,{data})"

    body = markdown.markdown(re.sub(r"!\[([^\]]*)\]\(((?![a-z]+:|/)[^)\s]+\.png)\)", inline, markdown_text), extensions=["tables"])
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 8px}"
             "img{max-width:100%}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title><style>{style}</style>"
            f"</head><body>\n{body}\n</body></html>\n")


def write_analysis(bundle: Bundle, metrics: dict, samples: Sequence[Sample], all_samples: Sequence[Sample],
                   logprobs: np.ndarray, features: np.ndarray, report: dict[str, Path], title: str) -> dict[str, Path]:
    """Write the analysis figures and analysis.json, append to eval.md and write eval.html; returns the paths."""
    if len(features) != len(samples):
        raise ValueError(f"{len(features)} feature rows for {len(samples)} query photos")
    out = report["markdown"].parent
    label_ids = bundle.label_ids
    predicted = [label_ids[i] for i in logprobs.argmax(1)]
    correct = np.array([p == s.object_id for s, p in zip(samples, predicted)])
    files: dict[str, Path] = {}
    for method, name in (("tsne", "t-SNE"), ("pca", "PCA")):
        if len(samples) >= MIN_PROJECTED:
            log.info(f"analysis: {name} of {len(samples)} query features")
            coords = project(features, method)
            files[f"projection_{method}"] = plot_projection(coords, samples, correct, f"{name} of query features",
                                                            out / f"projection_{method}.png")
    if report.get("plot"):
        files["accuracy_vs_photos"] = report["plot"]
    examples = confusion_examples(metrics, samples, logprobs, label_ids, catalogue_photos(all_samples))
    if examples:
        log.info(f"analysis: {DEFAULT_METHOD} maps of the {len(examples)} most confused pairs")
        files["confusions"] = plot_confusions(examples, bundle, out / "confusions.png")
    rows = per_object_rows(metrics, samples, predicted)
    files["per_object"] = plot_per_object(rows, out / "per_object.png")
    section = analysis_markdown(files, rows, examples, len(samples), bundle.model.backbone_name)
    markdown_text = report["markdown"].read_text(encoding="utf-8") + section
    atomic.write_text(report["markdown"], markdown_text)
    files["html"] = out / "eval.html"
    atomic.write_text(files["html"], html_report(markdown_text, out, title))
    files["analysis_json"] = out / "analysis.json"
    atomic.write_json(files["analysis_json"], {"features": f"{bundle.model.backbone_name} pooled, L2-normalised",
                                               "per_object": rows, "confusion_examples": examples,
                                               "files": sorted(p.name for p in files.values())})
    return files
