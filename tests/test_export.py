"""artefact-export: ONNX / TFLite / Core ML / android assets from the tiny bundle, metadata, parity gate.

onnx2tf is slow (about a minute), so it runs once: `onnx2tf_cache` keeps its output for the
session keyed by the ONNX file's content, and every later export of the same model reuses it.
"""
from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from artefact.bundle import bundle_fingerprint, file_sha256, load_bundle
from artefact.contract import Preprocess
from artefact.errors import ArtefactError
from artefact.runtimes import open_runner
from artefact_export import android, cli, parity, tflite_export
from artefact_export.parity import path_sha256
from artefact_export.pipeline import ExportOptions, plan, run_export


REAL_RUN_ONNX2TF = tflite_export.run_onnx2tf


@pytest.fixture(scope="session")
def bundle(tiny_bundle):
    return load_bundle(tiny_bundle)


def _cli(*args, **kwargs):
    return CliRunner().invoke(cli.main, ["--quiet", *args], **kwargs)


# --- planning and bad input -------------------------------------------------------------------

def test_plan():
    assert plan("tflite", "int8") == [("tflite", "int8")]
    assert plan("tflite", None) == [("tflite", "fp32"), ("tflite", "fp16"), ("tflite", "int8")]
    assert plan("coreml", None) == [("coreml", "fp16")]
    assert ("android", "int8") in plan("all", None) and ("coreml", "int8") in plan("all", None)
    with pytest.raises(ArtefactError, match="unknown target"):
        plan("tensorrt", None)
    with pytest.raises(ArtefactError, match="do not apply"):
        plan("onnx", "int8")


def test_cli_rejects_int8_with_fp16(tiny_bundle, tmp_path):
    result = _cli("--bundle", str(tiny_bundle), "--int8", "--fp16", "--out", str(tmp_path / "x"))
    assert result.exit_code == 1
    assert "--int8 and --fp16" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


def test_cli_unknown_target(tiny_bundle):
    result = _cli("--bundle", str(tiny_bundle), "--target", "tensorrt")
    assert result.exit_code != 0 and "tensorrt" in result.output


