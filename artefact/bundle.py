"""Model bundles: the one artefact that travels from training to export, benchmark and app.

A bundle is a folder:
    model.safetensors   weights (no pickle: safe to load from anyone)
    bundle.json         format version, architecture, ordered labels, preprocessing contract,
                        training config, metrics
    manifest.csv        the photos and splits it was trained on (paths relative to the bundle)
`load_bundle(path)` is the only way in.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from safetensors.torch import load_file, save_file

from . import atomic
from .contract import Preprocess
from .errors import ArtefactError
from .model import ArtefactNet, create_model

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "bundle.json"
MANIFEST_FILE = "manifest.csv"  # the data and splits the bundle was trained on
LATEST_POINTER = Path("runs") / "LATEST"


@dataclass(frozen=True)
class Label:
    object_id: str
    collection: str = ""


def label_hash(labels: Sequence[Label]) -> str:
    """sha256 of the ordered labels: two models agree on outputs only if their hashes match."""
    text = "\n".join(f"{l.object_id}\t{l.collection}" for l in labels)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class Bundle:
    """A trained model with everything needed to use it correctly."""

    path: Path
    model: ArtefactNet
    labels: list[Label]
    preprocess: Preprocess
    meta: dict = field(default_factory=dict)

    @property
    def label_ids(self) -> list[str]:
        return [l.object_id for l in self.labels]

    @property
    def label_hash(self) -> str:
        return label_hash(self.labels)

    @property
    def name(self) -> str:
        return self.meta.get("name") or self.path.name

    @property
    def manifest(self) -> Path | None:
        """The manifest (with splits) the bundle was trained on, when it was saved with one."""
        path = self.path / MANIFEST_FILE
        return path if path.is_file() else None

    def check_labels(self, object_ids: Sequence[str], what: str = "data") -> None:
        """Raise if objects in `object_ids` are unknown to this bundle."""
        unknown = sorted(set(object_ids) - set(self.label_ids))
        if unknown:
            shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise ArtefactError(
                f"bundle {self.path} does not know {len(unknown)} object(s) in the {what}: {shown} "
                f"(labels do not match; was it trained on this catalogue?)"
            )


def save_bundle(
    path: str | os.PathLike,
    model: ArtefactNet,
    labels: Sequence[Label],
    preprocess: Preprocess,
    train_config: dict | None = None,
    metrics: dict | None = None,
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """Write a bundle folder atomically (an existing one at `path` is replaced only on success)."""
    if model.num_classes != len(labels):
        raise ArtefactError(f"model has {model.num_classes} outputs but {len(labels)} labels were given")
    meta = {
        "format_version": FORMAT_VERSION,
        "name": Path(path).name,
        "architecture": model.config(),
        "labels": [{"object_id": l.object_id, "collection": l.collection} for l in labels],
        "label_hash": label_hash(labels),
        "preprocess": preprocess.to_dict(),
        "train_config": train_config or {},
        "metrics": metrics or {},
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic.atomic_dir(path) as tmp:
        save_file(state, str(tmp / WEIGHTS_FILE))
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        for name, data in (extra_files or {}).items():
            (tmp / name).write_bytes(data)
    return Path(path)


def read_meta(path: str | os.PathLike) -> dict:
    """bundle.json of a bundle folder, validated."""
    path = Path(path)
    meta_path = path / META_FILE
    if not path.is_dir():
        raise ArtefactError(f"{path}: no such bundle folder")
    if not meta_path.is_file() or not (path / WEIGHTS_FILE).is_file():
        raise ArtefactError(f"{path}: not a model bundle (needs {META_FILE} and {WEIGHTS_FILE})")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ArtefactError(f"{meta_path}: corrupt bundle metadata ({err})") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise ArtefactError(f"{path}: bundle format {meta.get('format_version')!r} is not supported (need {FORMAT_VERSION})")
    for key in ("architecture", "labels", "preprocess"):
        if key not in meta:
            raise ArtefactError(f"{meta_path}: corrupt bundle metadata (missing {key!r})")
    return meta


def load_bundle(path: str | os.PathLike | None = None, device: str = "cpu") -> Bundle:
    """Load a bundle (default: the latest trained one) in eval mode."""
    path = resolve_bundle_path(path)
    meta = read_meta(path)
    labels = [Label(l["object_id"], l.get("collection", "")) for l in meta["labels"]]
    if meta.get("label_hash") and meta["label_hash"] != label_hash(labels):
        raise ArtefactError(f"{path}: label list does not match its recorded hash (edited by hand?)")
    arch = dict(meta["architecture"])
    model = create_model(**arch, pretrained=False)
    try:
        state = load_file(str(path / WEIGHTS_FILE), device=device)
        model.load_state_dict(state, strict=True)
    except Exception as err:  # noqa: BLE001 - SafetensorError, size mismatch, I/O: one user-facing error
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ArtefactError(f"{path / WEIGHTS_FILE}: corrupt or mismatched weights ({first_line})") from None
    model.to(device).eval()
    return Bundle(Path(path), model, labels, Preprocess.from_dict(meta["preprocess"]), meta)


def resolve_bundle_path(path: str | os.PathLike | None) -> Path:
    """`path`, or the latest trained bundle recorded in runs/LATEST."""
    if path is not None:
        return Path(path)
    if LATEST_POINTER.is_file():
        latest = Path(LATEST_POINTER.read_text(encoding="utf-8").strip())
        if (latest / META_FILE).is_file():
            return latest
    raise ArtefactError("no bundle given and no trained bundle found (train one with artefact-train, or pass --bundle DIR)")


def mark_latest(path: str | os.PathLike) -> None:
    """Record `path` as the default bundle for later commands run from this folder."""
    atomic.write_text(LATEST_POINTER, str(Path(path)) + "\n")


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def bundle_fingerprint(path: str | os.PathLike) -> str:
    """sha256 of weights + metadata: identifies the exact bundle an export came from."""
    path = Path(path)
    return hashlib.sha256((file_sha256(path / WEIGHTS_FILE) + file_sha256(path / META_FILE)).encode()).hexdigest()
