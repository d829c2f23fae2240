"""Training: the Durham study's recipe (Adam, inverse-frequency weighted NLL) with resume and early stopping."""
from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms import v2
from tqdm.auto import tqdm

from artefact import atomic
from artefact.bundle import MANIFEST_FILE, Label, mark_latest, save_bundle
from artefact.contract import Preprocess
from artefact.data import (
    Sample, filter_min_images, format_summary, labels_of, load_samples, manifest_text, museum_protocol, summarize,
)
from artefact.errors import ArtefactError
from artefact.field import FieldAugment, MaskedPhotoDataset
from artefact.infer import PhotoDataset, default_device, set_cpu_threads, topk_accuracy, validate_photos
from artefact.model import DEFAULT_BACKBONE, ArtefactNet, create_model, default_preprocess

log = logging.getLogger("artefact")
PAPER_LR = 10 ** -4.8


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in the bundle)."""

    data: str
    out: str
    backbone: str = DEFAULT_BACKBONE
    weights: str | None = None
    pretrained: bool = True
    input_size: int | None = None
    epochs: int = 25
    batch_size: int = 32
    lr: float = PAPER_LR
    head_lr: float = 1e-3
    patience: int = 6
    min_images: int = 3
    seed: int = 0
    augment: str = "standard"
    metric_loss: str = "none"  # "arcface": sub-center ArcFace on the pooled features, added to the paper's loss
    metric_weight: float = 1.0
    device: str = field(default_factory=default_device)
    max_minutes: float | None = None


def train_transform(preprocess: Preprocess, strength: str = "standard") -> v2.Compose:
    """Augmentation for new photos of the same object: crop, flip, rotation, colour jitter."""
    size = preprocess.input_size
    steps = [
        v2.RandomResizedCrop(size, scale=(0.55, 1.0), ratio=(0.8, 1.25), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomRotation(20),
        v2.ColorJitter(0.3, 0.3, 0.25, 0.03),
    ]
    if strength == "none":
        steps = [v2.Resize((size, size), antialias=True)]
    if strength == "field":  # cluttered-background compositing + strong photometric shifts first
        steps = [FieldAugment()] + steps
    steps += [
        v2.PILToTensor(),
        v2.ToDtype(torch.float32),
        v2.Normalize(list(preprocess.mean), list(preprocess.std)),
    ]
    return v2.Compose(steps)


def class_weights(samples: list[Sample], label_index: dict[str, int]) -> torch.Tensor:
    """Inverse class frequency, normalised so the rarest object weighs 1 (as the reference code)."""
    counts = np.bincount([label_index[s.object_id] for s in samples], minlength=len(label_index)).astype(np.float64)
    inverse = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
    return torch.tensor(inverse / inverse.max(), dtype=torch.float32)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare_splits(config: TrainConfig, progress: bool = True) -> list[Sample]:
    """Read data, drop unreadable photos and small objects, split by the museum protocol if unsplit."""
    samples = load_samples(config.data)
    samples, unreadable = validate_photos(samples, progress)
    for message in unreadable:
        log.warning("skipped %s", message)
    samples, dropped = filter_min_images(samples, config.min_images)
    if dropped:
        log.warning("dropped %d object(s) with fewer than %d photos", len(dropped), config.min_images)
    if not samples:
        raise ArtefactError(f"{config.data}: no object has at least {config.min_images} readable photos")
    if not all(s.split for s in samples):
        samples = museum_protocol(samples, seed=config.seed)
    log.info("%s", format_summary(summarize(samples)))
    if not any(s.split == "train" for s in samples) or not any(s.split == "val" for s in samples):
        raise ArtefactError(f"{config.data}: need photos in both 'train' and 'val' splits")
    return samples


METRIC_LOSSES = ("none", "arcface")


def build_metric_loss(config: TrainConfig, num_classes: int, dim: int) -> torch.nn.Module | None:
    """Sub-center ArcFace (pytorch-metric-learning) on the pooled features, or None.

    It shapes the embedding the gallery uses (enrolment, unknown rejection) with an angular margin;
    its class centres are training-only and are not saved in the bundle.
    """
    if config.metric_loss not in METRIC_LOSSES:
        raise ArtefactError(f"unknown metric loss {config.metric_loss!r} (choose from {', '.join(METRIC_LOSSES)})")
    if config.metric_loss == "none":
        return None
    from pytorch_metric_learning.losses import SubCenterArcFaceLoss

    return SubCenterArcFaceLoss(num_classes=num_classes, embedding_size=dim)


def build_optimizer(model: ArtefactNet, config: TrainConfig, metric: torch.nn.Module | None = None) -> torch.optim.Optimizer:
    """Adam; the pretrained backbone at the paper's lr, the fresh head (and metric centres) at `head_lr`."""
    groups = [
        {"params": model.backbone.parameters(), "lr": config.lr},
        {"params": model.head.parameters(), "lr": config.head_lr},
    ]
    if metric is not None:
        groups.append({"params": metric.parameters(), "lr": config.head_lr})
    return torch.optim.Adam(groups)