def test_cli_missing_and_corrupt_bundle(tiny_bundle, tmp_path):
    result = _cli("--bundle", str(tmp_path / "nope"), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1 and "nope" in result.output and "Traceback" not in result.output
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bundle, broken)
    (broken / "model.safetensors").write_bytes(b"\0" * 100)
    result = _cli("--bundle", str(broken), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1 and "corrupt" in result.output and str(broken) in result.output
    assert not any((tmp_path / "out").glob("*.tflite"))


def test_cli_without_any_bundle_says_what_to_pass(tmp_path):
    runner = CliRunner()
    with runner.isolated_filesystem(temp_dir=tmp_path):
        result = runner.invoke(cli.main, ["--target", "tflite", "--int8"])
    assert result.exit_code == 1 and "--bundle" in result.output


def test_cli_unwritable_out(tiny_bundle, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = _cli("--bundle", str(tiny_bundle), "--out", str(blocker / "sub"))
    assert result.exit_code == 1 and "not writable" in result.output and str(blocker) in result.output


def test_cli_empty_or_unreadable_calibration(tiny_bundle, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _cli("--bundle", str(tiny_bundle), "--int8", "--calibration", str(empty), "--out", str(tmp_path / "o"))
    assert result.exit_code == 1 and "no photos" in result.output and str(empty) in result.output
    bad = tmp_path / "bad" / "coin002"  # an object the bundle knows, but the photo cannot be decoded
    bad.mkdir(parents=True)
    (bad / "a.jpg").write_bytes(b"not a jpeg")
    result = _cli("--bundle", str(tiny_bundle), "--int8", "--calibration", str(tmp_path / "bad"), "--out", str(tmp_path / "o"))
    assert result.exit_code == 1 and "calibration" in result.output and "Traceback" not in result.output
    assert not any((tmp_path / "o").glob("*.tflite"))


def test_calibration_covers_every_object_from_train_photos(bundle):
    from artefact.data import read_manifest
    from artefact_export.calibration import calibration_samples

    n = len(bundle.labels)
    first = calibration_samples(bundle, None, n)
    assert sorted(s.object_id for s in first) == sorted(bundle.label_ids)  # one photo of each object first
    train = [s for s in read_manifest(bundle.manifest) if s.split == "train"]
    everything = calibration_samples(bundle, bundle.manifest, 10_000)  # a manifest: its train photos only
    assert sorted(s.path for s in everything) == sorted(s.path for s in train)
    with pytest.raises(ArtefactError, match="at least 1"):
        calibration_samples(bundle, None, 0)


def test_converter_crash_is_one_line_and_leaves_nothing(tiny_bundle, tmp_path, monkeypatch):
    class Failed:
        returncode, stdout, stderr = 3, "", "Traceback ...\nValueError: boom in onnx2tf"

    monkeypatch.setattr(tflite_export, "run_onnx2tf", REAL_RUN_ONNX2TF)  # not the session cache
    monkeypatch.setattr(tflite_export.subprocess, "run", lambda *a, **k: Failed())
    out = tmp_path / "out"
    result = _cli("--bundle", str(tiny_bundle), "--target", "tflite", "--fp16", "--out", str(out))
    assert result.exit_code == 1
    assert "onnx2tf failed" in result.output and "boom in onnx2tf" in result.output
    assert list(out.iterdir()) == []


# --- the full export --------------------------------------------------------------------------

def test_manifest_lists_every_file_with_checksums(exported, bundle):
    out, result = exported
    manifest = json.loads((out / "export_manifest.json").read_text())
    expected = {"model.onnx", "model_fp32.tflite", "model_fp16.tflite", "model_int8.tflite",
                "model_fp16.mlpackage", "model_int8.mlpackage", "android"}
    assert set(manifest["files"]) == expected
    for name, info in manifest["files"].items():
        path = Path(info["path"])
        assert path.exists(), name
        assert info["sha256"] == path_sha256(path)
        assert info["size_bytes"] > 0
    assert manifest["label_hash"] == bundle.label_hash
    assert manifest["source_bundle"]["sha256"] == bundle_fingerprint(bundle.path)
    assert Preprocess.from_dict(manifest["preprocess"]) == bundle.preprocess
    assert manifest["timings_s"]["export_total"] > 0
    assert not list(out.glob(".*tmp*"))  # no temporary leftovers


def test_onnx_is_simplified_opset17(exported):
    import onnx

    out, _ = exported
    model = onnx.load(str(out / "model.onnx"))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"Shape", "Ceil", "Pad", "Gather", "ConstantOfShape"}
    assert "Conv" in ops and "LogSoftmax" in ops


def test_tflite_metadata_reads_back(exported, bundle):
    from artefact_export.metadata import read_metadata

    out, _ = exported
    for precision in ("fp32", "fp16", "int8"):
        md = read_metadata(out / f"model_{precision}.tflite")
        meta = md["metadata"]
        assert precision in meta["name"] and meta["author"] and meta["version"] and "log-probabilities" in meta["description"]
        graph = meta["subgraph_metadata"][0]
        norm = graph["input_tensor_metadata"][0]["process_units"][0]["options"]
        assert norm["mean"] == list(bundle.preprocess.mean) and norm["std"] == list(bundle.preprocess.std)
        assert graph["input_tensor_metadata"][0]["content"]["content_properties"]["color_space"] == "RGB"
        output = graph["output_tensor_metadata"][0]
        assert "log-probabilities" in output["description"] and output["stats"]["max"] == [0.0]
        assert md["files"]["labels.txt"].splitlines() == bundle.label_ids
        rows = [line.split("\t") for line in md["files"]["labels.tsv"].splitlines()[1:]]
        assert [(r[1], r[2]) for r in rows] == [(l.object_id, l.collection) for l in bundle.labels]


def test_int8_io_and_quantisation(exported, bundle):
    from ai_edge_litert.interpreter import Interpreter

    out, result = exported
    path = out / "model_int8.tflite"
    interpreter = Interpreter(model_path=str(path))
    inp, outp = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    size = bundle.preprocess.input_size
    assert inp["dtype"] == np.uint8 and list(inp["shape"]) == [1, size, size, 3]  # NHWC raw pixels
    scale, zero_point = bundle.preprocess.int8_input_quantization()
    assert inp["quantization"][0] == pytest.approx(scale, rel=1e-6) and inp["quantization"][1] == zero_point
    # the folded quantisation reproduces the contract's normalisation within half a step
    pixels = np.arange(256, dtype=np.float32)
    normalised = (pixels - bundle.preprocess.mean[0]) / bundle.preprocess.std[0]
    assert np.max(np.abs((pixels - zero_point) * scale - normalised)) <= scale / 2 + 1e-6
    assert outp["dtype"] == np.float32 and list(outp["shape"]) == [1, len(bundle.labels)]
    # every convolution runs in int8
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    convs = [op for op in interpreter._get_ops_details() if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    assert len(convs) > 40
    assert all(tensors[op["inputs"][0]]["dtype"] == np.int8 and tensors[op["inputs"][1]]["dtype"] == np.int8 for op in convs)
    assert result["files"]["model_int8.tflite"]["calibration"]["photos"] == 48


def test_int8_graph_has_no_islands(exported):
    out, _ = exported
    ops = tflite_export.tflite_ops(out / "model_int8.tflite")
    # one DEQUANTIZE into the float classifier tail, one producing the "embedding" output
    assert "TRANSPOSE" not in ops and ops.get("QUANTIZE") == 1 and ops.get("DEQUANTIZE") == 2
    assert tflite_export.int8_islands(out / "model_int8.tflite") == []
    assert "TRANSPOSE" not in tflite_export.tflite_ops(out / "model_fp32.tflite")


def test_int8_islands_detects_a_float_island(exported, tmp_path):
    """A model that dequantises in the middle and quantises again is flagged."""
    from ai_edge_litert import schema_py_generated as schema

    out, _ = exported
    model_t = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel((out / "model_int8.tflite").read_bytes(), 0))
    codes = [c.builtinCode for c in model_t.operatorCodes]
    graph = model_t.subgraphs[0]
    quantize = next(op for op in graph.operators if codes[op.opcodeIndex] == schema.BuiltinOperator.QUANTIZE)
    graph.operators.append(quantize)  # a QUANTIZE after the DEQUANTIZE: a float island
    path = tmp_path / "island.tflite"
    path.write_bytes(tflite_export._write(schema, model_t))
    assert any("float island" in p for p in tflite_export.int8_islands(path))


def test_int8_embedding_output_is_the_pooled_features(exported, bundle):
    """Output 1 of the int8 model is the backbone's pooled features (the gallery embedding), int8-accurate."""
    import torch

    from artefact.images import load_image
    from artefact.data import read_manifest

    out, result = exported
    runner = open_runner(out / "model_int8.tflite", bundle.preprocess)
    assert runner.has_embedding and result["files"]["model_int8.tflite"]["embedding"]["dtype"] == "float32"
    photos = [s for s in read_manifest(bundle.manifest) if s.split == "test"][:6]
    pixels = np.stack([bundle.preprocess.to_pixels(load_image(s.path)) for s in photos])
    logprobs, embeddings = runner.logprobs_and_embeddings(pixels)
    np.testing.assert_allclose(logprobs, runner.logprobs(pixels), atol=1e-6)
    with torch.no_grad():
        features = bundle.model.eval().features(torch.from_numpy(bundle.preprocess.normalize(pixels))).numpy()
    assert embeddings.shape == features.shape
    cosine = (embeddings * features).sum(1) / np.linalg.norm(embeddings, axis=1) / np.linalg.norm(features, axis=1)
    assert cosine.min() > 0.9, cosine
    assert not open_runner(out / "model_fp32.tflite", bundle.preprocess).has_embedding  # float models: log-probs only


def test_tflite_runner_feeds_raw_pixels_to_int8(exported, bundle):
    from ai_edge_litert.interpreter import Interpreter

    out, _ = exported
    path = out / "model_int8.tflite"
    runner = open_runner(path, bundle.preprocess)
    assert (runner.runtime, runner.input_dtype) == ("tflite", "uint8")
    pixels = np.random.default_rng(0).integers(0, 256, (2, bundle.preprocess.input_size, bundle.preprocess.input_size, 3), np.uint8)
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], pixels[:1])
    interpreter.invoke()
    direct = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(runner.logprobs(pixels)[:1], direct, atol=1e-6)
    fp32 = open_runner(out / "model_fp32.tflite", bundle.preprocess)
    assert fp32.input_dtype == "float32"
    np.testing.assert_allclose(fp32.logprobs(pixels), open_runner(bundle.path, bundle.preprocess).logprobs(pixels), atol=1e-3)


