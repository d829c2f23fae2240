"""The rows of a benchmark: trained bundles (torch), their exports, ensembles, untrained timm models.

A `ModelSpec` says what to load and what is known without running it (size, params, MACs);
`open_spec` loads it as an `artefact.runtimes.Runner` for the chosen thread count.
"""
from __future__ import annotations

import json
import platform
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from artefact.bundle import WEIGHTS_FILE, Bundle, bundle_fingerprint, file_sha256, load_bundle
from artefact.contract import Preprocess
from artefact.errors import ArtefactError
from artefact.model import ArtefactNet, create_model, default_preprocess
from artefact.runtimes import Runner, TorchRunner, open_runner

EXPORT_SUFFIXES = (".tflite", ".onnx", ".mlpackage")
RUNTIME_OF_SUFFIX = {".tflite": "tflite", ".onnx": "onnxruntime", ".mlpackage": "coreml"}


@dataclass
class ModelSpec:
    """One model as benchmarked: what it is, where it comes from, what it costs to store."""

    name: str
    kind: str  # 'bundle' | 'export' | 'timm' | 'ensemble'
    runtime: str  # 'torch' | 'onnxruntime' | 'tflite' | 'coreml'
    precision: str  # 'fp32' | 'fp16' | 'int8'
    preprocess: Preprocess
    path: Path | None = None
    source: str | None = None  # name of the float bundle row an export was made from
    trained: bool = True
    size_bytes: int = 0
    params: int | None = None
    macs: int | None = None
    labels_hash: str | None = None
    members: list["ModelSpec"] = field(default_factory=list)
    backbone: str | None = None
    num_classes: int | None = None
    note: str = ""

    def to_dict(self) -> dict:
        return {
            "name": self.name, "kind": self.kind, "runtime": self.runtime, "precision": self.precision,
            "path": str(self.path) if self.path else None, "source": self.source, "trained": self.trained,
            "input_size": self.preprocess.input_size, "size_mb": self.size_bytes / 1e6,
            "params": self.params, "macs": self.macs, "members": [m.name for m in self.members], "note": self.note,
        }


def count_params_and_macs(model: ArtefactNet, input_size: int) -> tuple[int, int]:
    """Parameters, and multiply-accumulates of one forward pass at batch 1 (torch's FLOP counter / 2).

    Counted on a copy on the meta device: shapes only, no arithmetic (b6 at 528 px costs nothing).
    """
    import copy

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    params = sum(p.numel() for p in model.parameters())
    shadow = copy.deepcopy(model).to("meta").eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        shadow(torch.zeros(1, 3, input_size, input_size, device="meta"))
    return params, counter.get_total_flops() // 2


def bundle_spec(bundle: Bundle) -> ModelSpec:
    """A trained bundle, run by PyTorch in float32."""
    params, macs = count_params_and_macs(bundle.model, bundle.preprocess.input_size)
    return ModelSpec(
        name=bundle.name, kind="bundle", runtime="torch", precision="fp32", preprocess=bundle.preprocess,
        path=bundle.path, size_bytes=(bundle.path / WEIGHTS_FILE).stat().st_size, params=params, macs=macs,
        labels_hash=bundle.label_hash, backbone=bundle.model.backbone_name, num_classes=len(bundle.labels),
    )


def parse_timm(text: str) -> tuple[str, int | None]:
    """'tf_efficientnet_b3@300' -> ('tf_efficientnet_b3', 300); the size is optional."""
    match = re.fullmatch(r"([A-Za-z0-9_.\-]+)(?:@(\d+))?", text.strip())
    if not match:
        raise ArtefactError(f"--timm {text!r}: expected NAME or NAME@INPUT_SIZE, e.g. tf_efficientnet_b6@528")
    return match.group(1), int(match.group(2)) if match.group(2) else None


def timm_spec(text: str, num_classes: int) -> ModelSpec:
    """An untrained timm backbone + paper head: latency, size and cost only (no accuracy)."""
    backbone, size = parse_timm(text)
    model = create_model(backbone, num_classes, pretrained=False)
    preprocess = default_preprocess(backbone, size)
    params, macs = count_params_and_macs(model, preprocess.input_size)
    return ModelSpec(
        name=f"{backbone}@{preprocess.input_size}", kind="timm", runtime="torch", precision="fp32",
        preprocess=preprocess, trained=False, size_bytes=params * 4, params=params, macs=macs,
        backbone=backbone, num_classes=num_classes, note="untrained (random weights): latency only; size = fp32 weights",
    )


