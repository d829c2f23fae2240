"""Shared fixtures: a tiny synthetic catalogue and a small trained bundle, built once per session."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("TQDM_DISABLE", "1")

ROOT = Path(__file__).resolve().parents[1]
ETH80 = ROOT.parent / "shared" / "datasets" / "eth80"


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """12 synthetic objects x 10 photos (96 px) with masks."""
    from artefact.synth import generate

    return generate(tmp_path_factory.mktemp("synth") / "catalogue", objects=12, photos=10, size=96, seed=0)


@pytest.fixture(scope="session")
def tiny_bundle(synth_root, tmp_path_factory) -> Path:
    """A pretrained Lite0 + paper head trained 4 epochs at 64 px on the synthetic catalogue."""
    from artefact_train.loop import TrainConfig, train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    config = TrainConfig(data=str(synth_root), out=str(out), input_size=64, epochs=4, batch_size=8,
                         head_lr=3e-3, lr=1e-3, seed=0, device="cpu")
    return train(config, progress=False, mark_as_latest=False)


@pytest.fixture(scope="session")
def onnx2tf_cache(tmp_path_factory):
    """onnx2tf is slow: run it once per ONNX file per session and reuse its SavedModel."""
    from artefact.bundle import file_sha256
    from artefact_export import tflite_export

    real = tflite_export.run_onnx2tf
    cache: dict[str, dict[str, Path]] = {}

    def cached(onnx_path, workdir, timeout_s=900):
        key = file_sha256(onnx_path)
        if key not in cache:
            paths = real(onnx_path, workdir, timeout_s)
            keep = tmp_path_factory.mktemp("onnx2tf") / "onnx2tf"
            shutil.copytree(paths["saved_model"], keep)
            cache[key] = {name: keep / p.relative_to(paths["saved_model"]) for name, p in paths.items()}
        return cache[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tflite_export, "run_onnx2tf", cached)
        yield cache


@pytest.fixture(scope="session")
def exported(tiny_bundle, onnx2tf_cache, tmp_path_factory):
    """`--target all` of the tiny bundle (the one full export of the suite)."""
    from artefact_export.pipeline import ExportOptions, run_export

    out = tmp_path_factory.mktemp("exports") / "tiny"
    result = run_export(ExportOptions(bundle=str(tiny_bundle), target="all", out=str(out), num_calibration=48,
                                      progress=False, threads=2))
    return out, result