def test_parity_report(exported, bundle):
    out, result = exported
    report = json.loads((out / "parity.json").read_text())
    assert set(report["photos"]) == {"val", "test"}
    for name in ("model.onnx", "model_fp32.tflite", "model_fp16.tflite", "model_int8.tflite"):
        entry = report["exports"][name]
        assert {"val", "test", "all"} <= set(entry) and entry["sha256"] == file_sha256(out / name)
        assert entry["all"]["photos"] == report["photos"]["val"] + report["photos"]["test"]
    for name in ("model.onnx", "model_fp32.tflite"):
        assert report["exports"][name]["all"]["top1_agreement"] == 1.0
        assert report["exports"][name]["all"]["max_abs_dprob"] < 1e-3
    assert report["exports"]["model_fp16.tflite"]["all"]["max_abs_dprob"] < 0.05
    int8 = report["exports"]["model_int8.tflite"]["all"]
    assert 0.0 <= int8["top1"] <= 1.0 and 0.0 < int8["top1_agreement"] <= 1.0 and 0.0 < int8["max_abs_dprob"] < 1.0
    assert report["exports"]["model_int8.mlpackage"]["sha256"] == path_sha256(out / "model_int8.mlpackage")
    md = (out / "parity.md").read_text()
    assert "| model_int8.tflite | tflite | int8 |" in md and "top-1 agreement" in md
    if platform.system() != "Darwin":
        assert "macOS" in report["exports"]["model_fp16.mlpackage"]["skipped"]
    assert [f for f in report["gate"]["failures"] if f.startswith(("model.onnx", "model_fp32"))] == []