def ensemble_spec(members: Sequence[ModelSpec]) -> ModelSpec:
    """Mean probability of trained bundles (all must share labels); cost is the sum of its members."""
    hashes = {m.labels_hash for m in members}
    if len(hashes) != 1:
        raise ArtefactError("bundles for an ensemble must share the same labels: " + ", ".join(m.name for m in members))
    return ModelSpec(
        name="ensemble(" + "+".join(m.name for m in members) + ")", kind="ensemble", runtime="torch", precision="fp32",
        preprocess=members[0].preprocess, size_bytes=sum(m.size_bytes for m in members),
        params=sum(m.params or 0 for m in members), macs=sum(m.macs or 0 for m in members),
        labels_hash=members[0].labels_hash, members=list(members), note="members run one after the other",
    )


def _precision_from_name(name: str) -> str:
    lowered = name.lower()
    if "int8" in lowered or "uint8" in lowered or "quant" in lowered:
        return "int8"
    if "fp16" in lowered or "float16" in lowered:
        return "fp16"
    return "fp32"


def _precision_of(path: Path) -> str:
    """Precision of an export its manifest does not describe: integer TFLite input means int8, else the name says."""
    if path.suffix.lower() == ".tflite":
        from ai_edge_litert.interpreter import Interpreter

        try:
            dtype = np.dtype(Interpreter(model_path=str(path)).get_input_details()[0]["dtype"])
        except (ValueError, RuntimeError) as err:
            raise ArtefactError(f"{path}: cannot read TFLite model ({str(err).splitlines()[0] if str(err) else type(err).__name__})") from None
        if dtype.kind in "iu":
            return "int8"
    return _precision_from_name(path.name)


def _export_manifests(path: Path) -> list[tuple[Path, dict]]:
    """Export manifests (JSON) beside an exported file or one folder up (android/model.tflite)."""
    found = []
    for folder in (path.parent, path.parent.parent):
        for manifest in sorted(folder.glob("*.json")):
            try:
                data = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                continue
            if isinstance(data, dict) and isinstance(data.get("files"), dict):
                found.append((folder, data))
    return found


def _describe_export(path: Path) -> dict:
    """What artefact-export's manifest says about `path`: its entry plus the manifest's source and contract."""
    for folder, manifest in _export_manifests(path):
        for name, entry in manifest["files"].items():
            listed = Path(str(entry.get("path", folder / name)))
            if listed.resolve() == path.resolve() or (folder == path.parent and name == path.name):
                source = manifest.get("source_bundle") or {}
                return {**entry, "preprocess": manifest.get("preprocess"), "label_hash": manifest.get("label_hash"),
                        "bundle_fingerprint": source.get("sha256"), "bundle_path": source.get("path")}
    return {}


