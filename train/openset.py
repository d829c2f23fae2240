"""Open-set measurements: held-out objects, enrolment without retraining, unknown rejection, fusion.

Protocol (`measure`): a bundle trained on a manifest that leaves some objects out (`hold_out`)
is measured on the full manifest.  Objects the bundle's head does not know are the held-out ones.

- enrolment: the gallery holds every object's catalogue (train-split) photos, held-out objects
  with at most `shots` of them; test photos of trained and enrolled objects are ranked by gallery
  similarity among all objects.
- rejection: the gallery holds trained objects only; their test photos are "known", held-out
  objects' test photos "unknown".  AUROC and the false-match rate (unknown photos accepted) at
  95% known recall, both with the threshold read off the test photos themselves (oracle) and
  with the one calibrated on the validation split (what ships).
- fusion: test photos of one object grouped `fuse` at a time; mean embedding (gallery) and mean
  probability (head) against single photos.
"""
from __future__ import annotations

import collections
import json
import random
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from artefact import atomic
from artefact.bundle import Bundle, bundle_fingerprint
from artefact.data import Sample, natural_key, select_split
from artefact.errors import ArtefactError
from artefact.gallery import (
    Gallery, GalleryObject, calibrate, dequantize_int8, embed_and_predict, fit_projection, quantize_int8, save_gallery,
)
from artefact.infer import topk_accuracy

SCORES = ("probability", "similarity")


# ---------------------------------------------------------------- held-out objects

def hold_out(samples: Sequence[Sample], fraction: float = 0.2, seed: int = 0) -> set[str]:
    """Object ids left out of training: `fraction` of each collection's objects (at least one overall)."""
    if not 0 < fraction < 1:
        raise ArtefactError(f"hold-out fraction must be between 0 and 1, not {fraction}")
    by_collection: dict[str, set[str]] = collections.defaultdict(set)
    for s in samples:
        by_collection[s.collection].add(s.object_id)
    rng = random.Random(seed)
    held: set[str] = set()
    for collection in sorted(by_collection):
        objects = sorted(by_collection[collection], key=natural_key)
        held |= set(rng.sample(objects, round(fraction * len(objects))))
    if not held:
        held = {sorted({s.object_id for s in samples}, key=natural_key)[0]}
    return held


# ---------------------------------------------------------------- metrics

def fmr_at_recall(known: np.ndarray, unknown: np.ndarray, recall: float = 0.95) -> tuple[float, float]:
    """(threshold that accepts `recall` of known scores, fraction of unknown scores accepted by it)."""
    threshold = float(np.quantile(known, 1 - recall, method="lower"))
    return threshold, float(np.mean(unknown >= threshold))


def rejection_metrics(known: np.ndarray, unknown: np.ndarray, calibrated: float, recall: float = 0.95) -> dict:
    """AUROC, oracle and calibrated operating points of one score (higher = more likely known)."""
    if len(known) == 0 or len(unknown) == 0:
        raise ArtefactError(f"rejection needs photos of both known and unknown objects (have {len(known)} and {len(unknown)})")
    labels = np.r_[np.ones(len(known)), np.zeros(len(unknown))]
    oracle, oracle_fmr = fmr_at_recall(known, unknown, recall)
    return {
        "auroc": float(_roc_auc(labels, np.r_[known, unknown])),
        "roc": _roc_points(labels, np.r_[known, unknown]),
        "oracle_threshold": oracle,
        f"fmr_at_{round(recall * 100)}_recall": oracle_fmr,
        "calibrated_threshold": calibrated,
        "calibrated_known_recall": float(np.mean(known >= calibrated)),
        "calibrated_false_match_rate": float(np.mean(unknown >= calibrated)),
    }


def ranks_top(scores: np.ndarray, targets: np.ndarray) -> dict[str, float | None]:
    """top-1/top-5 as fractions; None when there are no queries."""
    if len(targets) == 0:
        return {"top1": None, "top5": None}
    return topk_accuracy(scores, targets, (1, 5))


