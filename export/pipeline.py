"""The export run: plan -> convert in a scratch folder -> install atomically -> parity -> manifest.

Nothing lands in the output folder until its conversion has succeeded; every file is moved in
atomically, and the manifest (written last) lists only what was produced.
"""
from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path

from artefact import atomic
from artefact.bundle import Bundle, bundle_fingerprint, file_sha256, load_bundle, resolve_bundle_path
from artefact.errors import ArtefactError

from . import android, parity
from .calibration import DEFAULT_NUM_CALIBRATION, calibration_pixels
from .parity import path_sha256

log = logging.getLogger("artefact")
TARGETS = ("onnx", "tflite", "coreml", "android", "all")
MANIFEST = "export_manifest.json"
PARITY_JSON, PARITY_MD = "parity.json", "parity.md"
TOOLS = ("torch", "timm", "onnx", "onnxruntime", "onnxsim", "onnx2tf", "tensorflow", "ai-edge-litert", "coremltools", "tflite-support")


@dataclass
class ExportOptions:
    bundle: str | None = None
    target: str = "tflite"
    precision: str | None = None  # None (target's default set), 'int8' or 'fp16'
    calibration: str | None = None
    num_calibration: int = DEFAULT_NUM_CALIBRATION
    out: str | None = None
    check: bool = False
    gate: parity.Gate = field(default_factory=parity.Gate)
    run_parity: bool = True
    max_parity_photos: int | None = None
    threads: int | None = None
    progress: bool = True
    gallery: bool = True  # ship the embedding gallery (catalogue + enrolled objects) in the android assets


def plan(target: str, precision: str | None) -> list[tuple[str, str]]:
    """(format, precision) pairs to produce; format in onnx, tflite, coreml, android."""
    if target not in TARGETS:
        raise ArtefactError(f"unknown target {target!r} (choose from {', '.join(TARGETS)})")
    if precision not in (None, "int8", "fp16"):
        raise ArtefactError(f"unknown precision {precision!r}")
    if target == "onnx" and precision:
        raise ArtefactError("--int8/--fp16 do not apply to --target onnx (ONNX is exported in fp32)")
    if target == "android" and precision == "fp16":
        raise ArtefactError("--target android is always int8 (the field app runs the full-integer model)")
    tflite = [("tflite", precision)] if precision else [("tflite", "fp32"), ("tflite", "fp16"), ("tflite", "int8")]
    coreml = [("coreml", precision or "fp16")]
    if target == "onnx":
        return [("onnx", "fp32")]
    if target == "tflite":
        return tflite
    if target == "coreml":
        return coreml
    if target == "android":
        return [("tflite", "int8"), ("android", "int8")]
    everything = [("onnx", "fp32")] + tflite + (coreml if precision else [("coreml", "fp16"), ("coreml", "int8")])
    return everything + ([("android", "int8")] if precision in (None, "int8") else [])


def file_name(fmt: str, precision: str) -> str:
    return {"onnx": "model.onnx", "tflite": f"model_{precision}.tflite", "coreml": f"model_{precision}.mlpackage"}[fmt]


