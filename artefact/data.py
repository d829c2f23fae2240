"""Catalogue data: scan photo folders or CSV manifests, filter, split by the museum protocol.

Layouts read: ``root/<collection>/<object>/*.jpg``, ``root/<object>/*.jpg`` and a CSV manifest
with columns ``path,object,collection,split`` (paths relative to the manifest's folder).
A dataset root holding ``images/`` (and optionally ``masks/``), like ETH-80, is read from ``images/``.
"""
from __future__ import annotations

import collections
import csv
import io
import os
import random
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Sequence

from . import atomic
from .errors import ArtefactError
from .images import is_image_file

MANIFEST_COLUMNS = ("path", "object", "collection", "split")
SPLITS = ("train", "val", "test")
# Museum protocol: P(catalogue size n) per object (from the Durham study's photo distribution).
CATALOGUE_SIZE_PROBS = {3: 0.30, 4: 0.20, 5: 0.15, 6: 0.10, 7: 0.08, 8: 0.07, 9: 0.05, 10: 0.05}
VAL_PER_OBJECT = 2


@dataclass(frozen=True)
class Sample:
    """One photo of one catalogued object."""

    path: str
    object_id: str
    collection: str = ""
    split: str = ""


def natural_key(text: str) -> list:
    """Sort key that puts 'cup2' before 'cup10'."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def _images_in(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and is_image_file(p)), key=lambda p: natural_key(p.name))


def _subdirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: natural_key(p.name))


def image_root(root: str | os.PathLike) -> Path:
    """The folder holding the photos: `root/images` when the dataset keeps masks beside them."""
    root = Path(root)
    if not root.exists():
        raise ArtefactError(f"{root}: no such folder")
    if not root.is_dir():
        raise ArtefactError(f"{root}: not a folder")
    return root / "images" if (root / "images").is_dir() else root


def scan_folder(root: str | os.PathLike) -> list[Sample]:
    """All photos under a folder laid out by (collection/)object; raises on an empty folder."""
    base = image_root(root)
    samples: list[Sample] = []
    for top in _subdirs(base):
        if _images_in(top):  # root/<object>/*.jpg
            samples += [Sample(str(p), top.name, "") for p in _images_in(top)]
        for obj in _subdirs(top):  # root/<collection>/<object>/*.jpg
            samples += [Sample(str(p), obj.name, top.name) for p in _images_in(obj)]
    if not samples:
        raise ArtefactError(
            f"{root}: no photos found (expected <root>/<collection>/<object>/*.jpg or <root>/<object>/*.jpg)"
        )
    return _disambiguate_object_ids(samples)


def _disambiguate_object_ids(samples: list[Sample]) -> list[Sample]:
    collections_of = collections.defaultdict(set)
    for s in samples:
        collections_of[s.object_id].add(s.collection)
    clashing = {obj for obj, cols in collections_of.items() if len(cols) > 1}
    return [replace(s, object_id=f"{s.collection}/{s.object_id}") if s.object_id in clashing else s for s in samples]


def read_manifest(path: str | os.PathLike, check_files: bool = True) -> list[Sample]:
    """Read a CSV manifest; relative paths are resolved against the manifest's folder."""
    path = Path(path)
    if not path.is_file():
        raise ArtefactError(f"{path}: no such manifest")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"path", "object"} - set(reader.fieldnames or [])
        if missing:
            raise ArtefactError(f"{path}: manifest lacks column(s) {', '.join(sorted(missing))}")
        samples = []
        for line, row in enumerate(reader, start=2):
            file_path = Path(row["path"])
            if not file_path.is_absolute():
                file_path = path.parent / file_path
            split = (row.get("split") or "").strip()
            if split and split not in SPLITS:
                raise ArtefactError(f"{path}:{line}: unknown split {split!r} (expected one of {', '.join(SPLITS)})")
            if check_files and not file_path.is_file():
                raise ArtefactError(f"{path}:{line}: photo not found: {file_path}")
            samples.append(Sample(os.path.normpath(file_path), row["object"].strip(), (row.get("collection") or "").strip(), split))
    if not samples:
        raise ArtefactError(f"{path}: manifest has no rows")
    return samples