def test_gate_catches_a_broken_model(exported, bundle, tmp_path):
    """A float export whose classifier rows are reversed must fail --check; the real one passes."""
    out, _ = exported
    broken = tmp_path / "broken_fp32.tflite"
    broken.write_bytes(_reverse_last_layer((out / "model_fp32.tflite").read_bytes()))
    exports = {"good.tflite": {"path": out / "model_fp32.tflite", "format": "tflite", "precision": "fp32"},
               "broken.tflite": {"path": broken, "format": "tflite", "precision": "fp32"}}
    report = parity.parity_report(bundle, exports, progress=False)
    failures = parity.check(report)
    assert len(failures) == 1 and failures[0].startswith("broken.tflite")
    assert parity.check(report, parity.Gate(min_agreement=0.0)) == []
    int8_report = {"exports": {"q": {"precision": "int8", "all": {"top1": 0.80, "torch_top1": 0.815}}}}
    assert parity.check(int8_report) and not parity.check(int8_report, parity.Gate(max_int8_drop=0.02))


def test_cli_check_fails_on_broken_export(tiny_bundle, onnx2tf_cache, exported, tmp_path, monkeypatch):
    from artefact_export import metadata

    real = metadata.embed_metadata
    monkeypatch.setattr(metadata, "embed_metadata", lambda model, b, p: real(_reverse_last_layer(model), b, p))
    out = tmp_path / "broken"
    result = _cli("--bundle", str(tiny_bundle), "--target", "tflite", "--fp16", "--out", str(out), "--check")
    assert result.exit_code == 1, result.output
    assert "FAIL model_fp16.tflite" in result.output
    monkeypatch.setattr(metadata, "embed_metadata", real)
    result = _cli("--bundle", str(tiny_bundle), "--target", "tflite", "--fp16", "--out", str(out), "--check")
    assert result.exit_code == 0, result.output
    assert "parity gate: pass" in result.output


