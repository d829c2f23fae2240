"""Embedding gallery: catalogue photos as L2-normalised `ArtefactNet.embed` vectors, searchable by cosine.

A gallery lets a bundle recognise objects it was never trained on: enrolling an object only
embeds a few of its photos (no retraining).  It lives inside the bundle folder:

    gallery.safetensors  "embeddings" (rows x dim; float32, or int8 with per-row "scales"),
                         "rows" (int32 object index of each row; rows of one object are contiguous)
    gallery.json         format version, the bundle fingerprint it was built with, the embedding
                         (source, dim, dtype), the ordered objects (id, collection, photos, enrolled
                         or trained) and the calibrated "not in catalogue" threshold, if any.

An object's score is its best-matching photo's cosine similarity ("nn"), or the cosine to the
mean of its photos ("centroid").  Each file is written atomically; gallery.json records the sha256
of gallery.safetensors, so a half-updated pair is detected on load, and the bundle fingerprint,
so a gallery is never used with weights it was not built from.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file, save_file
from tqdm.auto import tqdm

from . import atomic
from .bundle import Bundle, Label, bundle_fingerprint, file_sha256
from .contract import Preprocess
from .data import Sample, natural_key
from .errors import ArtefactError
from .infer import PhotoDataset, default_device

GALLERY_FORMAT = 1
GALLERY_WEIGHTS = "gallery.safetensors"
GALLERY_META = "gallery.json"
METHODS = ("nn", "centroid")


@dataclass
class GalleryObject:
    object_id: str
    collection: str = ""
    photos: int = 0
    enrolled: bool = False  # True: added by enrolment, unknown to the bundle's classifier head
    sources: list[str] = field(default_factory=list)  # enrolled objects' photos, to rebuild the gallery


@dataclass
class Gallery:
    """Catalogue embeddings grouped by object (rows of one object are contiguous)."""

    embeddings: np.ndarray  # (rows, dim) float32, L2-normalised
    rows: np.ndarray  # (rows,) int32 object index
    objects: list[GalleryObject]
    fingerprint: str = ""  # bundle_fingerprint of the bundle that made the embeddings
    threshold: dict | None = None  # calibrated "not in catalogue" decision
    dtype: str = "float32"  # storage: float32, or int8 with per-row scales
    extra: dict = field(default_factory=dict)
    center: np.ndarray | None = None  # PCA projection of embeddings (None: full dimension)
    projection: np.ndarray | None = None  # (model dim, gallery dim)

    @property
    def object_ids(self) -> list[str]:
        return [o.object_id for o in self.objects]

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def project(self, embeddings: np.ndarray) -> np.ndarray:
        """Model embeddings -> the gallery's (possibly PCA-reduced) unit vectors."""
        embeddings = np.atleast_2d(np.asarray(embeddings, np.float32))
        if self.projection is None:
            return _normalise(embeddings)
        return _normalise((embeddings - self.center) @ self.projection)

    def index_of(self, object_id: str) -> int | None:
        return next((i for i, o in enumerate(self.objects) if o.object_id == object_id), None)

    def add(self, object_id: str, collection: str, embeddings: np.ndarray, sources: Sequence[str] = (),
            replace_existing: bool = False) -> "Gallery":
        """A new gallery with `object_id`'s photos added (or replaced, with `replace_existing`)."""
        index = self.index_of(object_id)
        if index is not None and not replace_existing:
            raise ArtefactError(f"object {object_id!r} is already in the gallery (use --replace to re-enrol it)")
        keep = self.rows != index if index is not None else np.ones(len(self.rows), bool)
        objects = [o for i, o in enumerate(self.objects) if i != index]
        remap = np.array([j - (index is not None and j > index) for j in range(len(self.objects))], np.int32)
        rows = np.concatenate([remap[self.rows[keep]], np.full(len(embeddings), len(objects), np.int32)])
        objects.append(GalleryObject(object_id, collection, len(embeddings), True, [str(p) for p in sources]))
        return Gallery(np.concatenate([self.embeddings[keep], self.project(embeddings)]), rows, objects,
                       self.fingerprint, self.threshold, self.dtype, dict(self.extra), self.center, self.projection)

    def centroids(self) -> np.ndarray:
        """(objects, dim) L2-normalised mean embedding of each object."""
        sums = np.zeros((len(self.objects), self.dim), np.float32)
        np.add.at(sums, self.rows, self.embeddings)
        return _normalise(sums)

    def scores(self, queries: np.ndarray, method: str = "nn") -> np.ndarray:
        """(queries, objects) cosine similarity of each query (model embeddings) to each object."""
        queries = self.project(queries)
        if method == "centroid":
            return queries @ self.centroids().T
        if method != "nn":
            raise ArtefactError(f"unknown gallery method {method!r} (expected one of {', '.join(METHODS)})")
        sims = queries @ self.embeddings.T
        starts = np.flatnonzero(np.r_[True, self.rows[1:] != self.rows[:-1]])
        if len(starts) != len(self.objects) or not np.all(np.diff(self.rows) >= 0):
            raise ArtefactError("corrupt gallery: rows of one object are not contiguous and ordered")
        return np.maximum.reduceat(sims, starts, axis=1)