def fused_groups(samples: Sequence[Sample], size: int, seed: int = 0) -> list[list[int]]:
    """Indices of `samples` grouped `size` at a time per object (deterministic; leftovers dropped)."""
    by_object: dict[str, list[int]] = collections.defaultdict(list)
    for i, s in enumerate(samples):
        by_object[s.object_id].append(i)
    rng = random.Random(seed)
    groups = []
    for obj in sorted(by_object, key=natural_key):
        indices = by_object[obj][:]
        rng.shuffle(indices)
        groups += [indices[i:i + size] for i in range(0, len(indices) - size + 1, size)]
    return groups


def spread_per_object(samples: Sequence[Sample], count: int) -> list[Sample]:
    """At most `count` photos per object, evenly spread over its photos in natural order."""
    by_object: dict[str, list[Sample]] = collections.defaultdict(list)
    for s in sorted(samples, key=lambda s: (natural_key(s.object_id), natural_key(s.path))):
        by_object[s.object_id].append(s)
    kept = []
    for photos in by_object.values():
        kept += [photos[i] for i in sorted({round(j * (len(photos) - 1) / max(count - 1, 1)) for j in range(min(count, len(photos)))})]
    return kept


def fuse_embeddings(embeddings: np.ndarray, groups: list[list[int]]) -> np.ndarray:
    if not groups:
        return np.zeros((0, embeddings.shape[1]), np.float32)
    fused = np.stack([embeddings[g].mean(0) for g in groups])
    return fused / np.linalg.norm(fused, axis=1, keepdims=True)


def fuse_logprobs(logprobs: np.ndarray, groups: list[list[int]]) -> np.ndarray:
    """Log of the mean probability of each group's photos."""
    if not groups:
        return np.zeros((0, logprobs.shape[1]), np.float32)
    return np.stack([np.log(np.exp(logprobs[g]).mean(0) + 1e-30) for g in groups])


# ---------------------------------------------------------------- the measurement

def _subset_gallery(fingerprint: str, embeddings: np.ndarray, samples: Sequence[Sample], known: set[str],
                    keep: dict[str, int] | None = None) -> Gallery:
    """Gallery of catalogue photos; objects in `keep` limited to their first n photos."""
    chosen, counts = [], collections.Counter()
    for i in sorted(range(len(samples)), key=lambda i: (natural_key(samples[i].object_id), natural_key(samples[i].path))):
        obj = samples[i].object_id
        if keep is not None and obj in keep and counts[obj] >= keep[obj]:
            continue
        counts[obj] += 1
        chosen.append(i)
    objects, rows = [], []
    for i in chosen:
        s = samples[i]
        if not objects or objects[-1].object_id != s.object_id:
            objects.append(GalleryObject(s.object_id, s.collection, 0, s.object_id not in known))
        objects[-1].photos += 1
        rows.append(len(objects) - 1)
    return Gallery(embeddings[chosen], np.array(rows, np.int32), objects, fingerprint)


