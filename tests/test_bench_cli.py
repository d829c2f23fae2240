"""artefact-bench end to end on the tiny bundle and real ONNX exports of it: reports, gate pass and fail, bad input."""
from __future__ import annotations

import json
import platform
from pathlib import Path

import pytest

from helpers import assert_one_line_error, run_cli

from artefact_bench.cli import main


@pytest.fixture(scope="module")
def exports(tiny_bundle, tmp_path_factory) -> dict[str, Path]:
    """A faithful ONNX export of the tiny bundle, and a broken one (same graph, untrained weights)."""
    from dataclasses import replace

    from artefact.bundle import load_bundle
    from artefact.model import create_model
    from artefact_export.onnx_export import export_onnx

    root = tmp_path_factory.mktemp("exports")
    bundle = load_bundle(tiny_bundle)
    export_onnx(bundle, root / "good" / "model.onnx")
    broken = replace(bundle, model=create_model(bundle.model.backbone_name, len(bundle.labels), pretrained=False).eval())
    export_onnx(broken, root / "broken" / "model.onnx")
    return {"good": root / "good", "broken": root / "broken"}


def _bench(tiny_bundle, out, *extra):
    return run_cli(main, ["--bundle", tiny_bundle, "--threads", "1", "--runs", "3", "--warmup", "1", "--out", out, "-q", *extra])


