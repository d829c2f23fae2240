"""Accuracy parity of every export against the PyTorch bundle, and the `--check` gate.

Each export runs through `artefact.runtimes` on the bundle's val and test photos (the same uint8
pixels for every runtime). Reported per split and pooled ('all'): top-1/top-5 of PyTorch and of the
export, top-1 agreement, max |Δ probability|. The gate uses the pooled numbers.
"""
from __future__ import annotations

import hashlib
import logging
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from artefact.bundle import Bundle, file_sha256
from artefact.data import read_manifest
from artefact.errors import ArtefactError
from artefact.infer import topk_accuracy
from artefact.runtimes import open_runner

from .calibration import load_pixels

log = logging.getLogger("artefact")
SPLITS = ("val", "test")
BATCH = 64


@dataclass(frozen=True)
class Gate:
    """--check thresholds: float exports must agree with PyTorch; int8 may lose a little top-1."""

    min_agreement: float = 0.995  # fp32/fp16: fraction of photos with the same top-1 as PyTorch
    max_int8_drop: float = 0.010  # int8: allowed top-1 loss vs PyTorch (fraction, 0.01 = 1 point)


def parity_photos(bundle: Bundle, max_photos: int | None = None, progress: bool = True) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{split: (uint8 pixels, target indices)} for the val and test splits of the bundle's manifest."""
    if bundle.manifest is None:
        raise ArtefactError(f"{bundle.path}: bundle has no manifest.csv, so there are no val/test photos for parity")
    index = {object_id: i for i, object_id in enumerate(bundle.label_ids)}
    samples = [s for s in read_manifest(bundle.manifest) if s.split in SPLITS and s.object_id in index]
    if max_photos:
        samples = samples[:: max(1, len(samples) // max_photos)][:max_photos]
    photos = {}
    for split in SPLITS:
        chosen = [s for s in samples if s.split == split]
        pixels, kept = load_pixels(chosen, bundle, desc=f"{split} photos", progress=progress)
        if kept:
            photos[split] = (pixels, np.array([index[s.object_id] for s in kept]))
    if not photos:
        raise ArtefactError(f"{bundle.manifest}: no readable val/test photos for the parity check")
    return photos


def run_logprobs(path: Path, bundle: Bundle, pixels: np.ndarray, threads: int | None, desc: str, progress: bool) -> np.ndarray:
    runner = open_runner(path, bundle.preprocess, threads=threads)
    chunks = [runner.logprobs(pixels[i : i + BATCH])
              for i in tqdm(range(0, len(pixels), BATCH), desc=desc, unit="batch", disable=not progress, leave=False)]
    return np.concatenate(chunks)


TIE_TOLERANCE = 0.005  # PyTorch probabilities closer than this are a tie PyTorch itself cannot decide


def decided_agreement(reference: np.ndarray, logprobs: np.ndarray, tolerance: float = TIE_TOLERANCE) -> float:
    """Share of photos where the export picks PyTorch's top-1, or an object PyTorch scores within `tolerance`.

    A float export that flips a near-tie (e.g. 0.301 vs 0.300) has not changed the model's decision.
    """
    ref_probs = np.exp(reference)
    picked = logprobs.argmax(1)
    gap = ref_probs.max(1) - ref_probs[np.arange(len(picked)), picked]
    return float(np.mean(gap <= tolerance))


def compare(reference: np.ndarray, logprobs: np.ndarray, targets: np.ndarray) -> dict:
    ref_acc, acc = topk_accuracy(reference, targets, (1, 5)), topk_accuracy(logprobs, targets, (1, 5))
    return {
        "photos": int(len(targets)),
        "torch_top1": ref_acc["top1"], "torch_top5": ref_acc["top5"],
        "top1": acc["top1"], "top5": acc["top5"],
        "top1_agreement": float(np.mean(reference.argmax(1) == logprobs.argmax(1))),
        "top1_agreement_decided": decided_agreement(reference, logprobs),
        "max_abs_dprob": float(np.max(np.abs(np.exp(reference) - np.exp(logprobs)))),
    }


def parity_report(bundle: Bundle, exports: dict[str, dict], threads: int | None = None, max_photos: int | None = None,
                  progress: bool = True) -> dict:
    """{'photos': {...}, 'exports': {name: {...}}} for `exports` = {name: {'path', 'format', 'precision'}}."""
    runnable = [n for n, info in exports.items() if info["format"] != "coreml" or platform.system() == "Darwin"]
    photos = parity_photos(bundle, max_photos, progress) if runnable else {}
    reference = {split: run_logprobs(bundle.path, bundle, px, threads, f"torch {split}", progress) for split, (px, _) in photos.items()}
    report = {"photos": {split: int(len(y)) for split, (_, y) in photos.items()}, "exports": {}}
    for name, info in exports.items():
        path = Path(info["path"])
        entry = {"format": info["format"], "precision": info["precision"], "size_bytes": _size(path),
                 "sha256": path_sha256(path)}
        if name not in runnable:
            entry["skipped"] = "Core ML prediction needs macOS; converted and spec-validated only"
            report["exports"][name] = entry
            continue
        outputs = {split: run_logprobs(path, bundle, px, threads, f"{name} {split}", progress) for split, (px, _) in photos.items()}
        for split, (_, targets) in photos.items():
            entry[split] = compare(reference[split], outputs[split], targets)
        targets = np.concatenate([y for _, y in photos.values()])
        entry["all"] = compare(np.concatenate(list(reference.values())), np.concatenate(list(outputs.values())), targets)
        report["exports"][name] = entry
        log.info("parity %-22s top-1 %.4f (torch %.4f)  agreement %.4f  max|dp| %.4f", name, entry["all"]["top1"],
                 entry["all"]["torch_top1"], entry["all"]["top1_agreement"], entry["all"]["max_abs_dprob"])
    return report


def check(report: dict, gate: Gate = Gate()) -> list[str]:
    """Failures of the gate (empty list: pass)."""
    failures = []
    for name, entry in report["exports"].items():
        if "all" not in entry:
            continue
        stats = entry["all"]
        if entry["precision"] == "int8":
            drop = stats["torch_top1"] - stats["top1"]
            if drop > gate.max_int8_drop + 1e-12:
                failures.append(f"{name}: int8 top-1 {stats['top1']:.4f} is {100 * drop:.2f} points below PyTorch "
                                f"{stats['torch_top1']:.4f} (allowed {100 * gate.max_int8_drop:.2f})")
        elif stats.get("top1_agreement_decided", stats["top1_agreement"]) < gate.min_agreement:
            failures.append(f"{name}: top-1 agrees with PyTorch on {100 * stats['top1_agreement']:.2f}% of photos, "
                            f"{100 * stats.get('top1_agreement_decided', stats['top1_agreement']):.2f}% outside "
                            f"near-ties (need {100 * gate.min_agreement:.2f}%)")
    return failures


def markdown(report: dict, failures: list[str] | None = None) -> str:
    """The report as a Markdown table (pooled val+test, then per split)."""
    photos = ", ".join(f"{split} {n}" for split, n in report["photos"].items())
    lines = [f"# Export parity vs PyTorch ({photos} photos)", "",
             "| export | format | precision | size (MB) | split | top-1 | torch top-1 | top-5 | torch top-5 | top-1 agreement | max abs dprob |",
             "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for name, e in report["exports"].items():
        size = f"{e['size_bytes'] / 1e6:.2f}"
        if "skipped" in e:
            lines.append(f"| {name} | {e['format']} | {e['precision']} | {size} | - | {e['skipped']} | | | | | |")
            continue
        for split in ("all", *SPLITS):
            if split in e:
                s = e[split]
                lines.append(f"| {name} | {e['format']} | {e['precision']} | {size} | {split} | {s['top1']:.4f} | "
                             f"{s['torch_top1']:.4f} | {s['top5']:.4f} | {s['torch_top5']:.4f} | {s['top1_agreement']:.4f} | "
                             f"{s['max_abs_dprob']:.4f} |")
    lines += ["", "sha256:", ""] + [f"- `{name}`: `{e['sha256']}`" for name, e in report["exports"].items()]
    if failures is not None:
        lines += ["", "## Gate", ""] + ([f"- FAIL {f}" for f in failures] or ["- pass"])
    return "\n".join(lines) + "\n"


def path_sha256(path: Path) -> str:
    """sha256 of a file, or of a folder's files (relative names and contents, in sorted order)."""
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(item.relative_to(path)).encode() + b"\0" + file_sha256(item).encode())
    return digest.hexdigest()


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size
