"""Calibration images for int8 quantisation: real photos through the bundle's own preprocessing."""
from __future__ import annotations

import collections
import itertools
import logging
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from artefact.bundle import Bundle
from artefact.data import Sample, load_samples, natural_key, read_manifest
from artefact.errors import ArtefactError
from artefact.images import ImageDecodeError, load_image

log = logging.getLogger("artefact")
DEFAULT_NUM_CALIBRATION = 300


def calibration_samples(bundle: Bundle, source: str | Path | None = None, count: int = DEFAULT_NUM_CALIBRATION) -> list[Sample]:
    """Up to `count` photos, round-robin over objects so every object is represented.

    Default source: the train split of the bundle's own manifest (the catalogue photos); a given
    manifest with splits also contributes only its train photos.
    """
    if count < 1:
        raise ArtefactError(f"--num-calibration must be at least 1 (got {count})")
    if source is None:
        if bundle.manifest is None:
            raise ArtefactError(f"{bundle.path}: bundle has no manifest.csv; pass --calibration MANIFEST|DIR")
        samples = [s for s in read_manifest(bundle.manifest) if s.split == "train"]
        where = bundle.manifest
    else:
        samples = load_samples(source)
        if any(s.split == "train" for s in samples):  # a manifest with splits: never calibrate on val/test
            samples = [s for s in samples if s.split == "train"]
        where = source
    known = set(bundle.label_ids)
    samples = [s for s in samples if s.object_id in known]
    if not samples:
        raise ArtefactError(f"{where}: no calibration photos of objects this bundle knows")
    by_object: dict[str, list[Sample]] = collections.defaultdict(list)
    for s in sorted(samples, key=lambda s: natural_key(s.path)):
        by_object[s.object_id].append(s)
    rounds = itertools.zip_longest(*(by_object[o] for o in sorted(by_object, key=natural_key)))
    chosen = [s for s in itertools.chain.from_iterable(rounds) if s is not None][:count]
    covered = len({s.object_id for s in chosen})
    if covered < len(known):
        log.warning("calibration covers %d of %d objects (raise --num-calibration or add photos)", covered, len(known))
    return chosen


def load_pixels(samples: list[Sample], bundle: Bundle, desc: str = "loading photos", progress: bool = True,
                strict: bool = False) -> tuple[np.ndarray, list[Sample]]:
    """uint8 (N, S, S, 3) contract pixels of readable photos and the samples they came from."""
    pixels, kept = [], []
    for s in tqdm(samples, desc=desc, unit="img", disable=not progress, leave=False):
        try:
            pixels.append(bundle.preprocess.to_pixels(load_image(s.path)))
            kept.append(s)
        except ImageDecodeError as err:
            if strict:
                raise ArtefactError(str(err)) from None
            log.warning("skipping unreadable photo: %s", err)
    size = bundle.preprocess.input_size
    return (np.stack(pixels) if pixels else np.zeros((0, size, size, 3), np.uint8)), kept


def calibration_pixels(bundle: Bundle, source: str | Path | None, count: int, progress: bool = True) -> np.ndarray:
    """Calibration pixels; raises when none of the photos can be read."""
    samples = calibration_samples(bundle, source, count)
    pixels, kept = load_pixels(samples, bundle, desc="calibration photos", progress=progress)
    if not kept:
        raise ArtefactError(f"{source or bundle.manifest}: calibration set is empty (no readable photos)")
    log.info("calibration: %d photos of %d objects", len(kept), len({s.object_id for s in kept}))
    return pixels