def test_bench_writes_every_report_and_passes_the_gate(tiny_bundle, exports, tmp_path):
    out = tmp_path / "bench"
    result = _bench(tiny_bundle, out, "--exports", exports["good"], "--timm", "tf_efficientnet_lite0@64",
                    "--check", "top1=7,top5=7,agreement=0.9")
    assert result.exit_code == 0, result.output
    assert "accuracy gate passed: 3 checks" in result.output

    results = json.loads((out / "bench.json").read_text())
    kinds = {m["kind"]: m for m in results["models"]}
    assert set(kinds) == {"bundle", "export", "timm"}
    bundle, export, timm = kinds["bundle"], kinds["export"], kinds["timm"]
    assert export["runtime"] == "onnxruntime" and export["source"] == bundle["name"] and export["precision"] == "fp32"
    assert bundle["accuracy"]["top10"] >= bundle["accuracy"]["top1"] > 0
    assert export["agreement_with_source"] >= 0.9
    assert timm["accuracy"] is None and timm["trained"] is False
    from artefact.data import read_manifest

    test_photos = sum(s.split == "test" for s in read_manifest(Path(tiny_bundle) / "manifest.csv"))
    assert results["queries"]["used"] == results["queries"]["total"] == test_photos  # the full split by default
    assert results["machine"]["cpu"] and results["machine"]["usable_cores"] >= 1
    for row in results["latency"]:
        assert row["threads"] == 1 and row["runs"] == 3
        assert 0 < row["min_ms"] <= row["p50_ms"] <= row["p90_ms"] <= row["max_ms"]
        assert row["init_ms"] > 0 and row["first_ms"] > 0 and row["peak_rss_mb"] > 0
        assert row["timed"] == "model"  # input prepared outside the timed call, checked against Runner.logprobs
    ref = next(r for r in results["latency"] if r["model"] == results["reference"])
    assert results["reference"] == bundle["name"] and ref["speedup_vs_reference"] == pytest.approx(1.0)
    assert bundle["params"] > 1e6 and bundle["macs"] > 1e6 and export["size_mb"] > 1

    markdown = (out / "bench.md").read_text()
    assert "not trained" in markdown and "| onnxruntime | fp32 | 1 |" in markdown
    assert f"Machine: {results['machine']['cpu']}" in markdown and "full split" in markdown
    html = (out / "bench.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "<table>" in html
    for png in ("accuracy_vs_latency.png", "topk.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_field_flag_measures_every_row_on_field_photos(tiny_bundle, exports, tmp_path):
    out = tmp_path / "bench"
    result = _bench(tiny_bundle, out, "--exports", exports["good"], "--max-queries", "16", "--field", "--field-seed", "3")
    assert result.exit_code == 0, result.output
    results = json.loads((out / "bench.json").read_text())
    assert results["queries"]["field_seed"] == 3
    rows = {m["kind"]: m for m in results["models"]}
    for row in rows.values():
        studio, field = row["accuracy"], row["field_accuracy"]
        assert set(field) == set(studio) and all(0 <= v <= 1 for v in field.values())
        assert field["top1"] <= field["top10"]
        assert row["field_gap_points"]["top1"] == pytest.approx(100 * (studio["top1"] - field["top1"]), abs=0.01)
    # the ONNX export sees the same field photos as its source bundle
    assert abs(rows["export"]["field_accuracy"]["top1"] - rows["bundle"]["field_accuracy"]["top1"]) <= 1 / 16 + 1e-9
    assert "## Field conditions" in (out / "bench.md").read_text()
    assert (out / "bench.html").read_text().count("data:image/png;base64,") == 3
    for png in ("field.png", "field_examples.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_field_flag_needs_accuracy(tiny_bundle, tmp_path):
    result = _bench(tiny_bundle, tmp_path / "bench", "--field", "--no-accuracy")
    assert_one_line_error(result, "--field measures accuracy")


def test_gate_fails_with_a_table_when_an_export_lost_accuracy(tiny_bundle, exports, tmp_path):
    out = tmp_path / "bench"
    result = _bench(tiny_bundle, out, "--exports", exports["good"], "--exports", exports["broken"], "--no-ensemble",
                    "--max-queries", "12", "--check", "agreement=0.9")
    assert result.exit_code == 1, result.output
    assert "| model | precision | metric |" in result.output
    failing = [line for line in result.output.splitlines() if line.startswith("| ") and "agreement" in line]
    assert len(failing) == 1 and "broken/model.onnx" in failing[0]
    assert_one_line_error(result, "accuracy gate failed: 1 of 2 checks")
    results = json.loads((out / "bench.json").read_text())  # the report is still written, with the gate's verdict
    assert results["gate"]["passed_checks"] == 1
    assert results["queries"]["used"] == 12 and "subsampled" in results["queries"]["note"]


@pytest.mark.parametrize("args, message", [
    (["--threads", "0"], "thread counts must be >= 1"),
    (["--threads", "a,b"], "comma-separated list of integers"),
    (["--exports", "/no/such/folder"], "/no/such/folder: no such exports folder"),
    (["--model", "/no/such/model.onnx"], "/no/such/model.onnx: no such exported model"),
    (["--timm", "bad name!"], "expected NAME or NAME@INPUT_SIZE"),
    (["--check", "top1=500"], "must be percentage points"),
    (["--check", "top1=1"], "--check: no exported models to gate"),
    (["--check", "top1=1", "--no-accuracy"], "cannot be used with --no-accuracy"),
    (["--accuracy-threads", "2"], "--accuracy-threads 2 is not one of --threads 1"),
    (["--adb-benchmark-model", "/no/such/benchmark_model"], "no such benchmark_model binary"),
])
def test_bad_input_is_one_line(tiny_bundle, tmp_path, args, message):
    assert_one_line_error(_bench(tiny_bundle, tmp_path / "out", *args), message)


def test_android_without_adb_says_so_in_one_line(tiny_bundle, tmp_path, monkeypatch):
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = _bench(tiny_bundle, tmp_path / "out", "--adb-benchmark-model", binary)
    assert_one_line_error(result, "adb not found on PATH")
    assert not (tmp_path / "out").exists()  # fails before any work


def test_ensemble_row_averages_its_members(tiny_bundle, tmp_path):
    import shutil

    twin = tmp_path / "twin"
    shutil.copytree(tiny_bundle, twin)  # same weights: the ensemble must score exactly as each member
    out = tmp_path / "bench"
    result = _bench(tiny_bundle, out, "--bundle", twin, "--max-queries", "10")
    assert result.exit_code == 0, result.output
    results = json.loads((out / "bench.json").read_text())
    members = [m for m in results["models"] if m["kind"] == "bundle"]
    ensemble = next(m for m in results["models"] if m["kind"] == "ensemble")
    assert len(members) == 2 and ensemble["members"] == [m["name"] for m in members]
    assert ensemble["accuracy"] == members[0]["accuracy"] == members[1]["accuracy"]
    assert ensemble["params"] == 2 * members[0]["params"] and ensemble["size_mb"] == pytest.approx(2 * members[0]["size_mb"])
    ensemble_row = next(r for r in results["latency"] if r["model"] == ensemble["name"])
    assert ensemble_row["timed"] == "model" and ensemble_row["runs"] == 3


def test_exports_are_tied_to_their_source_bundle_through_the_manifest(tiny_bundle, exports, tmp_path):
    import shutil

    from artefact.bundle import bundle_fingerprint, load_bundle
    from artefact.errors import ArtefactError
    from artefact_bench.models import bundle_spec, export_specs

    bundle = load_bundle(tiny_bundle)
    spec = bundle_spec(bundle)
    folder = tmp_path / "exports"
    (folder / "android").mkdir(parents=True)
    shutil.copy(exports["good"] / "model.onnx", folder / "model.onnx")
    shutil.copy(exports["good"] / "model.onnx", folder / "android" / "model.onnx")  # a byte-identical copy
    on_mac = platform.system() == "Darwin"
    if not on_mac:
        (folder / "model_fp16.mlpackage").mkdir()  # Core ML cannot predict here: listed as skipped

    def manifest(fingerprint: str, label_hash: str) -> None:
        (folder / "export_manifest.json").write_text(json.dumps({
            "source_bundle": {"path": "elsewhere", "sha256": fingerprint}, "label_hash": label_hash,
            "preprocess": bundle.preprocess.to_dict(), "files": {"model.onnx": {"format": "onnx", "precision": "fp32"}}}))

    manifest(bundle_fingerprint(tiny_bundle), bundle.label_hash)
    specs, skipped = export_specs([folder], [], [spec])
    assert [s.name for s in specs] == [f"{spec.name}/model.onnx"] and specs[0].path == folder / "model.onnx"
    assert specs[0].source == spec.name and specs[0].params == spec.params
    assert on_mac or (len(skipped) == 1 and "needs macOS" in skipped[0])

    manifest("0" * 64, bundle.label_hash)  # exported from another bundle: no float reference, said so
    specs, _ = export_specs([folder], [], [spec])
    assert specs[0].source is None and "not among --bundle" in specs[0].note

    manifest(bundle_fingerprint(tiny_bundle), "f" * 64)
    with pytest.raises(ArtefactError, match="exported for a different set of objects"):
        export_specs([folder], [], [spec])