def measure(bundle: Bundle, samples: Sequence[Sample], shots: int = 3, fuse: int = 3, recall: float = 0.95,
            method: str = "nn", batch_size: int = 32, progress: bool = True, seed: int = 0, pca_dim: int = 256,
            queries_per_object: int | None = None) -> dict:
    """Enrolment, rejection and fusion figures of `bundle` on a manifest holding held-out objects.

    `queries_per_object` keeps that many test photos per object (evenly spread) to save time.
    """
    known = set(bundle.label_ids)
    catalogue, val, test = (select_split(samples, split) for split in ("train", "val", "test"))
    if queries_per_object:
        test = spread_per_object(test, queries_per_object)
    held = sorted({s.object_id for s in samples} - known, key=natural_key)
    if not held:
        raise ArtefactError("the manifest has no objects the bundle was not trained on; hold some out "
                            "(artefact-openset holdout) and train on the rest")
    val = [s for s in val if s.object_id in known]
    uncatalogued = sorted({s.object_id for s in test} - {s.object_id for s in catalogue}, key=natural_key)
    if uncatalogued:
        raise ArtefactError(f"objects with test photos but no catalogue (train) photos: {', '.join(uncatalogued[:5])}")
    started = time.time()
    photos = list(catalogue) + val + list(test)
    embeddings, logprobs = embed_and_predict(bundle.model, bundle.preprocess, photos, batch_size,
                                             desc="embedding photos", progress=progress)
    seconds = time.time() - started
    n_cat, n_val = len(catalogue), len(val)
    cat_emb, val_emb, test_emb = embeddings[:n_cat], embeddings[n_cat:n_cat + n_val], embeddings[n_cat + n_val:]
    val_logp, test_logp = logprobs[n_cat:n_cat + n_val], logprobs[n_cat + n_val:]
    fingerprint = bundle_fingerprint(bundle.path)
    is_known = np.array([s.object_id in known for s in test])
    report = {"bundle": str(bundle.path), "trained_objects": len(known), "held_out_objects": len(held),
              "held_out": held, "shots": shots, "method": method, "queries": len(test),
              "embedding_images_per_second": round(len(photos) / max(seconds, 1e-9), 1)}

    # enrolment: everything in one gallery, held-out objects from `shots` catalogue photos (or all)
    report["enrolment"] = {}
    head_index = {obj: i for i, obj in enumerate(bundle.label_ids)}
    known_targets = np.array([head_index[s.object_id] for s in test if s.object_id in known])
    head_trained = ranks_top(test_logp[is_known], known_targets)
    # the like-for-like control: trained objects whose catalogue also has exactly `shots` photos
    photos_of = collections.Counter(s.object_id for s in catalogue)
    same_photos = np.array([photos_of[s.object_id] == shots for s in test if s.object_id in known], dtype=bool)
    head_same = ranks_top(test_logp[is_known][same_photos], known_targets[same_photos])
    report["trained_objects_with_shots_photos"] = int(len({s.object_id for s in test if s.object_id in known and photos_of[s.object_id] == shots}))
    for label, keep in ((f"{shots}_photos", {obj: shots for obj in held}), ("catalogue", None)):
        gallery = _subset_gallery(fingerprint, cat_emb, catalogue, known, keep)
        index = {obj: i for i, obj in enumerate(gallery.object_ids)}
        targets = np.array([index[s.object_id] for s in test])
        scores = gallery.scores(test_emb, method)
        trained, enrolled = ranks_top(scores[is_known], targets[is_known]), ranks_top(scores[~is_known], targets[~is_known])
        report["enrolment"][label] = {
            "gallery_objects": len(gallery.objects), "enrolled_photos_per_object": shots if keep else "all",
            "trained_objects_gallery": trained, "enrolled_objects_gallery": enrolled,
            "trained_objects_head": head_trained,
            "enrolled_vs_trained_gallery": _ratio(enrolled["top1"], trained["top1"]),
            "enrolled_vs_trained_head": _ratio(enrolled["top1"], head_trained["top1"]),
            f"trained_objects_head_{shots}_photos": head_same,
            "enrolled_vs_trained_head_same_photos": _ratio(enrolled["top1"], head_same["top1"]),
        }

    report["compression"] = compression(fingerprint, cat_emb, catalogue, test_emb, test, known, held, shots, method, pca_dim)

    # rejection: gallery of trained objects only; held-out objects' photos must be refused
    gallery = _subset_gallery(fingerprint, cat_emb, [s for s in catalogue if s.object_id in known], known)
    score_of = {
        "probability": (np.exp(test_logp).max(1), np.exp(val_logp).max(1)),
        "similarity": (gallery.scores(test_emb, method).max(1), gallery.scores(val_emb, method).max(1)),
    }
    report["rejection"] = {
        name: rejection_metrics(test_scores[is_known], test_scores[~is_known], calibrate(val_scores, recall), recall)
        for name, (test_scores, val_scores) in score_of.items()
    }
    report["rejection"]["recall_target"] = recall

    # fusion: several photos of one object at a time
    groups = fused_groups(test, fuse, seed)
    full = _subset_gallery(fingerprint, cat_emb, catalogue, known, {obj: shots for obj in held})
    index = {obj: i for i, obj in enumerate(full.object_ids)}
    group_targets = np.array([index[test[g[0]].object_id] for g in groups], dtype=int)
    group_known = np.array([test[g[0]].object_id in known for g in groups], dtype=bool)
    fused_scores = full.scores(fuse_embeddings(test_emb, groups), method)
    fused_probability = np.exp(fuse_logprobs(test_logp, groups)).max(1) if groups else np.zeros(0)
    if group_known.any() and not group_known.all():  # several photos of one suspect object: mean probability
        report["rejection_fused"] = rejection_metrics(
            fused_probability[group_known], fused_probability[~group_known],
            report["rejection"]["probability"]["calibrated_threshold"], recall)
        report["rejection_fused"]["photos_per_query"] = fuse
    head_groups = [g for g, k in zip(groups, group_known) if k]
    head_targets = np.array([head_index[test[g[0]].object_id] for g in head_groups], dtype=int)
    report["fusion"] = {
        "photos_per_query": fuse, "groups": len(groups),
        "head_single": head_trained,
        "head_fused": ranks_top(fuse_logprobs(test_logp, head_groups), head_targets),
        "gallery_single_trained": report["enrolment"][f"{shots}_photos"]["trained_objects_gallery"],
        "gallery_single_enrolled": report["enrolment"][f"{shots}_photos"]["enrolled_objects_gallery"],
        "gallery_fused_trained": ranks_top(fused_scores[group_known], group_targets[group_known]),
        "gallery_fused_enrolled": ranks_top(fused_scores[~group_known], group_targets[~group_known]),
    }
    return report


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def compression(fingerprint: str, cat_emb: np.ndarray, catalogue: Sequence[Sample], test_emb: np.ndarray,
                test: Sequence[Sample], known: set[str], held: Sequence[str], shots: int, method: str, pca_dim: int) -> dict:
    """Gallery top-1 with float32, int8 and PCA-reduced int8 catalogue rows (PCA fitted on trained objects only)."""
    trained_rows = np.array([s.object_id in known for s in catalogue])
    dim = min(pca_dim, int(trained_rows.sum()), cat_emb.shape[1])
    center, components = fit_projection(cat_emb[trained_rows], dim)
    is_known = np.array([s.object_id in known for s in test])
    results = {}
    for name, reduce, int8 in (("float32", False, False), ("int8", False, True), (f"int8_pca{dim}", True, True)):
        project = (lambda e: (e - center) @ components) if reduce else (lambda e: e)  # noqa: E731
        rows = project(cat_emb)
        rows = dequantize_int8(*quantize_int8(rows)) if int8 else rows / np.linalg.norm(rows, axis=1, keepdims=True)
        gallery = _subset_gallery(fingerprint, rows, catalogue, known, {obj: shots for obj in held})
        index = {obj: i for i, obj in enumerate(gallery.object_ids)}
        targets = np.array([index[s.object_id] for s in test])
        scores = gallery.scores(project(test_emb), method)
        results[name] = {"dim": int(rows.shape[1]), "bytes_per_photo": int(rows.shape[1] * (1 if int8 else 4) + (4 if int8 else 0)),
                         "trained_objects": ranks_top(scores[is_known], targets[is_known]),
                         "enrolled_objects": ranks_top(scores[~is_known], targets[~is_known])}
    return results


