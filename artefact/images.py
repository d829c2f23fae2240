"""Robust photo decoding: every odd file a field agent may hand us becomes 8-bit RGB or a clear error."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ArtefactError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
MIN_SIDE = 16
Image.MAX_IMAGE_PIXELS = 200_000_000  # large scans are fine; decompression bombs are not


class ImageDecodeError(ArtefactError):
    """A file that is not a usable photo (corrupt, truncated, tiny, not an image)."""


def is_image_file(path: str | os.PathLike) -> bool:
    name = Path(path).name
    return not name.startswith(".") and Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _to_8bit_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        high = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        array = np.clip(array / high * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(array, mode="L").convert("RGB")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")  # L, CMYK (PIL undoes Adobe's inversion), YCbCr, ...


def load_image(path: str | os.PathLike) -> Image.Image:
    """Decode a photo as an upright 8-bit RGB image, or raise ImageDecodeError naming the file.

    Handles EXIF orientation, grayscale, palette, RGBA (composited on white), CMYK and
    16-bit images; rejects corrupt, truncated, non-image and tiny files.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageDecodeError(f"{path}: no such image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                opened.load()
                image = ImageOps.exif_transpose(opened)
                image = _to_8bit_rgb(image)
    except UnidentifiedImageError:
        raise ImageDecodeError(f"{path}: not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageDecodeError(f"{path}: cannot decode image ({err})") from None
    if min(image.size) < MIN_SIDE:
        raise ImageDecodeError(f"{path}: image too small ({image.size[0]}x{image.size[1]}, need >= {MIN_SIDE} px)")
    return image