def check_writable(out: Path) -> None:
    """Fail early, with the path, when `out` cannot be created or written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as err:
        raise ArtefactError(f"{out}: output folder is not writable ({err.strerror or err})") from None


class _Timer:
    """Logs each step as it starts and ends, and records its wall time."""

    def __init__(self):
        self.times: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, name: str):
        log.info("%s ...", name)
        start = time.perf_counter()
        yield
        self.times[name] = round(time.perf_counter() - start, 1)
        log.info("%s done in %.1f s", name, self.times[name])


def run_export(options: ExportOptions) -> dict:
    """Run an export; returns the manifest (with 'parity' and 'gate_failures' when parity ran)."""
    started = time.perf_counter()
    steps = plan(options.target, options.precision)
    bundle = load_bundle(resolve_bundle_path(options.bundle))
    default_out = Path("exports") / bundle.name / ("android" if options.target == "android" else "")
    out = Path(options.out) if options.out else default_out
    android_out = out if options.target == "android" else out / "android"
    check_writable(out)
    if options.num_calibration < 1:
        raise ArtefactError(f"--num-calibration must be at least 1 (got {options.num_calibration})")
    log.info("exporting %s -> %s: %s", bundle.path, out, ", ".join(f"{f} {p}" for f, p in steps))
    timer = _Timer()
    with tempfile.TemporaryDirectory(prefix="artefact-export-") as scratch:
        work = Path(scratch)
        produced = _convert(bundle, steps, work, options, timer)
        installed = _install(produced, out, options.target)
        if ("android", "int8") in steps:
            with timer.step("android assets"):
                installed["android"] = _android(bundle, produced["model_int8.tflite"], android_out, options)
            if options.target == "android":  # the assets' model is the int8 export: check it too
                installed["model.tflite"] = {**produced["model_int8.tflite"], "path": android_out / "model.tflite"}
    report, failures = None, []
    if options.run_parity or options.check:
        with timer.step("parity vs PyTorch"):
            exports = {name: info for name, info in installed.items() if info["format"] != "android"}
            report = parity.parity_report(bundle, exports, options.threads, options.max_parity_photos, options.progress)
            report = {"source_bundle": {"name": bundle.name, "sha256": bundle_fingerprint(bundle.path)},
                      "label_hash": bundle.label_hash, **report}
            failures = parity.check(report, options.gate)  # the gate judges this run's exports only
            report = _merge(out / PARITY_JSON, report, bundle, key="exports")
            report["gate"] = {"min_agreement": options.gate.min_agreement, "max_int8_drop": options.gate.max_int8_drop,
                              "failures": failures}
            atomic.write_json(out / PARITY_JSON, report)
            atomic.write_text(out / PARITY_MD, parity.markdown(report, failures))
    manifest = _manifest(bundle, installed, timer.times, time.perf_counter() - started - timer.times.get("parity vs PyTorch", 0.0))
    manifest = _merge(out / MANIFEST, manifest, bundle, key="files")
    atomic.write_json(out / MANIFEST, manifest)
    log.info("export manifest: %s", out / MANIFEST)
    return {**manifest, "parity": report, "gate_failures": failures, "out": str(out)}


def _convert(bundle: Bundle, steps: list[tuple[str, str]], work: Path, options: ExportOptions, timer: _Timer) -> dict[str, dict]:
    """Produce every planned model in `work`; returns {file name: info}."""
    from .coreml_export import convert_coreml, inspect_coreml
    from .metadata import embed_metadata
    from .onnx_export import export_onnx, onnx_ops
    from .tflite_export import add_embedding_output, float_classifier_tail, int8_islands, quantize_int8, run_onnx2tf, tflite_io, tflite_ops

    formats = {fmt for fmt, _ in steps}
    produced: dict[str, dict] = {}
    tflite_precisions = [p for fmt, p in steps if fmt == "tflite"]
    if "int8" in tflite_precisions:  # before the slow conversions: a bad calibration set fails fast
        with timer.step("loading calibration photos"):
            pixels = calibration_pixels(bundle, options.calibration, options.num_calibration, options.progress)
    if formats & {"onnx", "tflite"}:
        with timer.step("ONNX export (opset 17, onnxsim)"):
            onnx_path = export_onnx(bundle, work / "model.onnx")
        produced["model.onnx"] = {"path": onnx_path, "format": "onnx", "precision": "fp32", "ops": onnx_ops(onnx_path),
                                  "input": {"dtype": "float32", "layout": "NCHW", "normalised": True}}
    if tflite_precisions:
        with timer.step("onnx2tf (SavedModel, fp32, fp16; about a minute)"):
            converted = run_onnx2tf(onnx_path, work)
        for precision in tflite_precisions:
            name = file_name("tflite", precision)
            if precision == "int8":
                with timer.step("int8 calibration + quantisation"):
                    model = quantize_int8(converted["saved_model"], pixels, bundle.preprocess, options.progress)
                    last = bundle.model.head[-1]
                    model = float_classifier_tail(model, last.weight.detach().cpu().numpy(), last.bias.detach().cpu().numpy())
                    model = add_embedding_output(model)  # for the apps' gallery of (enrolled) objects
                calibration = {"photos": int(len(pixels)), "source": str(options.calibration or bundle.manifest)}
            else:
                model, calibration = converted[precision].read_bytes(), None
            path = work / name
            path.write_bytes(embed_metadata(model, bundle, precision))
            info = {"path": path, "format": "tflite", "precision": precision, "ops": tflite_ops(path), **tflite_io(path)}
            if precision == "int8":
                info["calibration"] = calibration
                info["int8_islands"] = int8_islands(path)
                if info["int8_islands"]:
                    raise ArtefactError(f"int8 graph has float islands or layout ops: {', '.join(info['int8_islands'])}")
            produced[name] = info
    if "onnx" not in formats:
        produced.pop("model.onnx", None)
    for precision in [p for fmt, p in steps if fmt == "coreml"]:
        name = file_name("coreml", precision)
        with timer.step(f"Core ML {precision}"):
            path = convert_coreml(bundle, work / name, precision, options.progress)
            spec = inspect_coreml(path)
        if spec["labels"] != bundle.label_ids or spec["input"]["kind"] != "imageType":
            raise ArtefactError(f"{name}: reloaded Core ML spec does not match the bundle (labels or image input)")
        produced[name] = {"path": path, "format": "coreml", "precision": precision, "ops": spec["ops"],
                          "input": {"name": spec["input"]["name"], "kind": "image", "width": spec["input"]["width"]},
                          "outputs": spec["outputs"]}
    return produced


def _install(produced: dict[str, dict], out: Path, target: str) -> dict[str, dict]:
    """Move finished models into `out` atomically (android-only runs keep the int8 model in the assets)."""
    installed = {}
    for name, info in produced.items():
        if target == "android":
            continue
        source, dest = Path(info["path"]), out / name
        if source.is_dir():
            with atomic.atomic_dir(dest) as tmp:
                shutil.copytree(source, tmp, dirs_exist_ok=True)
        else:
            with atomic.atomic_path(dest) as tmp:
                shutil.copyfile(source, tmp)
        installed[name] = {**info, "path": dest}
    return installed


def _android(bundle: Bundle, int8: dict, out: Path, options: ExportOptions) -> dict:
    from artefact.runtimes import open_runner

    photos = parity.parity_photos(bundle, progress=options.progress)
    if "val" not in photos:
        raise ArtefactError(f"{bundle.manifest}: no val photos to choose the decision threshold on")
    pixels, targets = photos["val"]
    runner = open_runner(int8["path"], bundle.preprocess, options.threads)
    logprobs, embeddings = runner.logprobs_and_embeddings(pixels)
    threshold = android.choose_threshold(logprobs, targets)
    scale, zero_point = bundle.preprocess.int8_input_quantization()  # exact values; the model holds float32 ones
    if abs(int8["input"]["scale"] - scale) > 1e-6 * scale or int8["input"]["zero_point"] != zero_point:
        raise ArtefactError(f"int8 model input quantisation {int8['input']} does not match the contract ({scale}, {zero_point})")
    quant = {"scale": scale, "zero_point": zero_point}
    gallery = android.build_app_gallery(bundle, runner, embeddings, options.progress) if options.gallery else None
    android.write_assets(out, bundle, Path(int8["path"]), quant, threshold, gallery=gallery)
    return {"path": out, "format": "android", "precision": "int8", "threshold": threshold,
            "gallery": None if gallery is None else {"objects": len(gallery.objects), "rows": int(len(gallery.values)),
                                                     "min_similarity": gallery.min_similarity},
            "files": sorted(p.name + ("/" if p.is_dir() else "") for p in out.iterdir()),
            "model_sha256": file_sha256(out / "model.tflite")}


def _manifest(bundle: Bundle, installed: dict[str, dict], times: dict[str, float], export_seconds: float) -> dict:
    files = {}
    for name, info in installed.items():
        path = Path(info["path"])
        entry = {k: v for k, v in info.items() if k != "path"}
        entry.update(path=str(path), size_bytes=parity._size(path), sha256=path_sha256(path))
        files[name] = entry
    return {
        "format_version": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source_bundle": {"path": str(bundle.path), "name": bundle.name, "sha256": bundle_fingerprint(bundle.path),
                          "architecture": bundle.meta.get("architecture")},
        "label_hash": bundle.label_hash,
        "num_classes": len(bundle.labels),
        "preprocess": bundle.preprocess.to_dict(),
        "int8_input_quantization": dict(zip(("scale", "zero_point"), bundle.preprocess.int8_input_quantization())),
        "output": {"type": "log_probabilities", "dtype": "float32"},
        "files": files,
        "timings_s": {**times, "export_total": round(export_seconds, 1)},
        "tools": {name: _version(name) for name in TOOLS},
    }


def _merge(path: Path, new: dict, bundle: Bundle, key: str) -> dict:
    """Keep entries of an earlier run into the same folder when it came from the same bundle."""
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return new
    same = old.get("source_bundle", {}).get("sha256") == bundle_fingerprint(bundle.path)  # never mix in another model's files
    if not same or not isinstance(old.get(key), dict):
        return new
    kept = {name: entry for name, entry in old[key].items() if name not in new[key] and _exists(entry, path.parent / name)}
    carried = {k: v for k, v in old.items() if not new.get(k) and v}  # e.g. photo counts of a Core ML-only run
    return {**new, **carried, key: {**kept, **new[key]}}


def _exists(entry: dict, default: Path) -> bool:
    return Path(entry.get("path", default)).exists() if isinstance(entry, dict) else False


def _version(name: str) -> str | None:
    try:
        return importlib_metadata.version(name)
    except importlib_metadata.PackageNotFoundError:
        return None