def calibrate(known_scores: np.ndarray, recall: float = 0.95) -> float:
    """Threshold that keeps `recall` of known objects' validation scores at or above it."""
    if len(known_scores) == 0:
        raise ArtefactError("no validation photos to calibrate the threshold on")
    return float(np.quantile(known_scores, 1 - recall, method="lower"))


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


# ---------------------------------------------------------------- embedding photos

@torch.no_grad()
def embed_and_predict(model: torch.nn.Module, preprocess: Preprocess, samples: Sequence[Sample],
                      batch_size: int = 32, device: str | None = None, desc: str = "embedding",
                      progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(L2-normalised embeddings (N, dim), head log-probabilities (N, n_objects)) in one backbone pass."""
    device = device or default_device()
    model = model.to(device).eval()
    loader = torch.utils.data.DataLoader(PhotoDataset(samples, preprocess), batch_size=batch_size, shuffle=False)
    embeddings, logprobs = [], []
    for x, _ in tqdm(loader, desc=desc, unit="batch", disable=not progress, leave=False):
        features = model.features(x.to(device)).float()
        embeddings.append(F.normalize(features, dim=1).cpu().numpy())
        logprobs.append(F.log_softmax(model.head(features), dim=1).cpu().numpy())
    if not embeddings:
        return np.zeros((0, model.num_features), np.float32), np.zeros((0, model.num_classes), np.float32)
    return np.concatenate(embeddings), np.concatenate(logprobs)


def embed(bundle: Bundle, samples: Sequence[Sample], batch_size: int = 32, progress: bool = True) -> np.ndarray:
    """L2-normalised embeddings of photos under the bundle's preprocessing contract."""
    return embed_and_predict(bundle.model, bundle.preprocess, samples, batch_size, progress=progress)[0]


def fit_projection(embeddings: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(center, (model dim, dim) components) of a PCA of catalogue embeddings."""
    if not 0 < dim <= min(embeddings.shape):
        raise ArtefactError(f"a {dim}-d projection needs at least {dim} catalogue photos and dimensions "
                            f"(have {embeddings.shape[0]} photos of {embeddings.shape[1]}-d)")
    center = embeddings.mean(0)
    _, _, vt = np.linalg.svd(embeddings - center, full_matrices=False)
    return center.astype(np.float32), np.ascontiguousarray(vt[:dim].T, np.float32)


def build_gallery(bundle: Bundle, samples: Sequence[Sample], batch_size: int = 32, progress: bool = True,
                  embeddings: np.ndarray | None = None, dim: int | None = None) -> Gallery:
    """A gallery of `samples` (catalogue photos); objects the bundle's head knows are marked trained.

    `dim`: reduce embeddings to `dim` PCA components fitted on these photos (smaller galleries).
    """
    if not samples:
        raise ArtefactError("no catalogue photos to build a gallery from")
    order = sorted(range(len(samples)), key=lambda i: (natural_key(samples[i].object_id), natural_key(samples[i].path)))
    samples = [samples[i] for i in order]
    vectors = embed(bundle, samples, batch_size, progress) if embeddings is None else _normalise(embeddings)[order]
    known = set(bundle.label_ids)
    objects: list[GalleryObject] = []
    rows = np.zeros(len(samples), np.int32)
    for i, s in enumerate(samples):
        if not objects or objects[-1].object_id != s.object_id:
            objects.append(GalleryObject(s.object_id, s.collection, 0, s.object_id not in known))
        objects[-1].photos += 1
        if objects[-1].enrolled:  # unknown to the head: keep its photos, so the gallery can be rebuilt and exported
            objects[-1].sources.append(str(s.path))
        rows[i] = len(objects) - 1
    gallery = Gallery(vectors, rows, objects, bundle_fingerprint(bundle.path))
    if dim is not None and dim < vectors.shape[1]:
        gallery.center, gallery.projection = fit_projection(vectors, dim)
        gallery.embeddings = gallery.project(vectors)
    return gallery


# ---------------------------------------------------------------- storage

def quantize_int8(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row int8: (int8 rows, float32 scales) with rows ~= int8 * scale."""
    scales = np.maximum(np.abs(embeddings).max(axis=1), 1e-12) / 127.0
    return np.round(embeddings / scales[:, None]).astype(np.int8), scales.astype(np.float32)


def dequantize_int8(values: np.ndarray, scales: np.ndarray) -> np.ndarray:
    return _normalise(values.astype(np.float32) * scales[:, None])


def save_gallery(gallery: Gallery, folder: str | os.PathLike, dtype: str | None = None) -> Path:
    """Write gallery.safetensors then gallery.json into `folder` (the bundle), each atomically.

    `dtype` (default: the gallery's own) is float32, or int8 (a quarter of the size).
    """
    folder = Path(folder)
    dtype = dtype or gallery.dtype
    if dtype == "int8":
        values, scales = quantize_int8(gallery.embeddings)
        tensors = {"embeddings": values, "scales": scales}
    elif dtype == "float32":
        tensors = {"embeddings": np.ascontiguousarray(gallery.embeddings, np.float32)}
    else:
        raise ArtefactError(f"unknown gallery dtype {dtype!r} (expected float32 or int8)")
    tensors["rows"] = np.ascontiguousarray(gallery.rows, np.int32)
    if gallery.projection is not None:
        tensors["center"], tensors["projection"] = gallery.center, gallery.projection
    with atomic.atomic_path(folder / GALLERY_WEIGHTS) as tmp:
        save_file(tensors, str(tmp))
    meta = {
        "format_version": GALLERY_FORMAT,
        "bundle_fingerprint": gallery.fingerprint,
        "weights_sha256": file_sha256(folder / GALLERY_WEIGHTS),
        "embedding": {"source": "ArtefactNet.embed (L2-normalised pooled backbone features)",
                      "dim": gallery.dim, "dtype": dtype, "similarity": "cosine",
                      "projection": None if gallery.projection is None else f"pca {gallery.projection.shape[0]}->{gallery.dim}"},
        "objects": [o.__dict__ for o in gallery.objects],
        "threshold": gallery.threshold,
        **gallery.extra,
    }
    atomic.write_json(folder / GALLERY_META, meta)
    return folder / GALLERY_META


def has_gallery(folder: str | os.PathLike) -> bool:
    return (Path(folder) / GALLERY_META).is_file()


def load_gallery(folder: str | os.PathLike, check_fingerprint: bool = True) -> Gallery:
    """Read a bundle's gallery; raises if it is missing, corrupt or built with other weights."""
    folder = Path(folder)
    meta_path, weights_path = folder / GALLERY_META, folder / GALLERY_WEIGHTS
    if not meta_path.is_file() or not weights_path.is_file():
        raise ArtefactError(f"{folder}: no gallery (build one with `artefact-openset gallery --bundle {folder}`)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        objects = [GalleryObject(**o) for o in meta["objects"]]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise ArtefactError(f"{meta_path}: corrupt gallery metadata ({err})") from None
    if meta.get("format_version") != GALLERY_FORMAT:
        raise ArtefactError(f"{meta_path}: gallery format {meta.get('format_version')!r} is not supported")
    if meta.get("weights_sha256") != file_sha256(weights_path):
        raise ArtefactError(f"{weights_path}: does not match {meta_path} (interrupted update?); rebuild the gallery")
    if check_fingerprint and meta.get("bundle_fingerprint") != bundle_fingerprint(folder):
        raise ArtefactError(f"{meta_path}: built with different model weights; rebuild the gallery")
    try:
        tensors = load_file(str(weights_path))
        values, rows = tensors["embeddings"], tensors["rows"]
        embeddings = dequantize_int8(values, tensors["scales"]) if values.dtype == np.int8 else values.astype(np.float32)
    except Exception as err:  # noqa: BLE001 - any decode failure is the same user error
        raise ArtefactError(f"{weights_path}: corrupt gallery ({type(err).__name__})") from None
    if len(rows) != len(embeddings) or (len(rows) and rows.max() >= len(objects)):
        raise ArtefactError(f"{weights_path}: rows do not match the {len(objects)} objects of {meta_path}")
    known = {"format_version", "bundle_fingerprint", "weights_sha256", "embedding", "objects", "threshold"}
    return Gallery(embeddings, rows.astype(np.int32), objects, meta.get("bundle_fingerprint", ""),
                   meta.get("threshold"), "int8" if values.dtype == np.int8 else "float32",
                   {k: v for k, v in meta.items() if k not in known}, tensors.get("center"), tensors.get("projection"))


def labels_of_gallery(gallery: Gallery) -> list[Label]:
    return [Label(o.object_id, o.collection) for o in gallery.objects]


def empty_gallery(bundle: Bundle) -> Gallery:
    """A gallery with no objects yet (for a bundle saved without its catalogue manifest)."""
    dim = bundle.model.num_features
    return Gallery(np.zeros((0, dim), np.float32), np.zeros(0, np.int32), [], bundle_fingerprint(bundle.path))


@torch.no_grad()
def rank(bundle: Bundle, gallery: Gallery, image, top_k: int = 5, method: str = "nn") -> dict:
    """Rank gallery objects for one photo: cosine similarity, plus the head's probability for trained ones.

    Returns {"matches": [...], "decision": "match" | "no match" | "uncalibrated"}.  The decision
    (artefact-openset calibrate) uses the head's probability when the best match is a trained
    object (it separates unknown objects better than similarity: openset.md) and the similarity
    when it is an enrolled object, which the head does not know; the apps decide the same way.
    """
    if not gallery.objects:
        raise ArtefactError(f"{bundle.path}: the gallery is empty (enrol objects with artefact-enroll)")
    x = torch.from_numpy(bundle.preprocess(image))[None]
    features = bundle.model.features(x)
    query = F.normalize(features, dim=1).numpy()
    probs = torch.softmax(bundle.model.head(features), dim=1)[0].numpy()
    head_index = {obj: i for i, obj in enumerate(bundle.label_ids)}
    scores = gallery.scores(query, method)[0]
    order = np.argsort(-scores)[:top_k]
    matches = []
    for i in order:
        obj = gallery.objects[i]
        head = head_index.get(obj.object_id)
        matches.append({"object": obj.object_id, "collection": obj.collection, "similarity": round(float(scores[i]), 4),
                        "probability": None if head is None else round(float(probs[head]), 4), "enrolled": obj.enrolled})
    best_head = head_index.get(gallery.objects[order[0]].object_id)
    score, key = (scores[order[0]], "similarity") if best_head is None else (probs[best_head], "probability")
    threshold = (gallery.threshold or {}).get(key)
    decision = "uncalibrated" if threshold is None else "match" if score >= threshold else "no match"
    return {"matches": matches, "decision": decision}
