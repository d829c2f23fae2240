"""artefact-explain: which pixels of a photo drove each of its top matches.

Saliency comes from pytorch-grad-cam (Grad-CAM, Grad-CAM++, XGrad-CAM, LayerCAM, HiResCAM,
EigenCAM) on the backbone's last spatial feature map, or from the plain input
gradient ('gradient'). Maps are computed for the class score before the softmax, on exactly the
pixels the model saw (the bundle's preprocessing contract), and drawn over that centre crop.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import click
import numpy as np
import torch
from PIL import Image
from torch import nn

from artefact import atomic
from artefact.bundle import Bundle, Label, load_bundle
from artefact.contract import Preprocess
from artefact.data import Sample, natural_key, read_manifest
from artefact.errors import ArtefactError, Command
from artefact.images import load_image
from artefact.logs import setup_logging
from artefact.model import ArtefactNet

log = logging.getLogger("artefact")

# --method name -> pytorch_grad_cam class name; EigenCAM is class-agnostic (one map for every match).
CAM_METHODS = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "xgradcam": "XGradCAM", "layercam": "LayerCAM",
               "hirescam": "HiResCAM", "eigencam": "EigenCAM"}  # Score-CAM: ~5 min a photo on CPU
METHODS = (*CAM_METHODS, "gradient")
# Grad-CAM's weighted sum can be negative everywhere -> an empty map: the head's BatchNorm1d makes evidence
# relative to the average photo, not to zero. Grad-CAM++ weighs positive gradients only, so it always shows some.
DEFAULT_METHOD = "gradcam++"
DISPLAY_SIDE = 320  # pixels of the overlays (the model's crop, resized)


class ClassScores(nn.Module):
    """ArtefactNet up to the class scores before the softmax (what saliency should explain)."""

    def __init__(self, net: ArtefactNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.head(self.net.features(x))


def target_layer(model: ArtefactNet, input_size: int) -> tuple[str, nn.Module]:
    """(name, module) of the backbone module that outputs its last spatial feature map.

    For EfficientNet-Lite this is `bn2` (conv_head + BatchNorm + ReLU6): the map that global
    pooling averages, so Grad-CAM there is the classic class activation map.
    """
    outputs: dict[str, torch.Tensor] = {}
    named = [(name, module) for name, module in model.backbone.named_modules() if name]
    hooks = [module.register_forward_hook(lambda _m, _i, out, name=name: outputs.__setitem__(name, out))
             for name, module in named]
    try:
        with torch.no_grad():
            fmap = model.backbone.forward_features(torch.zeros(1, 3, input_size, input_size))
    finally:
        for hook in hooks:
            hook.remove()
    what = f"backbone {model.backbone_name!r}"
    if not isinstance(fmap, torch.Tensor) or fmap.ndim != 4:
        shape = tuple(fmap.shape) if isinstance(fmap, torch.Tensor) else type(fmap).__name__
        raise ArtefactError(f"{what} has no convolutional feature map (its features are {shape}); "
                            f"CAM methods need one, use --method gradient")
    producers = [name for name, _ in named if outputs.get(name) is fmap]
    if not producers:
        raise ArtefactError(f"{what}: no module outputs its final feature map; CAM methods cannot hook it, "
                            f"use --method gradient")
    name = min(producers, key=lambda n: n.count("."))  # the outermost module (bn2, not bn2.act)
    return name, model.backbone.get_submodule(name)


def saliency(model: ArtefactNet, x: torch.Tensor, targets: Sequence[int], method: str = DEFAULT_METHOD) -> np.ndarray:
    """Saliency maps (len(targets), H, W) in [0, 1] of one input (1, 3, H, W), one per target class."""
    if method not in METHODS:
        raise ArtefactError(f"unknown saliency method {method!r} (choose from {', '.join(METHODS)})")
    scores = ClassScores(model.eval())
    batch = x.repeat(len(targets), 1, 1, 1)
    if method == "gradient":
        return _input_gradient(scores, batch, targets)
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    _, layer = target_layer(model, x.shape[-1])
    with getattr(pytorch_grad_cam, CAM_METHODS[method])(model=scores, target_layers=[layer]) as cam:
        maps = cam(input_tensor=batch, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    return np.nan_to_num(np.asarray(maps, dtype=np.float32))


def _input_gradient(scores: nn.Module, batch: torch.Tensor, targets: Sequence[int]) -> np.ndarray:
    """|d score / d pixel|, max over colour channels, scaled by its 99th percentile (Simonyan et al. 2014).

    Plain autograd: captum would add a dependency for these few lines, and pytorch-grad-cam's
    guided backprop only rewires nn.ReLU (EfficientNet-Lite uses ReLU6).
    """
    batch = batch.clone().requires_grad_(True)
    out = scores(batch)
    out[torch.arange(len(targets)), torch.as_tensor(list(targets))].sum().backward()
    maps = batch.grad.abs().amax(dim=1).numpy()
    scale = np.percentile(maps.reshape(len(maps), -1), 99, axis=1)[:, None, None]
    return np.clip(maps / np.maximum(scale, 1e-12), 0, 1).astype(np.float32)


def overlay(pixels: np.ndarray, heat: np.ndarray, weight: float = 0.5) -> np.ndarray:
    """A saliency map (any size, [0, 1]) drawn as a JET heat map over uint8 RGB pixels."""
    import cv2
    from pytorch_grad_cam.utils.image import show_cam_on_image

    heat = cv2.resize(heat, pixels.shape[1::-1], interpolation=cv2.INTER_LINEAR)
    return show_cam_on_image(pixels.astype(np.float32) / 255.0, np.clip(heat, 0, 1), use_rgb=True, image_weight=weight)


def display_pixels(image: Image.Image, preprocess: Preprocess, side: int = DISPLAY_SIDE) -> np.ndarray:
    """The contract's centre crop of a photo at display resolution (uint8 HWC)."""
    return np.asarray(image.crop(preprocess.crop_box(*image.size)).resize((side, side), Image.BILINEAR))


