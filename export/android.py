"""The field-app asset folder (android_demo/ASSETS.md): int8 model, labels, config, thumbnails.

The decision threshold is chosen on the val split with the int8 model the app runs:
`min_probability` = the smallest top-1 probability t such that, among val photos whose top-1
probability is >= t, the top-1 object is right on >= 95% (`target_precision`). When no t reaches
that, the t with the highest precision is used and `target_met` is false.
"""
from __future__ import annotations

import collections
import logging
from pathlib import Path

import numpy as np

from artefact import atomic
from artefact.bundle import Bundle, file_sha256
from artefact.data import natural_key, read_manifest
from artefact.errors import ArtefactError
from artefact.images import ImageDecodeError, load_image

from .metadata import labels_text

log = logging.getLogger("artefact")
CONFIG_FORMAT = 1
THUMB_SIZE = 96
TOP_K = 5
TARGET_PRECISION = 0.95
# What may be in an asset folder that is replaced (the spec's files plus this tool's reports).
ASSET_NAMES = {"model.tflite", "labels.txt", "artefact_config.json", "thumbs", "export_manifest.json", "parity.json", "parity.md"}


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
                image = load_image(sample.path)
            except ImageDecodeError:
                continue
            square = image.crop(bundle.preprocess.crop_box(*image.size)).resize((THUMB_SIZE, THUMB_SIZE))
            thumbs[index] = _jpeg(square)
            break
        else:
            raise ArtefactError(f"{bundle.manifest}: no readable photo of {object_id!r} for its thumbnail")
    return thumbs


def _jpeg(image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


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
                 extra_files: dict[str, bytes] | None = None) -> Path:
    """Write the asset folder atomically (replacing an older one at `out`)."""
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in ASSET_NAMES and not p.name.startswith("."))
        if foreign:
            raise ArtefactError(f"{out}: not an app asset folder (holds {', '.join(foreign[:3])}); "
                                f"pass an empty folder or an earlier asset folder as --out")
    thumbs = thumbnails(bundle)
    config = app_config(bundle, int8_model, input_quantization, threshold)
    with atomic.atomic_dir(out) as tmp:
        (tmp / "model.tflite").write_bytes(int8_model.read_bytes())
        (tmp / "labels.txt").write_text(labels_text(bundle), encoding="utf-8")
        atomic.write_json(tmp / "artefact_config.json", config)
        (tmp / "thumbs").mkdir()
        for index, data in thumbs.items():
            (tmp / "thumbs" / f"{index}.jpg").write_bytes(data)
        for name, data in (extra_files or {}).items():
            (tmp / name).write_bytes(data)
    log.info("android assets: %s (threshold %.4f, %s)", out, threshold["min_probability"], threshold["rule"])
    return out