def _reverse_last_layer(model: bytes) -> bytes:
    """Reverse the output rows of the last FULLY_CONNECTED layer (a wrong label order, in effect)."""
    from ai_edge_litert import schema_py_generated as schema

    model_t = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model, 0))
    graph = model_t.subgraphs[0]
    codes = [c.builtinCode for c in model_t.operatorCodes]
    producer = {t: op for op in graph.operators for t in op.outputs}
    fc = [op for op in graph.operators if codes[op.opcodeIndex] == schema.BuiltinOperator.FULLY_CONNECTED][-1]
    for index in fc.inputs[1:3]:
        source = producer.get(index)  # fp16 weights reach the layer through a DEQUANTIZE
        tensor = graph.tensors[source.inputs[0] if source else index]
        dtype = {schema.TensorType.FLOAT32: np.float32, schema.TensorType.FLOAT16: np.float16}[tensor.type]
        buffer = model_t.buffers[tensor.buffer]
        values = np.frombuffer(bytes(buffer.data), dtype).reshape(tensor.shape)
        buffer.data = np.frombuffer(values[::-1].copy().tobytes(), np.uint8)
    return tflite_export._write(schema, model_t)


# --- Core ML ----------------------------------------------------------------------------------

def test_coreml_spec(exported, bundle):
    from artefact_export.coreml_export import inspect_coreml

    out, _ = exported
    for precision in ("fp16", "int8"):
        spec = inspect_coreml(out / f"model_{precision}.mlpackage")
        assert spec["type"] == "mlProgram"
        assert spec["input"] == {"name": "image", "kind": "imageType", "width": bundle.preprocess.input_size,
                                 "height": bundle.preprocess.input_size}
        assert spec["labels"] == bundle.label_ids and spec["predicted_feature"] == "object_id"
        assert spec["probabilities"] in spec["outputs"]
        assert spec["ops"]["conv"] >= 40 and "softmax" in spec["ops"] and "classify" in spec["ops"]
        assert spec["metadata"]["artefact.label_hash"] == bundle.label_hash
        assert Preprocess.from_dict(json.loads(spec["metadata"]["artefact.preprocess"])) == bundle.preprocess
        assert ("constexpr_affine_dequantize" in spec["ops"]) == (precision == "int8")
    sizes = {p: path_size(out / f"model_{p}.mlpackage") for p in ("fp16", "int8")}
    assert sizes["int8"] < 0.7 * sizes["fp16"]


def path_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@pytest.mark.skipif(platform.system() != "Darwin", reason="Core ML prediction (coremltools predict) runs only on macOS")
def test_coreml_predict_parity(exported, bundle):
    out, _ = exported
    report = parity.parity_report(bundle, {"m": {"path": out / "model_fp16.mlpackage", "format": "coreml", "precision": "fp16"}},
                                  progress=False)
    assert report["exports"]["m"]["all"]["top1_agreement"] >= 0.99


# --- android assets ---------------------------------------------------------------------------