@dataclass
class Explanation:
    image: str
    method: str
    matches: list[tuple[Label, float]]  # best first
    maps: np.ndarray  # (k, input_size, input_size) in [0, 1]
    pixels: np.ndarray  # the model's crop at display resolution
    seconds: float


def explain_image(bundle: Bundle, path: str | Path, method: str = DEFAULT_METHOD, top_k: int = 3) -> Explanation:
    """Rank the catalogue for one photo and compute a saliency map for each of its top-k matches."""
    start = time.perf_counter()
    image = load_image(path)
    x = torch.from_numpy(bundle.preprocess(image))[None]
    with torch.no_grad():
        probs = np.exp(bundle.model.eval()(x)[0].numpy())
    order = np.argsort(-probs)[: min(top_k, len(probs))]
    maps = saliency(bundle.model, x, order.tolist(), method)
    return Explanation(str(path), method, [(bundle.labels[i], float(probs[i])) for i in order], maps,
                       display_pixels(image, bundle.preprocess), time.perf_counter() - start)


def catalogue_photos(samples: Iterable[Sample]) -> dict[str, str]:
    """object id -> its first catalogue (train split) photo that exists on disk."""
    first: dict[str, str] = {}
    for s in sorted(samples, key=lambda s: natural_key(s.path)):
        if s.split == "train" and s.object_id not in first and Path(s.path).is_file():
            first[s.object_id] = s.path
    return first


def save_png(array: np.ndarray, path: Path) -> Path:
    with atomic.atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
    return path


