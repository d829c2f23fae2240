"""Contract test: what `artefact-export --target android` writes is what the field apps read.

The contract is android_demo/ASSETS.md; the Android app (android_demo/core FieldConfig.kt) and the
PWA (pwa/src/config.js) parse exactly these files. Also home of the shared `android_assets` fixture
(one export of the `tiny_bundle` per session, reused by test_android_core.py and test_pwa.py).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artefact.bundle import file_sha256, load_bundle

_EXPORTS: dict[Path, Path] = {}


def require_tool(found, what: str) -> None:
    """Fail (CI) or skip (a developer machine without the toolchain) when a tool is missing."""
    if found:
        return
    message = f"{what} is not installed: run android_demo/setup.sh"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def android_assets(request, tiny_bundle, tmp_path_factory) -> Path:
    """The android asset folder of the tiny bundle, exported once per session.

    Reuses the suite's full export (`exported` session fixture, when conftest provides it) and
    otherwise runs `artefact-export --target android` itself.
    """
    if tiny_bundle not in _EXPORTS:
        try:
            out = request.getfixturevalue("exported")[0] / "android"
        except pytest.FixtureLookupError:
            from click.testing import CliRunner

            from artefact_export.cli import main

            out = tmp_path_factory.mktemp("android_export") / "assets"
            result = CliRunner().invoke(main, ["--target", "android", "--bundle", str(tiny_bundle), "--out", str(out),
                                               "--no-parity", "--num-calibration", "16", "--quiet"], catch_exceptions=False)
            assert result.exit_code == 0, result.output
        _EXPORTS[tiny_bundle] = out
    return _EXPORTS[tiny_bundle]


def test_asset_files_are_where_the_apps_look(android_assets, tiny_bundle):
    config = json.loads((android_assets / "artefact_config.json").read_text(encoding="utf-8"))
    assert config["format_version"] == 1
    assert config["model_file"] == "model.tflite" and config["labels_file"] == "labels.txt"
    assert (android_assets / "model.tflite").is_file() and (android_assets / "labels.txt").is_file()
    assert config["model_sha256"] == file_sha256(android_assets / "model.tflite")
    n = len(load_bundle(tiny_bundle).labels)
    for i, label in enumerate(config["labels"]):
        assert label["thumbnail"] == f"thumbs/{i}.jpg"
        with Image.open(android_assets / label["thumbnail"]) as thumb:
            assert thumb.format == "JPEG" and thumb.size == (96, 96)
    assert len(config["labels"]) == n


def test_config_carries_the_bundle_contract_and_labels(android_assets, tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    config = json.loads((android_assets / "artefact_config.json").read_text(encoding="utf-8"))
    p, inp = bundle.preprocess, config["input"]
    assert (inp["width"], inp["height"], inp["channels"]) == (p.input_size, p.input_size, 3)
    assert (inp["dtype"], inp["layout"], inp["channel_order"], inp["interpolation"]) == ("uint8", "NHWC", "RGB", "bilinear")
    assert inp["crop_fraction"] == p.crop_fraction
    assert tuple(inp["mean"]) == p.mean and tuple(inp["std"]) == p.std
    scale, zero_point = p.int8_input_quantization()
    assert inp["quantization"]["zero_point"] == zero_point
    assert inp["quantization"]["scale"] == pytest.approx(scale, rel=1e-6)
    assert config["output"] == {"type": "log_probabilities", "dtype": "float32", "num_classes": len(bundle.labels)}
    labels_txt = (android_assets / "labels.txt").read_text(encoding="utf-8").splitlines()
    assert labels_txt == bundle.label_ids
    assert [(l["index"], l["object_id"], l["collection"]) for l in config["labels"]] == \
        [(i, l.object_id, l.collection) for i, l in enumerate(bundle.labels)]
    assert config["label_hash"] == bundle.label_hash
    assert config["top_k"] >= 1 and 0.0 <= config["threshold"]["min_probability"] <= 1.0


def test_model_tensors_are_what_the_config_says(android_assets):
    from ai_edge_litert.interpreter import Interpreter

    config = json.loads((android_assets / "artefact_config.json").read_text(encoding="utf-8"))
    interpreter = Interpreter(model_path=str(android_assets / "model.tflite"))
    interpreter.allocate_tensors()
    (inp,), (out, embedding) = interpreter.get_input_details(), interpreter.get_output_details()
    assert embedding["name"] == "embedding" and embedding["dtype"] == np.float32
    assert int(np.prod(embedding["shape"][1:])) == config["embedding"]["dim"] == config["gallery"]["dim"]
    assert config["embedding"]["output_index"] == 1
    c = config["input"]
    assert list(inp["shape"]) == [1, c["height"], c["width"], 3] and inp["dtype"] == np.uint8
    assert inp["quantization"][1] == c["quantization"]["zero_point"]
    assert inp["quantization"][0] == pytest.approx(c["quantization"]["scale"], rel=1e-6)
    assert list(out["shape"]) == [1, config["output"]["num_classes"]] and out["dtype"] == np.float32
    interpreter.set_tensor(inp["index"], np.full(inp["shape"], 128, np.uint8))
    interpreter.invoke()
    probs = np.exp(interpreter.get_tensor(out["index"])[0])
    assert probs.sum() == pytest.approx(1.0, abs=0.02)  # log-probabilities, as the apps assume


def _gallery_of(assets: Path) -> tuple[dict, np.ndarray]:
    config = json.loads((assets / "artefact_config.json").read_text(encoding="utf-8"))
    g = config["gallery"]
    data = (assets / g["file"]).read_bytes()
    assert len(data) == g["rows"] * g["dim"] and file_sha256(assets / g["file"]) == g["sha256"]
    return config, np.frombuffer(data, np.int8).reshape(g["rows"], g["dim"])


def _int8_outputs(assets: Path, photo: Path, bundle) -> tuple[np.ndarray, np.ndarray]:
    from artefact.images import load_image
    from artefact.runtimes import open_runner

    logprobs, embedding = open_runner(assets / "model.tflite", bundle.preprocess).logprobs_and_embeddings(
        bundle.preprocess.to_pixels(load_image(photo)))
    return logprobs[0], embedding[0]


def test_gallery_holds_every_catalogue_photo_and_finds_them(android_assets, tiny_bundle):
    from artefact.data import read_manifest
    from artefact_export.android import gallery_ranking

    bundle = load_bundle(tiny_bundle)
    config, values = _gallery_of(android_assets)
    g = config["gallery"]
    catalogue = [s for s in read_manifest(bundle.manifest) if s.split == "train"]
    assert g["rows"] == len(catalogue) and -1 <= g["min_similarity"] <= 1
    assert [o["object_id"] for o in g["objects"]] == bundle.label_ids
    assert [o["label_index"] for o in g["objects"]] == list(range(len(bundle.labels)))
    starts = np.cumsum([0] + [o["rows"] for o in g["objects"]])
    assert [o["first_row"] for o in g["objects"]] == list(starts[:-1]) and starts[-1] == g["rows"]
    assert all((android_assets / o["thumbnail"]).is_file() and not o["enrolled"] for o in g["objects"])
    # a catalogue photo finds its own gallery row: similarity ~1 for its object, ranked first
    for sample in catalogue[::7]:
        logprobs, embedding = _int8_outputs(android_assets, sample.path, bundle)
        answer = gallery_ranking(config, values, logprobs, embedding)
        best = g["objects"][answer["matches"][0]]
        assert best["object_id"] == sample.object_id and answer["similarities"][0] > 0.99, answer
        assert answer["similarities"] == sorted(answer["similarities"], reverse=True)
        assert answer["confident"] == (np.exp(logprobs[best["label_index"]]) >= config["threshold"]["min_probability"])


def test_enrolled_objects_reach_the_app_gallery(tiny_bundle, onnx2tf_cache, tmp_path):
    """artefact-enroll, then export: the apps' gallery ranks the new object and decides it by similarity."""
    import shutil

    from click.testing import CliRunner

    from artefact.synth import generate
    from artefact_export.android import gallery_ranking
    from artefact_export.cli import main as export_main
    from artefact_train.openset_cli import enroll_main

    bundle_dir = Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
    root = generate(tmp_path / "more", objects=14, photos=5, size=96, seed=0)
    photos = sorted((root / "images").rglob("figurine013-*.jpg"))
    result = CliRunner().invoke(enroll_main, ["--bundle", str(bundle_dir), "--object", "figurine013", "--collection", "new", "-q",
                                              *map(str, photos[:3])])
    assert result.exit_code == 0, result.output
    out = tmp_path / "assets"
    result = CliRunner().invoke(export_main, ["--target", "android", "--bundle", str(bundle_dir), "--out", str(out),
                                              "--no-parity", "--num-calibration", "16", "--quiet"])
    assert result.exit_code == 0, result.output
    config, values = _gallery_of(out)
    new = config["gallery"]["objects"][-1]
    assert (new["object_id"], new["collection"], new["enrolled"], new["label_index"], new["rows"]) == ("figurine013", "new", True, None, 3)
    assert (out / new["thumbnail"]).is_file() and new["thumbnail"].startswith("thumbs/enrolled-")
    bundle = load_bundle(bundle_dir)
    answer = gallery_ranking(config, values, *_int8_outputs(out, photos[0], bundle))
    assert answer["matches"][0] == len(config["gallery"]["objects"]) - 1 and answer["similarities"][0] > 0.99
    assert answer["confident"] == (answer["similarities"][0] >= config["gallery"]["min_similarity"])
    # --no-gallery: the head-only assets of before
    result = CliRunner().invoke(export_main, ["--target", "android", "--bundle", str(bundle_dir), "--out", str(tmp_path / "plain"),
                                              "--no-parity", "--num-calibration", "16", "--quiet", "--no-gallery"])
    assert result.exit_code == 0, result.output
    plain = json.loads((tmp_path / "plain" / "artefact_config.json").read_text())
    assert "gallery" not in plain and not (tmp_path / "plain" / "gallery.bin").exists()