def manifest_text(samples: Iterable[Sample], relative_to: str | os.PathLike) -> str:
    """CSV text of a manifest, paths relative to `relative_to` (the manifest's folder)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    base = os.path.abspath(relative_to)
    for s in samples:
        writer.writerow([os.path.relpath(os.path.abspath(s.path), base), s.object_id, s.collection, s.split])
    return buffer.getvalue()


def write_manifest(samples: Sequence[Sample], path: str | os.PathLike) -> Path:
    path = Path(path)
    atomic.write_text(path, manifest_text(samples, path.parent))
    return path


def load_samples(source: str | os.PathLike) -> list[Sample]:
    """Samples from a manifest (.csv) or a photo folder."""
    source = Path(source)
    return read_manifest(source) if source.suffix.lower() == ".csv" else scan_folder(source)


def photos_per_object(samples: Iterable[Sample]) -> dict[str, int]:
    return dict(collections.Counter(s.object_id for s in samples))


def filter_min_images(samples: Sequence[Sample], min_images: int) -> tuple[list[Sample], list[str]]:
    """Drop objects with fewer than `min_images` photos; returns (kept samples, dropped object ids)."""
    counts = photos_per_object(samples)
    dropped = sorted((obj for obj, n in counts.items() if n < min_images), key=natural_key)
    kept = [s for s in samples if counts[s.object_id] >= min_images]
    return kept, dropped


def museum_protocol(samples: Sequence[Sample], seed: int = 0, val_per_object: int = VAL_PER_OBJECT) -> list[Sample]:
    """Assign splits as the museum protocol: n catalogue photos (train), 2 val, the rest test.

    n is drawn per object from CATALOGUE_SIZE_PROBS and capped so that val and at least one
    test photo remain. Deterministic for a seed; output is sorted by object then path.
    """
    rng = random.Random(seed)
    by_object: dict[str, list[Sample]] = collections.defaultdict(list)
    for s in samples:
        by_object[s.object_id].append(s)
    sizes, weights = zip(*CATALOGUE_SIZE_PROBS.items())
    split_samples: list[Sample] = []
    for obj in sorted(by_object, key=natural_key):
        photos = sorted(by_object[obj], key=lambda s: natural_key(s.path))
        if len(photos) < min(sizes) + val_per_object + 1:
            raise ArtefactError(
                f"object {obj!r} has {len(photos)} photos; the museum protocol needs at least "
                f"{min(sizes) + val_per_object + 1} (filter with --min-images)"
            )
        n_train = min(rng.choices(sizes, weights)[0], len(photos) - val_per_object - 1)
        order = list(range(len(photos)))
        rng.shuffle(order)
        for rank, index in enumerate(order):
            split = "train" if rank < n_train else "val" if rank < n_train + val_per_object else "test"
            split_samples.append(replace(photos[index], split=split))
    return sorted(split_samples, key=lambda s: (natural_key(s.object_id), s.split, natural_key(s.path)))


def select_split(samples: Iterable[Sample], split: str) -> list[Sample]:
    if split not in SPLITS:
        raise ArtefactError(f"unknown split {split!r} (expected one of {', '.join(SPLITS)})")
    chosen = [s for s in samples if s.split == split]
    if not chosen:
        raise ArtefactError(f"no photos in split {split!r}")
    return chosen


def labels_of(samples: Iterable[Sample]) -> list[tuple[str, str]]:
    """Ordered (object_id, collection) pairs: the label order of a model trained on `samples`."""
    pairs = {(s.object_id, s.collection) for s in samples}
    return sorted(pairs, key=lambda pair: natural_key(pair[0]))


def catalogue_sizes(samples: Iterable[Sample]) -> dict[str, int]:
    """Photos per object in the train split (the catalogue size n of the museum protocol)."""
    return photos_per_object(s for s in samples if s.split == "train")


def summarize(samples: Sequence[Sample]) -> dict:
    """Counts for people: objects, images, per collection, per split, photos-per-object histogram."""
    counts = photos_per_object(samples)
    per_collection = collections.defaultdict(lambda: {"objects": set(), "images": 0})
    for s in samples:
        per_collection[s.collection or "-"]["objects"].add(s.object_id)
        per_collection[s.collection or "-"]["images"] += 1
    return {
        "objects": len(counts),
        "images": len(samples),
        "collections": {c: {"objects": len(v["objects"]), "images": v["images"]} for c, v in sorted(per_collection.items())},
        "splits": dict(collections.Counter(s.split or "-" for s in samples)),
        "photos_per_object": dict(sorted(collections.Counter(counts.values()).items())),
    }


def format_summary(summary: dict) -> str:
    lines = [f"{summary['objects']} objects, {summary['images']} images"]
    for name, c in summary["collections"].items():
        lines.append(f"  collection {name:<16} {c['objects']:>5} objects {c['images']:>7} images")
    if set(summary["splits"]) != {"-"}:
        lines.append("  splits: " + ", ".join(f"{k}={v}" for k, v in sorted(summary["splits"].items())))
    hist = summary["photos_per_object"]
    peak = max(hist.values())
    lines.append("  photos per object:")
    for n, objects in hist.items():
        lines.append(f"    {n:>4} | {'#' * max(1, round(30 * objects / peak))} {objects}")
    return "\n".join(lines)