def write_explanation(expl: Explanation, out: Path, preprocess: Preprocess, catalogue: dict[str, str]) -> dict:
    """One overlay PNG per match and a summary figure (photo, overlays, catalogue photos); returns the record."""
    stem = Path(expl.image).stem
    overlays = [save_png(overlay(expl.pixels, m), out / f"{stem}-{expl.method}-top{rank}-{label.object_id}.png")
                for rank, ((label, _), m) in enumerate(zip(expl.matches, expl.maps), 1)]
    summary = plot_explanation(expl, overlays, preprocess, catalogue, out / f"{stem}-{expl.method}.png")
    return {"image": expl.image, "method": expl.method, "seconds": round(expl.seconds, 3), "summary": summary.name,
            "matches": [{"rank": rank, "object": label.object_id, "collection": label.collection,
                         "probability": round(p, 4), "overlay": path.name, "empty_map": bool(heat.max() <= 0)}
                        for rank, ((label, p), path, heat) in enumerate(zip(expl.matches, overlays, expl.maps), 1)]}


def plot_explanation(expl: Explanation, overlays: list[Path], preprocess: Preprocess, catalogue: dict[str, str],
                     path: Path) -> Path:
    """Top row: the photo and one overlay per match; bottom row (when known): a catalogue photo of each match."""
    plt = pyplot()
    rows = 2 if catalogue else 1
    cols = len(overlays) + 1
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.9 * rows), dpi=110, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    axes[0, 0].imshow(expl.pixels)
    axes[0, 0].set_title(Path(expl.image).name, fontsize=8)
    for col, ((label, p), file, heat) in enumerate(zip(expl.matches, overlays, expl.maps), 1):
        axes[0, col].imshow(Image.open(file))
        note = "no positive evidence" if heat.max() <= 0 else expl.method
        axes[0, col].set_title(f"{col}. {label.object_id} {p:.1%}\n{note}", fontsize=8)
        if catalogue and label.object_id in catalogue:
            axes[1, col].imshow(preprocess.to_pixels(load_image(catalogue[label.object_id])))
            axes[1, col].set_title(f"catalogue: {label.object_id}", fontsize=8)
    if catalogue:
        axes[1, 0].text(0.5, 0.5, "catalogue photo\nof each match", ha="center", va="center", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    """Write a matplotlib figure as PNG atomically and free it."""
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    pyplot().close(fig)
    return path


@click.command(cls=Command, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--bundle", type=click.Path(file_okay=False), help="Bundle folder (default: the latest trained).")
@click.option("--method", "-m", type=click.Choice(METHODS), default=DEFAULT_METHOD, show_default=True,
              help="Saliency method: Grad-CAM family on the last feature map (eigencam: one class-agnostic map), "
                   "or the plain input gradient.")
@click.option("--top-k", default=3, show_default=True, type=click.IntRange(1), help="Explain this many best matches.")
@click.option("--out", "-o", default="reports/explain", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the overlay PNGs, a summary figure per photo and explain.json.")
def main(images, bundle, method, top_k, out) -> None:
    """Show which pixels of each photo drove its top matches: saliency overlays per match.

    Matches are the trained objects ranked by the classifier head (as artefact-predict --head-only);
    objects only enrolled in a gallery are not explained.
    """
    setup_logging()
    loaded = load_bundle(bundle)
    for path in images:  # fail on a bad photo before any work
        load_image(path)
    out = Path(out)
    catalogue = catalogue_photos(read_manifest(loaded.manifest, check_files=False)) if loaded.manifest else {}
    records = []
    for path in images:
        expl = explain_image(loaded, path, method, top_k)
        records.append(write_explanation(expl, out, loaded.preprocess, catalogue))
        click.echo(f"{path}  ({expl.seconds:.2f} s)")
        for match in records[-1]["matches"]:
            click.echo(f"  {match['rank']}. {match['object']:<24} {match['collection']:<16} "
                       f"{match['probability']:>6.1%}  {out / match['overlay']}")
        click.echo(f"  summary: {out / records[-1]['summary']}")
        if any(m["empty_map"] for m in records[-1]["matches"]):
            log.warning(f"warning: {method} found no positive evidence for some matches of {path} (empty overlay); "
                        f"try --method gradcam++ or layercam")
    atomic.write_json(out / "explain.json", {"bundle": str(loaded.path), "explanations": records})
