"""The preprocessing contract: the one definition of how a photo becomes a model input.

It is stored in every bundle and export; training, evaluation, export calibration, the
benchmark, the Android app and the browser client all follow it and never re-derive it.

Steps: decode (EXIF-rotated, RGB, 8 bit) -> centre square crop of side
``crop_fraction * min(w, h)`` -> resize to ``input_size`` x ``input_size`` (bilinear,
PIL semantics) -> uint8 HWC pixels -> ``(pixel - mean) / std`` as float32 NCHW.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image

from .errors import ArtefactError

CONTRACT_VERSION = 1


@dataclass(frozen=True)
class Preprocess:
    """How a decoded RGB photo becomes a model input (mean/std in 0-255 pixel units)."""

    input_size: int = 224
    crop_fraction: float = 1.0
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)
    channel_order: str = "RGB"
    layout: str = "NCHW"
    version: int = field(default=CONTRACT_VERSION)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Preprocess":
        try:
            contract = cls(
                input_size=int(data["input_size"]),
                crop_fraction=float(data.get("crop_fraction", 1.0)),
                interpolation=str(data.get("interpolation", "bilinear")),
                mean=tuple(float(v) for v in data["mean"]),
                std=tuple(float(v) for v in data["std"]),
                channel_order=str(data.get("channel_order", "RGB")),
                layout=str(data.get("layout", "NCHW")),
                version=int(data.get("version", CONTRACT_VERSION)),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ArtefactError(f"invalid preprocessing contract: {err!r}") from None
        if contract.interpolation != "bilinear" or contract.channel_order != "RGB":
            raise ArtefactError(f"unsupported preprocessing contract: {data}")
        return contract

    def crop_box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """Integer (left, top, right, bottom) of the centred square crop."""
        side = max(1, int(round(min(width, height) * self.crop_fraction)))
        left = (width - side) // 2
        top = (height - side) // 2
        return left, top, left + side, top + side

    def to_pixels(self, image: Image.Image) -> np.ndarray:
        """Crop and resize an RGB image: uint8 array (input_size, input_size, 3)."""
        if image.mode != "RGB":
            image = image.convert("RGB")
        square = image.crop(self.crop_box(*image.size))
        resized = square.resize((self.input_size, self.input_size), Image.BILINEAR)
        return np.asarray(resized, dtype=np.uint8)

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 HWC (or NHWC) pixels -> float32 CHW (or NCHW) model input."""
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        normed = (pixels.astype(np.float32) - mean) / std
        return np.ascontiguousarray(np.moveaxis(normed, -1, -3))

    def __call__(self, image: Image.Image) -> np.ndarray:
        """The full contract: RGB image -> float32 (3, input_size, input_size)."""
        return self.normalize(self.to_pixels(image))

    def int8_input_quantization(self) -> tuple[float, int]:
        """(scale, zero_point) so that a uint8 input of raw pixels equals the normalised input.

        Exact only when all channels share mean and std (true for EfficientNet-Lite).
        """
        if len(set(self.mean)) != 1 or len(set(self.std)) != 1:
            raise ArtefactError("per-channel mean/std cannot be folded into one input quantisation")
        return 1.0 / self.std[0], int(round(self.mean[0]))
