"""The field-app asset folder (android_demo/ASSETS.md): int8 model, labels, config, thumbnails, gallery.

The decision threshold is chosen on the val split with the int8 model the app runs:
`min_probability` = the smallest top-1 probability t such that, among val photos whose top-1
probability is >= t, the top-1 object is right on >= 95% (`target_precision`). When no t reaches
that, the t with the highest precision is used and `target_met` is false.

The gallery (gallery.bin + the config's "gallery" block) holds every catalogue (train-split) photo
of the trained objects and the photos of objects enrolled into the bundle's gallery (artefact-enroll),
embedded by the int8 model itself (its "embedding" output), L2-normalised and stored as int8 rows.
`gallery_ranking` is the reference the apps mirror: objects ranked by their best photo's cosine
similarity; "no match" below the head's `min_probability` for a trained best object, and below
`min_similarity` (which accepts 95% of val photos of trained objects) for an enrolled one.
"""
from __future__ import annotations

import collections
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from artefact import atomic
from artefact.bundle import Bundle, file_sha256
from artefact.data import natural_key, read_manifest
from artefact.errors import ArtefactError
from artefact.gallery import calibrate, has_gallery, load_gallery
from artefact.images import ImageDecodeError, load_image

from .metadata import labels_text

log = logging.getLogger("artefact")
CONFIG_FORMAT = 1
THUMB_SIZE = 96
TOP_K = 5
TARGET_PRECISION = 0.95
# What may be in an asset folder that is replaced (the spec's files plus this tool's reports).
ASSET_NAMES = {"model.tflite", "labels.txt", "artefact_config.json", "thumbs", "gallery.bin", "export_manifest.json",
               "parity.json", "parity.md"}
GALLERY_FILE = "gallery.bin"
GALLERY_RECALL = 0.95  # share of val photos of trained objects that min_similarity accepts
GALLERY_WARN_BYTES = 32 * 2**20


def choose_threshold(logprobs: np.ndarray, targets: np.ndarray, target_precision: float = TARGET_PRECISION) -> dict:
    """The val-split threshold rule (module docstring); returns the config's `threshold` block."""
    if len(targets) == 0:
        raise ArtefactError("no val photos to choose the decision threshold on")
    probs = np.exp(logprobs.max(axis=1))
    right = logprobs.argmax(axis=1) == targets
    order = np.argsort(-probs)
    precision = np.cumsum(right[order]) / np.arange(1, len(order) + 1)  # accepting the k most confident
    ok = np.flatnonzero(precision >= target_precision)
    # the largest accepted set reaching the target; else the largest set with the best precision
    best = int(ok[-1]) if len(ok) else len(precision) - 1 - int(np.argmax(precision[::-1]))
    threshold = float(probs[order][best])
    return {
        "min_probability": round(threshold, 4),
        "rule": f"smallest top-1 probability above which top-1 is right on >= {target_precision:.0%} of val photos",
        "target_precision": target_precision,
        "target_met": bool(len(ok)),
        "val_precision": round(float(precision[best]), 4),
        "val_coverage": round(float((best + 1) / len(order)), 4),
        "val_photos": int(len(targets)),
    }


def _square_thumbnail(path: str, bundle: Bundle) -> bytes:
    image = load_image(path)
    return _jpeg(image.crop(bundle.preprocess.crop_box(*image.size)).resize((THUMB_SIZE, THUMB_SIZE)))


def thumbnails(bundle: Bundle) -> dict[int, bytes]:
    """96x96 JPEG of each object's first catalogue (train) photo, centre-cropped like the contract."""
    if bundle.manifest is None:
        raise ArtefactError(f"{bundle.path}: bundle has no manifest.csv, so there are no catalogue photos for thumbnails")
    photos = collections.defaultdict(list)
    for s in read_manifest(bundle.manifest):
        photos[s.object_id].append(s)
    thumbs = {}
    for index, object_id in enumerate(bundle.label_ids):
        candidates = sorted(photos.get(object_id, []), key=lambda s: (s.split != "train", natural_key(s.path)))
        for sample in candidates:
            try:
                thumbs[index] = _square_thumbnail(sample.path, bundle)
            except ImageDecodeError:
                continue
            break
        else:
            raise ArtefactError(f"{bundle.manifest}: no readable photo of {object_id!r} for its thumbnail")
    return thumbs