def markdown(report: dict) -> str:
    """The measurement as a Markdown report for people."""
    pct = lambda v: "n/a" if v is None else f"{v:.1%}"  # noqa: E731
    shots = report["shots"]
    lines = [f"# Open-set measurement: {report['bundle']}", "",
             f"{report['trained_objects']} trained objects, {report['held_out_objects']} held out "
             f"({', '.join(report['held_out'])}); {report['queries']} test photos; gallery score `{report['method']}`.", "",
             "## Enrolment without retraining", "",
             "| enrolled with | queries of | ranked by | top-1 | top-5 |", "|---|---|---|---:|---:|"]
    for label, e in report["enrolment"].items():
        lines += [f"| {label.replace('_', ' ')} | trained objects | head (closed set) | {pct(e['trained_objects_head']['top1'])} | {pct(e['trained_objects_head']['top5'])} |",
                  f"| {label.replace('_', ' ')} | trained objects | gallery | {pct(e['trained_objects_gallery']['top1'])} | {pct(e['trained_objects_gallery']['top5'])} |",
                  f"| {label.replace('_', ' ')} | enrolled objects | gallery | {pct(e['enrolled_objects_gallery']['top1'])} | {pct(e['enrolled_objects_gallery']['top5'])} |"]
    e = report["enrolment"][f"{shots}_photos"]
    same = e.get(f"trained_objects_head_{shots}_photos", {})
    lines += ["", f"Enrolled ({shots} photos) top-1 relative to trained objects: {pct(e['enrolled_vs_trained_head'])} of the "
              f"head's, {pct(e['enrolled_vs_trained_gallery'])} of the gallery's (target >= 85%); "
              f"{pct(e.get('enrolled_vs_trained_head_same_photos'))} of the head's on the "
              f"{report.get('trained_objects_with_shots_photos', 0)} trained objects that also have {shots} catalogue photos "
              f"(top-1 {pct(same.get('top1'))}).", "",
              "## Unknown-object rejection (held-out objects as unknowns)", "", "![ROC](rejection_roc.png)", "",
              f"| score | AUROC | false matches at {report['rejection']['recall_target']:.0%} known recall (oracle) | "
              "calibrated threshold (val) | known recall | false matches |", "|---|---:|---:|---:|---:|---:|"]
    for name in SCORES:
        r = report["rejection"][name]
        fmr = next(v for k, v in r.items() if k.startswith("fmr_at_"))
        lines.append(f"| max {name} | {r['auroc']:.3f} | {pct(fmr)} | {r['calibrated_threshold']:.3f} | "
                     f"{pct(r['calibrated_known_recall'])} | {pct(r['calibrated_false_match_rate'])} |")
    if "rejection_fused" in report:
        r = report["rejection_fused"]
        fmr = next(v for k, v in r.items() if k.startswith("fmr_at_"))
        lines.append(f"| max probability, {r['photos_per_query']} photos fused | {r['auroc']:.3f} | {pct(fmr)} | "
                     f"{r['calibrated_threshold']:.3f} | {pct(r['calibrated_known_recall'])} | {pct(r['calibrated_false_match_rate'])} |")
    lines += ["", f"## Gallery storage (enrolled with {shots} photos)", "",
              "| storage | dim | bytes per photo | trained top-1 | enrolled top-1 | enrolled top-5 |", "|---|---:|---:|---:|---:|---:|"]
    for name, c in report.get("compression", {}).items():
        lines.append(f"| {name} | {c['dim']} | {c['bytes_per_photo']} | {pct(c['trained_objects']['top1'])} | "
                     f"{pct(c['enrolled_objects']['top1'])} | {pct(c['enrolled_objects']['top5'])} |")
    f = report["fusion"]
    lines += ["", f"## Multi-photo queries ({f['photos_per_query']} photos of one object fused)", "",
              "| | single photo top-1 | fused top-1 | single top-5 | fused top-5 |", "|---|---:|---:|---:|---:|",
              f"| head, trained objects (mean probability) | {pct(f['head_single']['top1'])} | {pct(f['head_fused']['top1'])} | {pct(f['head_single']['top5'])} | {pct(f['head_fused']['top5'])} |",
              f"| gallery, trained objects (mean embedding) | {pct(f['gallery_single_trained']['top1'])} | {pct(f['gallery_fused_trained']['top1'])} | {pct(f['gallery_single_trained']['top5'])} | {pct(f['gallery_fused_trained']['top5'])} |",
              f"| gallery, enrolled objects (mean embedding) | {pct(f['gallery_single_enrolled']['top1'])} | {pct(f['gallery_fused_enrolled']['top1'])} | {pct(f['gallery_single_enrolled']['top5'])} | {pct(f['gallery_fused_enrolled']['top5'])} |"]
    return "\n".join(lines) + "\n"


