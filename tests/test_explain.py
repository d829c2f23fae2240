"""artefact-explain: saliency overlays for the top matches of a photo, and its errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from artefact.bundle import Label, load_bundle, save_bundle
from artefact.contract import Preprocess
from artefact.data import read_manifest, select_split
from artefact.errors import ArtefactError
from artefact.images import load_image
from artefact.model import create_model
from artefact_train.explain import display_pixels, explain_image, main, saliency, target_layer
from helpers import assert_one_line_error, photo, run_cli, truncated_jpeg


@pytest.fixture(scope="module")
def bundle(tiny_bundle):
    return load_bundle(tiny_bundle)


@pytest.fixture(scope="module")
def query(bundle) -> str:
    return select_split(read_manifest(bundle.manifest), "test")[0].path


def _input(bundle, path) -> torch.Tensor:
    return torch.from_numpy(bundle.preprocess(load_image(path)))[None]


def test_target_layer_is_the_map_that_global_pooling_averages(bundle, query):
    name, layer = target_layer(bundle.model, bundle.preprocess.input_size)
    assert name == "bn2"  # EfficientNet-Lite: conv_head -> BatchNorm -> ReLU6
    seen = []
    hook = layer.register_forward_hook(lambda _m, _i, out: seen.append(out))
    x = _input(bundle, query)
    with torch.no_grad():
        pooled = bundle.model.features(x)
    hook.remove()
    fmap = seen[0]
    assert fmap.shape == (1, 1280, bundle.preprocess.input_size // 32, bundle.preprocess.input_size // 32)
    torch.testing.assert_close(fmap.mean(dim=(2, 3)), pooled)


def test_cli_writes_an_overlay_per_top_match(bundle, tiny_bundle, query, tmp_path):
    result = run_cli(main, [query, "--bundle", tiny_bundle, "--top-k", 3, "--out", tmp_path])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "explain.json").read_text())["explanations"][0]
    with torch.no_grad():
        probs = np.exp(bundle.model(_input(bundle, query))[0].numpy())
    top = np.argsort(-probs)[:3]
    assert [m["object"] for m in record["matches"]] == [bundle.labels[i].object_id for i in top]
    assert [m["probability"] for m in record["matches"]] == pytest.approx(probs[top].tolist(), abs=1e-4)
    for match in record["matches"]:
        assert match["object"] in result.output
        with Image.open(tmp_path / match["overlay"]) as im:
            assert im.mode == "RGB" and im.size == (320, 320)
    with Image.open(tmp_path / record["summary"]) as im:
        assert im.size[0] > 320 * 3  # photo + three overlays side by side
    assert not list(tmp_path.glob(".*.tmp"))


def test_maps_follow_the_target_class_except_for_eigencam(bundle, query):
    """(Plain Grad-CAM may be empty for every class of this weak 3-epoch model: its class scores are negative.)"""
    x = _input(bundle, query)
    size = bundle.preprocess.input_size
    with torch.no_grad():
        top2 = bundle.model(x)[0].argsort(descending=True)[:2].tolist()  # low-ranked objects may get an empty map
    gradcampp = saliency(bundle.model, x, top2, "gradcam++")
    eigencam = saliency(bundle.model, x, top2, "eigencam")
    for maps in (gradcampp, eigencam):
        assert maps.shape == (2, size, size) and maps.min() >= 0 and maps.max() <= 1
    assert gradcampp.max(axis=(1, 2)).tolist() == pytest.approx([1, 1])  # never empty
    assert not np.allclose(gradcampp[0], gradcampp[1])  # different objects, different evidence
    np.testing.assert_allclose(eigencam[0], eigencam[1])  # class-agnostic by design


def test_gradient_saliency_is_scaled_by_its_99th_percentile(bundle, query):
    maps = saliency(bundle.model, _input(bundle, query), [2], "gradient")
    assert maps.shape == (1, bundle.preprocess.input_size, bundle.preprocess.input_size)
    assert 0.005 <= float((maps >= 1).mean()) <= 0.03 and maps.min() >= 0


def test_overlay_is_drawn_on_the_pixels_the_model_saw():
    contract = Preprocess(input_size=64, crop_fraction=0.8)
    image = photo((200, 120), seed=3)
    shown = Image.fromarray(display_pixels(image, contract, side=256)).resize((64, 64), Image.BILINEAR)
    diff = np.abs(np.asarray(shown, np.int16) - contract.to_pixels(image).astype(np.int16))
    assert diff.mean() < 12  # same crop (a shifted or uncropped view differs by ~60 on this noise photo)


def test_explain_image_ranks_like_the_model(bundle, query):
    expl = explain_image(bundle, query, "xgradcam", top_k=2)
    assert len(expl.matches) == 2 and expl.matches[0][1] >= expl.matches[1][1]
    assert expl.maps.shape[0] == 2 and expl.pixels.shape == (320, 320, 3) and expl.seconds > 0


def test_unreadable_image_is_a_one_line_error(tiny_bundle, tmp_path):
    bad = tmp_path / "broken.jpg"
    truncated_jpeg(bad)
    assert_one_line_error(run_cli(main, [bad, "--bundle", tiny_bundle, "--out", tmp_path / "out"]), str(bad))
    assert not (tmp_path / "out").exists()


def test_unknown_method_is_refused(tiny_bundle, query, bundle):
    result = run_cli(main, [query, "--bundle", tiny_bundle, "--method", "magic"])
    assert result.exit_code == 2 and "Invalid value for '--method'" in result.output
    with pytest.raises(ArtefactError, match="unknown saliency method 'magic'"):
        saliency(bundle.model, _input(bundle, query), [0], "magic")


def test_bundle_without_a_convolutional_map(tmp_path, query):
    """A ViT has only tokens: CAM methods refuse in one line, the input gradient still works."""
    torch.manual_seed(0)
    vit = save_bundle(tmp_path / "vit", create_model("test_vit", num_classes=3, pretrained=False),
                      [Label("a"), Label("b"), Label("c")], Preprocess(input_size=160))
    assert_one_line_error(run_cli(main, [query, "--bundle", vit, "--out", tmp_path / "out"]),
                          "'test_vit' has no convolutional feature map", "--method gradient")
    result = run_cli(main, [query, "--bundle", vit, "--method", "gradient", "--top-k", 1, "--out", tmp_path / "out"])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "out").glob("*-gradient-top1-*.png"))) == 1
