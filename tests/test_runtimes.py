"""artefact.runtimes: one runner interface over torch, ONNX Runtime, TFLite and Core ML."""
from __future__ import annotations

import platform

import numpy as np
import pytest

from artefact.bundle import load_bundle
from artefact.data import read_manifest
from artefact.errors import ArtefactError
from artefact.infer import predict_logprobs
from artefact.runtimes import open_runner
from artefact_export.calibration import load_pixels


@pytest.fixture(scope="module")
def bundle(tiny_bundle):
    return load_bundle(tiny_bundle)


@pytest.fixture(scope="module")
def pixels(bundle):
    samples = read_manifest(bundle.manifest)[:10]
    px, kept = load_pixels(samples, bundle, progress=False)
    return px, kept


@pytest.fixture(scope="module")
def onnx_file(bundle, tmp_path_factory):
    from artefact_export.onnx_export import export_onnx

    return export_onnx(bundle, tmp_path_factory.mktemp("onnx") / "model.onnx")


def test_torch_runner_matches_predict_logprobs(bundle, pixels):
    px, samples = pixels
    runner = open_runner(bundle.path, bundle.preprocess, threads=1)
    assert (runner.runtime, runner.input_dtype) == ("torch", "float32")
    out = runner.logprobs(px)
    assert out.dtype == np.float32 and out.shape == (len(px), len(bundle.labels))
    np.testing.assert_allclose(np.exp(out).sum(1), 1.0, atol=1e-5)
    reference = predict_logprobs(bundle.model, bundle.preprocess, samples, device="cpu", progress=False)
    np.testing.assert_allclose(out, reference, atol=1e-4)


def test_onnx_runner_matches_torch(bundle, pixels, onnx_file):
    px, _ = pixels
    runner = open_runner(onnx_file, bundle.preprocess, threads=1)
    assert (runner.runtime, runner.input_dtype) == ("onnxruntime", "float32")
    torch_out = open_runner(bundle.path, bundle.preprocess).logprobs(px)
    np.testing.assert_allclose(runner.logprobs(px), torch_out, atol=1e-3)
    np.testing.assert_array_equal(runner.logprobs(px).argmax(1), torch_out.argmax(1))
    assert runner.logprobs(px[0]).shape == (1, len(bundle.labels))  # a single HWC image is a batch of one


def test_runner_rejects_wrong_pixels(bundle, onnx_file):
    runner = open_runner(onnx_file, bundle.preprocess)
    size = bundle.preprocess.input_size
    with pytest.raises(ArtefactError, match="expected uint8 pixels"):
        runner.logprobs(np.zeros((1, size, size, 3), np.float32))
    with pytest.raises(ArtefactError, match="expected uint8 pixels"):
        runner.logprobs(np.zeros((1, size + 1, size, 3), np.uint8))


def test_open_runner_bad_paths(bundle, tmp_path):
    with pytest.raises(ArtefactError, match="no such model"):
        open_runner(tmp_path / "missing.tflite", bundle.preprocess)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ArtefactError, match="unknown model type"):
        open_runner(tmp_path / "notes.txt", bundle.preprocess)
    (tmp_path / "junk.tflite").write_bytes(b"not a flatbuffer" * 8)
    with pytest.raises(ArtefactError, match="cannot load TFLite model"):
        open_runner(tmp_path / "junk.tflite", bundle.preprocess)
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf" * 8)
    with pytest.raises(ArtefactError, match="cannot load ONNX model"):
        open_runner(tmp_path / "junk.onnx", bundle.preprocess)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtefactError, match="not a model bundle"):
        open_runner(tmp_path / "empty", bundle.preprocess)


@pytest.mark.skipif(platform.system() == "Darwin", reason="checks the non-macOS error; on macOS Core ML predicts")
def test_coreml_runner_needs_macos(bundle, tmp_path):
    (tmp_path / "m.mlpackage").mkdir()
    with pytest.raises(ArtefactError, match="needs macOS"):
        open_runner(tmp_path / "m.mlpackage", bundle.preprocess)