def write_report(report: dict, out: Path, stem: str = "openset") -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / f"{stem}.json", "markdown": out / f"{stem}.md"}
    atomic.write_text(paths["json"], json.dumps(report, indent=2) + "\n")
    atomic.write_text(paths["markdown"], markdown(report) if stem == "openset" else scale_markdown(report))
    if stem == "openset":
        paths["roc"] = plot_roc(report, out / "rejection_roc.png")
    return paths


# ---------------------------------------------------------------- catalogue scale

def _head_parameters(num_features: int, hidden: int, objects: int) -> int:
    return 4 * num_features + num_features * hidden + hidden + hidden * objects + objects  # BN + 2 Linear


def scale_benchmark(sizes: Sequence[int] = (1000, 10000, 50000), dim: int = 1280, hidden: int = 2048,
                    photos_per_object: int = 1, queries: int = 50, seed: int = 0, features: int = 1280) -> dict:
    """Closed-set head vs gallery search as the catalogue grows: parameters, bytes and latency per query.

    Synthetic random unit embeddings (what is measured is size and speed, not accuracy).
    Latency: median over `queries` single-photo searches after the backbone (which is the same for both).
    `dim`: gallery embedding size (PCA-reduced or not); `features`: backbone output, the head's input.
    """
    import tempfile

    import torch

    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        count = n * photos_per_object
        vectors = rng.standard_normal((count, dim), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        gallery = Gallery(vectors, np.repeat(np.arange(n, dtype=np.int32), photos_per_object),
                          [GalleryObject(f"obj{i}") for i in range(n)])
        query = rng.standard_normal((queries, dim), dtype=np.float32)
        row = {"objects": n, "gallery_rows": count, "dim": dim}
        # closed-set head (the paper's): BN + Linear(dim, hidden) + Linear(hidden, n)
        params = _head_parameters(features, hidden, n)
        head = torch.nn.Sequential(torch.nn.BatchNorm1d(features), torch.nn.Linear(features, hidden), torch.nn.ReLU(),
                                   torch.nn.Linear(hidden, n)).eval()
        head_input = rng.standard_normal((queries, features), dtype=np.float32)
        row["head_parameters"] = params
        row["head_float32_mb"] = params * 4 / 1e6
        row["head_int8_mb"] = params / 1e6
        with torch.no_grad():
            row["head_ms"] = _median_ms(lambda q: head(torch.from_numpy(q)[None]), head_input)
        with tempfile.TemporaryDirectory() as tmp:
            for dtype in ("float32", "int8"):
                save_gallery(gallery, tmp, dtype)
                row[f"gallery_{dtype}_file_mb"] = (Path(tmp) / "gallery.safetensors").stat().st_size / 1e6
        values, scales = quantize_int8(vectors)
        row["gallery_float32_memory_mb"] = vectors.nbytes / 1e6
        row["gallery_int8_memory_mb"] = (values.nbytes + scales.nbytes) / 1e6
        row["gallery_float32_ms"] = _median_ms(lambda q: gallery.scores(q[None]), query)
        row["gallery_int8_ms"] = _median_ms(lambda q: int8_search(values, scales, q), query)
        rows.append(row)
    return {"sizes": list(sizes), "dim": dim, "photos_per_object": photos_per_object, "rows": rows}


def int8_search(values: np.ndarray, scales: np.ndarray, query: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """Cosine scores of one query against int8 rows without a float copy of the whole gallery."""
    q = query / np.linalg.norm(query)
    out = np.empty(len(values), np.float32)
    for start in range(0, len(values), chunk):
        out[start:start + chunk] = values[start:start + chunk].astype(np.float32) @ q
    return out * scales  # rows are ~unit length before quantisation


def _median_ms(fn, queries: np.ndarray, warmup: int = 3) -> float:
    for q in queries[:warmup]:
        fn(q)
    times = []
    for q in queries:
        started = time.perf_counter()
        fn(q)
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times))