def _jpeg(image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


# ---------------------------------------------------------------- gallery

@dataclass
class AppGallery:
    """What goes into gallery.bin and the config's "gallery" block."""

    objects: list[dict]  # object_id, collection, first_row, rows, enrolled, label_index, thumbnail
    values: np.ndarray  # (rows, dim) int8: L2-normalised embeddings scaled to +-127 per row
    min_similarity: float
    enrolled_thumbs: dict[str, bytes]  # thumbnail file name -> JPEG

    def block(self, sha256: str) -> dict:
        rows, dim = self.values.shape
        return {"file": GALLERY_FILE, "sha256": sha256, "rows": int(rows), "dim": int(dim), "dtype": "int8",
                "similarity": "cosine", "min_similarity": round(self.min_similarity, 4),
                "rule": f"accepts {GALLERY_RECALL:.0%} of val photos of trained objects (int8 model embeddings)",
                "objects": self.objects}


def _catalogue_photos(bundle: Bundle) -> list[tuple[str, str, str, int | None]]:
    """(object_id, collection, photo path, label index or None) of trained then enrolled objects."""
    by_object = collections.defaultdict(list)
    for s in read_manifest(bundle.manifest):
        if s.split == "train":
            by_object[s.object_id].append(s.path)
    photos = []
    for index, label in enumerate(bundle.labels):
        if not by_object.get(label.object_id):
            raise ArtefactError(f"{bundle.manifest}: no catalogue (train) photos of {label.object_id!r} for the gallery")
        photos += [(label.object_id, label.collection, path, index) for path in sorted(by_object[label.object_id], key=natural_key)]
    if has_gallery(bundle.path):
        for obj in load_gallery(bundle.path, check_fingerprint=False).objects:  # only its photos are used
            if obj.enrolled:
                if not obj.sources:
                    raise ArtefactError(f"{bundle.path}: enrolled object {obj.object_id!r} has no source photos; re-enrol it")
                photos += [(obj.object_id, obj.collection, path, None) for path in obj.sources]
    return photos


def quantize_rows(embeddings: np.ndarray) -> np.ndarray:
    """L2-normalise each row and scale it to +-127 (int8): cosine is dot(q, v) / |v| either way."""
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    scale = np.maximum(np.abs(unit).max(axis=1, keepdims=True), 1e-12)
    return np.round(unit / scale * 127).astype(np.int8)


def object_similarities(values: np.ndarray, objects: list[dict], embeddings: np.ndarray) -> np.ndarray:
    """(queries, objects) cosine similarity of raw embeddings to each object's best gallery row."""
    rows = values.astype(np.float64)
    rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-300)
    queries = np.atleast_2d(embeddings).astype(np.float64)
    norms = np.linalg.norm(queries, axis=1, keepdims=True)
    queries = np.divide(queries, norms, out=np.zeros_like(queries), where=norms > 0)
    sims = queries @ rows.T
    starts = [o["first_row"] for o in objects]
    return np.maximum.reduceat(sims, starts, axis=1)


def gallery_ranking(config: dict, values: np.ndarray, logprobs: np.ndarray, embedding: np.ndarray) -> dict:
    """The apps' ranking and decision for one photo (android_demo/ASSETS.md): the reference they mirror.

    Returns {"matches": gallery object indices best first, "similarities": theirs, "confident": bool}.
    """
    gallery = config["gallery"]
    scores = object_similarities(values, gallery["objects"], embedding)[0]
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[: min(config["top_k"], len(scores))]
    best = gallery["objects"][order[0]]
    if best["label_index"] is None:
        confident = scores[order[0]] >= gallery["min_similarity"]
    else:
        confident = float(np.exp(np.ravel(logprobs)[best["label_index"]])) >= config["threshold"]["min_probability"]
    return {"matches": order, "similarities": [float(scores[i]) for i in order], "confident": bool(confident)}