@torch.no_grad()
def evaluate_split(model: ArtefactNet, loader, device: str, weights: torch.Tensor) -> dict:
    model.eval()
    outputs, targets = [], []
    for x, y in loader:
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")):
            outputs.append(model(x.to(device)).float().cpu())
        targets.append(y)
    logprobs, target = torch.cat(outputs), torch.cat(targets)
    loss = torch.nn.functional.nll_loss(logprobs, target, weight=weights).item()
    return {"loss": loss, **topk_accuracy(logprobs.numpy(), target.numpy(), (1, 5))}


def train(config: TrainConfig, resume: bool = False, progress: bool = True, mark_as_latest: bool = True) -> Path:
    """Train a bundle into `config.out`; returns its path. Resumable after an interruption.

    `mark_as_latest` records it in runs/LATEST as the default bundle of later commands.
    """
    set_cpu_threads()
    seed_everything(config.seed)
    out = Path(config.out)
    resume_path = out.parent / f".{out.name}.resume" / "state.pt"
    state = _load_resume_state(resume_path, config) if resume else None

    samples = prepare_splits(config, progress)
    train_samples = [s for s in samples if s.split == "train"]
    val_samples = [s for s in samples if s.split == "val"]
    labels = [Label(obj, col) for obj, col in labels_of(train_samples + val_samples)]
    label_index = {l.object_id: i for i, l in enumerate(labels)}
    missing = sorted({s.object_id for s in val_samples} - {s.object_id for s in train_samples})
    if missing:
        raise ArtefactError(f"objects with validation but no training photos: {', '.join(missing[:5])}")
    preprocess = default_preprocess(config.backbone, config.input_size)

    model = create_model(config.backbone, len(labels), pretrained=(config.weights or config.pretrained)).to(config.device)
    metric = build_metric_loss(config, len(labels), model.num_features)
    if metric is not None:
        metric = metric.to(config.device)
    optimizer = build_optimizer(model, config, metric)
    weights = class_weights(train_samples, label_index).to(config.device)
    train_loader = torch.utils.data.DataLoader(
        (MaskedPhotoDataset if config.augment == "field" else PhotoDataset)(
            train_samples, train_transform(preprocess, config.augment), label_index, cache=True),
        batch_size=config.batch_size, shuffle=True, drop_last=len(train_samples) > config.batch_size,
        generator=torch.Generator().manual_seed(config.seed),
    )
    val_loader = torch.utils.data.DataLoader(
        PhotoDataset(val_samples, preprocess, label_index, cache=True), batch_size=64,
    )
    history, best, start_epoch, stale = [], None, 0, 0
    best_state = None
    if state is not None:
        if state["labels"] != [asdict(l) for l in labels]:
            raise ArtefactError(f"{resume_path}: saved run has different labels than {config.data}; cannot resume")
        model.load_state_dict(state["model"])
        if metric is not None:
            metric.load_state_dict(state["metric"])
        optimizer.load_state_dict(state["optimizer"])
        best_state, best, history = state["best_model"], state["best"], state["history"]
        start_epoch, stale = state["epoch"] + 1, state["stale"]
        torch.set_rng_state(state["rng"])
        log.info("resumed %s at epoch %d", out, start_epoch + 1)

    started = time.time()
    images_seen = 0
    for epoch in range(start_epoch, config.epochs):
        model.train()
        bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", disable=not progress)
        running_loss, running_correct, running_count = 0.0, 0, 0
        for x, y in bar:
            x, y = x.to(config.device), y.to(config.device)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=config.device.startswith("cuda")):
                features = model.features(x)
                logprobs = torch.log_softmax(model.head(features), dim=1)
            loss = torch.nn.functional.nll_loss(logprobs.float(), y, weight=weights)
            if metric is not None:
                loss = loss + config.metric_weight * metric(features.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running_loss += loss.item() * len(y)
            running_correct += (logprobs.argmax(1) == y).sum().item()
            running_count += len(y)
            images_seen += len(y)
            bar.set_postfix(loss=f"{running_loss / running_count:.3f}", acc=f"{running_correct / running_count:.2f}")
        val = evaluate_split(model, val_loader, config.device, weights)
        record = {"epoch": epoch + 1, "train_loss": running_loss / max(running_count, 1),
                  "train_top1": running_correct / max(running_count, 1), "val_loss": val["loss"],
                  "val_top1": val["top1"], "val_top5": val["top5"], "seconds": round(time.time() - started, 1)}
        history.append(record)
        improved = best is None or (val["top1"], -val["loss"]) > (best["val_top1"], -best["val_loss"])
        if improved:
            best, stale = record, 0
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
        log.info("epoch %d: train loss %.3f top-1 %.3f | val loss %.3f top-1 %.3f top-5 %.3f%s",
                 epoch + 1, record["train_loss"], record["train_top1"], val["loss"], val["top1"], val["top5"],
                 "  (best)" if improved else "")
        _save_resume_state(resume_path, model, optimizer, labels, config, epoch, best_state, best, history, stale, metric)
        out_of_time = config.max_minutes is not None and (time.time() - started) / 60 > config.max_minutes
        if stale >= config.patience or out_of_time:
            log.info("stopping early after epoch %d (%s)", epoch + 1, "time budget" if out_of_time else "no improvement")
            break

    elapsed = time.time() - started
    model.load_state_dict(best_state)
    metrics = {"best_epoch": best["epoch"], "val_top1": best["val_top1"], "val_top5": best["val_top5"],
               "train_seconds": round(elapsed, 1), "train_images_per_second": round(images_seen / max(elapsed, 1e-9), 2),
               "history": history}
    manifest = manifest_text(samples, relative_to=out).encode("utf-8")
    save_bundle(out, model.cpu(), labels, preprocess, train_config=asdict(config), metrics=metrics,
                extra_files={MANIFEST_FILE: manifest})
    if mark_as_latest:
        mark_latest(out)
    resume_path.unlink(missing_ok=True)
    return out


def _save_resume_state(path: Path, model, optimizer, labels, config, epoch, best_state, best, history, stale,
                       metric=None) -> None:
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "labels": [asdict(l) for l in labels],
             "config": json.dumps(asdict(config)), "epoch": epoch, "best_model": best_state, "best": best,
             "history": history, "stale": stale, "rng": torch.get_rng_state()}
    if metric is not None:
        state["metric"] = metric.state_dict()
    with atomic.atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load_resume_state(path: Path, config: TrainConfig) -> dict | None:
    if not path.is_file():
        log.warning("nothing to resume at %s; starting afresh", path)
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise ArtefactError(f"{path}: cannot read resume state ({type(err).__name__}); delete it to start afresh") from None
    saved = json.loads(state["config"])
    for key in ("backbone", "seed", "data", "input_size", "augment", "metric_loss"):
        if saved.get(key, getattr(TrainConfig, key, None)) != getattr(config, key):  # older states lack newer keys
            raise ArtefactError(f"{path}: saved run used {key}={saved.get(key)!r}, not {getattr(config, key)!r}; cannot resume")
    return state