def export_specs(folders: Sequence[Path], files: Sequence[Path], bundles: Sequence[ModelSpec]) -> tuple[list[ModelSpec], list[str]]:
    """Every .tflite/.onnx/.mlpackage in `folders` (recursively) and `files`, tied to its source bundle.

    Returns (specs, skipped: one line per model that cannot run here). The source bundle is the
    one whose fingerprint the export manifest records; without a manifest, the only bundle
    given. Identical files (android/model.tflite is a copy of the int8 export) run once.
    """
    candidates: list[Path] = list(files)
    for folder in folders:
        if not folder.is_dir():
            raise ArtefactError(f"{folder}: no such exports folder")
        found = [p for p in folder.rglob("*") if p.suffix.lower() in EXPORT_SUFFIXES
                 and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
        candidates += sorted(found, key=lambda p: (len(p.parts), str(p)))  # model_int8.tflite before android/model.tflite
    fingerprints = {bundle_fingerprint(b.path): b for b in bundles if b.path}
    specs, skipped, seen = [], [], set()
    for path in candidates:
        if not path.exists():
            raise ArtefactError(f"{path}: no such exported model")
        if path.suffix.lower() not in EXPORT_SUFFIXES:
            raise ArtefactError(f"{path}: not an exported model (expected {', '.join(EXPORT_SUFFIXES)})")
        digest = file_sha256(path) if path.is_file() else str(path.resolve())
        if digest in seen:
            continue
        seen.add(digest)
        runtime = RUNTIME_OF_SUFFIX[path.suffix.lower()]
        if runtime == "coreml" and platform.system() != "Darwin":
            skipped.append(f"{path}: Core ML prediction needs macOS (this is {platform.system()}); not benchmarked")
            continue
        specs.append(_export_spec(path, runtime, fingerprints, bundles))
    names = [s.name for s in specs]
    for spec in specs:
        if names.count(spec.name) > 1:  # same file name in two export folders
            spec.name = f"{spec.source or spec.path.parent.parent.name}/{spec.path.parent.name}/{spec.path.name}"
    return specs, skipped


def _export_spec(path: Path, runtime: str, fingerprints: dict, bundles: Sequence[ModelSpec]) -> ModelSpec:
    info = _describe_export(path)
    if info.get("bundle_fingerprint"):
        source = fingerprints.get(info["bundle_fingerprint"])
    else:
        source = bundles[0] if len(bundles) == 1 else None
    if bundles and info.get("label_hash") and info["label_hash"] != bundles[0].labels_hash:
        raise ArtefactError(f"{path}: exported for a different set of objects than bundle {bundles[0].path}")
    preprocess = Preprocess.from_dict(info["preprocess"]) if isinstance(info.get("preprocess"), dict) else (
        source.preprocess if source else None)
    if preprocess is None:
        raise ArtefactError(f"{path}: cannot tell its preprocessing (no export manifest and no --bundle it came from)")
    precision = str(info.get("precision") or _precision_of(path)).lower()
    note = ""
    if source is None:
        note = (f"exported from bundle {info.get('bundle_path')} which is not among --bundle: no float reference"
                if info.get("bundle_fingerprint") else "source bundle unknown: no float reference")
    return ModelSpec(
        name=f"{source.name if source else path.parent.name}/{path.name}", kind="export", runtime=runtime,
        precision=precision, preprocess=preprocess, path=path, source=source.name if source else None,
        size_bytes=_size(path), params=source.params if source else None, macs=source.macs if source else None,
        labels_hash=source.labels_hash if source else None, note=note,
    )


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class InMemoryTorchRunner(TorchRunner):
    """A torch model built in memory (untrained timm rows): same inference path as bundles."""

    def __init__(self, model: ArtefactNet, name: str, preprocess: Preprocess, threads: int | None = None):
        import torch

        Runner.__init__(self, name, preprocess, threads)
        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self.model = model.eval()


class EnsembleRunner(Runner):
    """Members run one after the other on their own input size; log of the mean probability."""

    runtime = "torch"

    def __init__(self, name: str, members: Sequence[Runner]):
        Runner.__init__(self, name, members[0].preprocess, members[0].threads)
        self.members = list(members)

    def logprobs_by_size(self, pixels_of) -> np.ndarray:
        """`pixels_of(runner)` gives each member its pixels; returns the ensemble's log-probabilities."""
        probs = sum(np.exp(m.logprobs(pixels_of(m))) for m in self.members)
        return np.log(np.maximum(probs / len(self.members), 1e-30)).astype(np.float32)


def open_spec(spec: ModelSpec, threads: int) -> Runner:
    """Load a row's model in its runtime with `threads` CPU threads."""
    if spec.kind == "ensemble":
        return EnsembleRunner(spec.name, [open_spec(m, threads) for m in spec.members])
    if spec.kind == "timm":
        model = create_model(spec.backbone, spec.num_classes or 10, pretrained=False)
        return InMemoryTorchRunner(model, spec.name, spec.preprocess, threads)
    return open_runner(spec.path, spec.preprocess, threads)


def load_bundle_specs(paths: Sequence[str | Path]) -> tuple[list[ModelSpec], list[Bundle]]:
    bundles = [load_bundle(p) for p in paths]
    names = [b.name for b in bundles]
    if len(set(names)) != len(names):
        bundles = [replace(b, meta={**b.meta, "name": str(b.path)}) for b in bundles]
    return [bundle_spec(b) for b in bundles], bundles
