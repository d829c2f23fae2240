"""Batch inference and ranking shared by evaluation, prediction, export parity and benchmarks."""
from __future__ import annotations

import logging
import os
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from .contract import Preprocess
from .data import Sample
from .images import ImageDecodeError, load_image

log = logging.getLogger("artefact")


class PhotoDataset(torch.utils.data.Dataset):
    """Photos -> (input tensor, label index); decoded images can be cached in memory."""

    def __init__(
        self,
        samples: Sequence[Sample],
        transform: Callable[[Image.Image], np.ndarray | torch.Tensor],
        label_index: dict[str, int] | None = None,
        cache: bool = False,
    ):
        self.samples = list(samples)
        self.transform = transform
        self.label_index = label_index
        self._cache: dict[int, Image.Image] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.samples)

    def image(self, index: int) -> Image.Image:
        if self._cache is None:
            return load_image(self.samples[index].path)
        if index not in self._cache:
            self._cache[index] = load_image(self.samples[index].path)
        return self._cache[index]

    def __getitem__(self, index: int):
        x = self.transform(self.image(index))
        x = torch.from_numpy(x) if isinstance(x, np.ndarray) else x
        y = self.label_index[self.samples[index].object_id] if self.label_index else -1
        return x, y


def validate_photos(samples: Sequence[Sample], progress: bool = True) -> tuple[list[Sample], list[str]]:
    """Decode every photo once; returns (readable samples, one message per unreadable photo)."""
    good, bad = [], []
    for s in tqdm(samples, desc="checking photos", unit="img", disable=not progress, leave=False):
        try:
            load_image(s.path)
            good.append(s)
        except ImageDecodeError as err:
            bad.append(str(err))
    return good, bad


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def set_cpu_threads() -> None:
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


@torch.no_grad()
def predict_logprobs(
    model: torch.nn.Module,
    preprocess: Preprocess,
    samples: Sequence[Sample],
    batch_size: int = 32,
    device: str | None = None,
    desc: str = "predicting",
    progress: bool = True,
) -> np.ndarray:
    """Log-probabilities (N, n_objects) of `model` on photos, preprocessed by the contract."""
    device = device or default_device()
    model = model.to(device).eval()
    loader = torch.utils.data.DataLoader(PhotoDataset(samples, preprocess), batch_size=batch_size, shuffle=False)
    outputs = []
    for x, _ in tqdm(loader, desc=desc, unit="batch", disable=not progress, leave=False):
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")):
            outputs.append(model(x.to(device)).float().cpu().numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), np.float32)


def topk_accuracy(logprobs: np.ndarray, targets: np.ndarray, ks: Sequence[int] = (1, 3, 5, 10)) -> dict[str, float]:
    """{'top1': ..., 'top3': ...} as fractions; k larger than the number of objects counts as all."""
    order = np.argsort(-logprobs, axis=1)
    ranks = np.argmax(order == targets[:, None], axis=1)
    return {f"top{k}": float(np.mean(ranks < k)) for k in ks}


def rank_of_target(logprobs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of the true object in each row."""
    order = np.argsort(-logprobs, axis=1)
    return np.argmax(order == targets[:, None], axis=1)