def scale_markdown(report: dict) -> str:
    lines = ["# Catalogue scale: closed-set head vs gallery search", "",
             f"Embedding dim {report['dim']}, {report['photos_per_object']} gallery row(s) per object; latency is per query "
             "after the backbone (median, this CPU).", "",
             "| objects | head params | head MB f32 / int8 | head ms | gallery MB f32 / int8 (file) | gallery memory MB f32 / int8 | search ms f32 / int8 |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        lines.append(f"| {r['objects']:,} | {r['head_parameters'] / 1e6:.1f} M | {r['head_float32_mb']:.1f} / {r['head_int8_mb']:.1f} | "
                     f"{r['head_ms']:.2f} | {r['gallery_float32_file_mb']:.1f} / {r['gallery_int8_file_mb']:.1f} | "
                     f"{r['gallery_float32_memory_mb']:.1f} / {r['gallery_int8_memory_mb']:.1f} | "
                     f"{r['gallery_float32_ms']:.2f} / {r['gallery_int8_ms']:.2f} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- field conditions (artefact-eval --field)

def evaluate_field(bundles: Sequence[Bundle], queries: Sequence[Sample], all_samples: Sequence[Sample], studio: dict,
                   out: Path, seed: int = 0, batch_size: int = 32, progress: bool = True) -> dict:
    """Evaluate field versions of `queries` (see artefact.field); full report in `out/field/`.

    Returns the studio-vs-field summary stored in the studio metrics under "field".
    """
    from artefact.field import contact_sheet, field_tempdir, write_field_set

    from .evaluate import evaluate, write_report as write_eval_report

    with field_tempdir() as tmp:
        field = write_field_set(queries, Path(tmp) / "field", seed, progress)
        metrics, _ = evaluate(bundles, field, all_samples, batch_size, progress)
        step = max(1, len(field) // 32)
        contact_sheet(field[::step], out / "field" / "field_examples.png")
    metrics["field_seed"] = seed
    write_eval_report(metrics, out / "field", f"artefact evaluation: field versions of the {len(field)} queries (seed {seed})")
    summary = {"seed": seed, "report": str(out / "field" / "eval.md")}
    for k in ("top1", "top5"):
        summary[f"studio_{k}"], summary[f"field_{k}"] = studio[k], metrics[k]
        summary[f"gap_{k}_points"] = round(100 * (studio[k] - metrics[k]), 2)
    summary["per_collection_top1"] = {c: {"studio": studio["per_collection"][c]["top1"], "field": v["top1"]}
                                      for c, v in metrics["per_collection"].items()}
    return summary


def field_headline(summary: dict) -> str:
    return (f"studio top-1 {summary['studio_top1']:.1%} top-5 {summary['studio_top5']:.1%} | field top-1 "
            f"{summary['field_top1']:.1%} top-5 {summary['field_top5']:.1%} | gap {summary['gap_top1_points']:.1f} "
            f"points top-1 (field photos seed {summary['seed']}; {summary['report']})")


def _roc_points(labels, scores, points: int = 101) -> dict[str, list[float]]:
    """The ROC curve (false match rate -> known recall) at `points` evenly spaced false match rates."""
    from sklearn.metrics import roc_curve

    if len(np.unique(labels)) < 2:
        return {"false_match_rate": [], "known_recall": []}
    fpr, tpr, _ = roc_curve(labels, scores)
    grid = np.linspace(0, 1, points)
    return {"false_match_rate": [round(float(v), 4) for v in grid],
            "known_recall": [round(float(v), 4) for v in np.interp(grid, fpr, tpr)]}


def plot_roc(report: dict, path: Path) -> Path:
    """ROC curves of the rejection scores: known objects accepted vs unknown objects falsely matched."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {f"max {name}": report["rejection"][name] for name in SCORES}
    if "rejection_fused" in report:
        curves[f"max probability, {report['rejection_fused']['photos_per_query']} photos fused"] = report["rejection_fused"]
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=120)
    for label, r in curves.items():
        if r.get("roc", {}).get("false_match_rate"):
            ax.plot(r["roc"]["false_match_rate"], r["roc"]["known_recall"], label=f"{label} (AUROC {r['auroc']:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.axhline(report["rejection"]["recall_target"], color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("unknown objects falsely matched")
    ax.set_ylabel("known objects accepted")
    ax.set_title("Unknown-object rejection (held-out objects)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def _roc_auc(labels, scores) -> float:
    from sklearn.metrics import roc_auc_score  # imported here: sklearn costs every CLI ~0.8 s at start-up

    return roc_auc_score(labels, scores)