def test_android_assets_follow_the_spec(exported, bundle):
    out, _ = exported
    assets = out / "android"
    assert {"model.tflite", "labels.txt", "artefact_config.json", "thumbs"} <= {p.name for p in assets.iterdir()}
    config = json.loads((assets / "artefact_config.json").read_text())
    assert config["format_version"] == 1 and config["model_file"] == "model.tflite" and config["labels_file"] == "labels.txt"
    assert config["model_sha256"] == file_sha256(assets / "model.tflite")
    assert (assets / "model.tflite").read_bytes() == (out / "model_int8.tflite").read_bytes()
    assert config["label_hash"] == bundle.label_hash
    p = bundle.preprocess
    scale, zero_point = p.int8_input_quantization()
    assert config["input"] == {
        "width": p.input_size, "height": p.input_size, "channels": 3, "dtype": "uint8", "layout": "NHWC",
        "channel_order": "RGB", "crop_fraction": p.crop_fraction, "interpolation": "bilinear",
        "mean": list(p.mean), "std": list(p.std), "quantization": {"scale": pytest.approx(scale), "zero_point": zero_point},
    }
    assert config["output"] == {"type": "log_probabilities", "dtype": "float32", "num_classes": len(bundle.labels)}
    assert [l["object_id"] for l in config["labels"]] == bundle.label_ids
    assert (assets / "labels.txt").read_text().splitlines() == bundle.label_ids
    assert config["top_k"] == 5 and 0.0 <= config["threshold"]["min_probability"] <= 1.0
    for label in config["labels"]:
        with Image.open(assets / label["thumbnail"]) as thumb:
            assert thumb.size == (96, 96) and thumb.format == "JPEG"
    assert len(list((assets / "thumbs").iterdir())) == len(bundle.labels)


def test_threshold_rule():
    # 10 val photos: the 6 most confident are right, then wrong/right alternate
    probs = np.array([0.99, 0.95, 0.9, 0.85, 0.8, 0.75, 0.5, 0.45, 0.4, 0.35])
    right = np.array([1, 1, 1, 1, 1, 1, 0, 1, 0, 1], bool)
    targets = np.zeros(10, int)
    logprobs = np.full((10, 3), -10.0)
    logprobs[np.arange(10), np.where(right, 0, 1)] = np.log(probs)
    rule = android.choose_threshold(logprobs, targets, target_precision=0.95)
    assert rule["min_probability"] == 0.75 and rule["target_met"] and rule["val_coverage"] == 0.6
    rule = android.choose_threshold(logprobs, targets, target_precision=0.85)
    assert rule["min_probability"] == 0.45  # 7 of 8 right = 0.875 >= 0.85; 7 of 9 and 8 of 10 are not
    never = android.choose_threshold(logprobs[6:7], targets[6:7])
    assert not never["target_met"]


def test_android_refuses_to_replace_a_foreign_folder(bundle, exported, tmp_path):
    out, _ = exported
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(ArtefactError, match="not an app asset folder"):
        android.write_assets(foreign, bundle, out / "model_int8.tflite", {"scale": 1.0, "zero_point": 0},
                             {"min_probability": 0.5, "rule": "x"})
    assert (foreign / "thesis.tex").read_text() == "precious"


def test_gate_forgives_flipped_near_ties_but_not_real_flips():
    reference = np.log(np.array([[0.501, 0.499, 0.0], [0.9, 0.05, 0.05], [0.6, 0.3, 0.1]]) + 1e-12)
    export = np.log(np.array([[0.499, 0.501, 0.0], [0.9, 0.05, 0.05], [0.3, 0.6, 0.1]]) + 1e-12)
    assert parity.decided_agreement(reference, export) == pytest.approx(2 / 3)
    stats = parity.compare(reference, export, np.array([0, 0, 0]))
    assert stats["top1_agreement"] == pytest.approx(1 / 3)
    report = {"exports": {"m.tflite": {"precision": "fp16", "all": stats}}}
    failures = parity.check(report, parity.Gate(min_agreement=0.6))
    assert failures == []
    assert "outside near-ties" in parity.check(report, parity.Gate(min_agreement=0.9))[0]