def build_app_gallery(bundle: Bundle, runner, val_embeddings: np.ndarray, progress: bool = True) -> AppGallery:
    """Embed the catalogue and enrolled photos with the app's own int8 model; calibrate min_similarity on the
    val photos' embeddings (from the same model)."""
    photos = _catalogue_photos(bundle)
    objects, rows, thumbs = [], [], {}
    embeddings = []
    for object_id, collection, path, label_index in tqdm(photos, desc="gallery photos", unit="img", disable=not progress, leave=False):
        try:
            pixels = bundle.preprocess.to_pixels(load_image(path))
        except ImageDecodeError as err:
            raise ArtefactError(f"gallery photo of {object_id!r}: {err}") from None
        embeddings.append(runner.logprobs_and_embeddings(pixels)[1][0])
        if not objects or objects[-1]["object_id"] != object_id:
            thumbnail = f"thumbs/{label_index}.jpg"
            if label_index is None:
                thumbnail = f"thumbs/enrolled-{len(thumbs)}.jpg"
                thumbs[thumbnail] = _square_thumbnail(path, bundle)
            objects.append({"object_id": object_id, "collection": collection, "first_row": len(rows), "rows": 0,
                            "enrolled": label_index is None, "label_index": label_index, "thumbnail": thumbnail})
        objects[-1]["rows"] += 1
        rows.append(len(objects) - 1)
    values = quantize_rows(np.stack(embeddings))
    min_similarity = calibrate(object_similarities(values, objects, val_embeddings).max(axis=1), GALLERY_RECALL)
    if values.nbytes > GALLERY_WARN_BYTES:
        log.warning("gallery.bin is %.0f MB: large for a phone app (export with --no-gallery, or prune the catalogue)",
                    values.nbytes / 2**20)
    return AppGallery(objects, values, min_similarity, thumbs)


def app_config(bundle: Bundle, model_path: Path, input_quantization: dict, threshold: dict) -> dict:
    p = bundle.preprocess
    return {
        "format_version": CONFIG_FORMAT,
        "model_file": "model.tflite",
        "labels_file": "labels.txt",
        "model_sha256": file_sha256(model_path),
        "label_hash": bundle.label_hash,
        "input": {
            "width": p.input_size, "height": p.input_size, "channels": 3,
            "dtype": "uint8", "layout": "NHWC", "channel_order": p.channel_order,
            "crop_fraction": p.crop_fraction, "interpolation": p.interpolation,
            "mean": list(p.mean), "std": list(p.std),
            "quantization": input_quantization,
        },
        "output": {"type": "log_probabilities", "dtype": "float32", "num_classes": len(bundle.labels)},
        "labels": [{"index": i, "object_id": l.object_id, "collection": l.collection, "thumbnail": f"thumbs/{i}.jpg"}
                   for i, l in enumerate(bundle.labels)],
        "top_k": min(TOP_K, len(bundle.labels)),
        "threshold": threshold,
        "source_bundle": bundle.name,
    }


def write_assets(out: Path, bundle: Bundle, int8_model: Path, input_quantization: dict, threshold: dict,
                 extra_files: dict[str, bytes] | None = None, gallery: AppGallery | None = None) -> Path:
    """Write the asset folder atomically (replacing an older one at `out`)."""
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in ASSET_NAMES and not p.name.startswith("."))
        if foreign:
            raise ArtefactError(f"{out}: not an app asset folder (holds {', '.join(foreign[:3])}); "
                                f"pass an empty folder or an earlier asset folder as --out")
    thumbs = thumbnails(bundle)
    config = app_config(bundle, int8_model, input_quantization, threshold)
    if gallery is not None:
        data = np.ascontiguousarray(gallery.values).tobytes()
        config["embedding"] = {"output_index": 1, "dim": int(gallery.values.shape[1]), "dtype": "float32"}
        config["gallery"] = gallery.block(hashlib.sha256(data).hexdigest())
        extra_files = {**(extra_files or {}), GALLERY_FILE: data, **gallery.enrolled_thumbs}
    with atomic.atomic_dir(out) as tmp:
        (tmp / "model.tflite").write_bytes(int8_model.read_bytes())
        (tmp / "labels.txt").write_text(labels_text(bundle), encoding="utf-8")
        atomic.write_json(tmp / "artefact_config.json", config)
        (tmp / "thumbs").mkdir()
        for index, data in thumbs.items():
            (tmp / "thumbs" / f"{index}.jpg").write_bytes(data)
        for name, data in (extra_files or {}).items():
            (tmp / name).write_bytes(data)
    if gallery is not None:
        log.info("android gallery: %d objects (%d enrolled), %d photos, no-match below similarity %.3f for enrolled objects",
                 len(gallery.objects), sum(o["enrolled"] for o in gallery.objects), len(gallery.values), gallery.min_similarity)
    log.info("android assets: %s (threshold %.4f, %s)", out, threshold["min_probability"], threshold["rule"])
    return out
