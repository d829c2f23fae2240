"""Field photos: catalogue objects cut out with their masks and composited into cluttered scenes.

A field photo of a studio photo keeps its object and label but changes everything else the
way a photo taken at a border post or market stall would: the object is cut out with its mask,
scaled (0.4-1.0 of its studio size), rotated (+-30 deg) and placed at random on a cluttered
background, then the whole picture gets a brightness / contrast / white-balance shift, blur and
JPEG re-compression.  Nothing is downloaded: backgrounds are photos bundled with scikit-image
and procedural clutter.  Every photo draws its parameters from (seed, object, file name), so the
same seed gives byte-identical images in any order.

Two disjoint background pools keep the benchmark honest: ``"bench"`` (the field benchmark) and
``"train"`` (the ``field`` training augmentation, `FieldAugment`).

Masks live in ``<root>/masks/...`` mirroring ``<root>/images/...`` (ETH-80 and `artefact.synth`
write them); where there is none, `estimate_mask` separates the object from a plain backdrop.
"""
from __future__ import annotations

import functools
import io
import math
import os
import tempfile
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter
from tqdm.auto import tqdm

from .atomic import atomic_dir, atomic_path
from .data import Sample, write_manifest
from .errors import ArtefactError
from .images import load_image
from .infer import PhotoDataset

# scikit-image's bundled photos (no download), split so training never sees a benchmark backdrop.
BENCH_PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png",
                "brick.png", "gravel.png", "grass.png")
TRAIN_PHOTOS = ("camera.png", "coins.png", "page.png", "text.png", "moon.png", "ihc.png", "retina.jpg",
                "color.png", "clock_motion.png", "cell.png", "hubble_deep_field.jpg", "logo.png")
POOLS = {"bench": BENCH_PHOTOS, "train": TRAIN_PHOTOS}
PROCEDURAL_SHARE = {"bench": 0.3, "train": 0.5}
SCALE = (0.4, 1.0)
ROTATION = 30.0
JPEG_QUALITY = (30, 85)


# ---------------------------------------------------------------- masks

def mask_path(image_path: str | os.PathLike) -> Path | None:
    """`<root>/masks/.../<name>.png` for `<root>/images/.../<name>.*`, if that file exists."""
    parts = Path(image_path).parts
    if "images" not in parts:
        return None
    at = len(parts) - 1 - parts[::-1].index("images")
    candidate = Path(*parts[:at], "masks", *parts[at + 1:]).with_suffix(".png")
    return candidate if candidate.is_file() else None


def load_mask(path: str | os.PathLike, size: tuple[int, int]) -> Image.Image:
    """A mask file as an 'L' image (255 = object) of `size`."""
    try:
        with Image.open(path) as opened:
            mask = opened.convert("L")
    except OSError as err:
        raise ArtefactError(f"{path}: cannot read mask ({err})") from None
    if mask.size != size:
        mask = mask.resize(size, Image.NEAREST)
    return mask.point(lambda v: 255 if v > 127 else 0)


def estimate_mask(image: Image.Image) -> Image.Image:
    """Foreground heuristic for a studio photo without a mask: what differs from the border colour.

    Colour distance to the median border pixel, Otsu threshold, closing, hole filling and the
    largest component; a centred ellipse when that finds nothing plausible (<2% or >90% of the frame).
    """
    from skimage.filters import threshold_otsu

    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    h, w, _ = pixels.shape
    band = max(2, min(h, w) // 32)
    border = np.concatenate([pixels[:band].reshape(-1, 3), pixels[-band:].reshape(-1, 3),
                             pixels[:, :band].reshape(-1, 3), pixels[:, -band:].reshape(-1, 3)])
    distance = np.linalg.norm(pixels - np.median(border, axis=0), axis=2)
    foreground = distance > max(threshold_otsu(distance) if distance.max() > distance.min() else 0, 20.0)
    from scipy import ndimage  # only here: scipy costs every CLI's start-up otherwise

    foreground = ndimage.binary_fill_holes(ndimage.binary_closing(foreground, iterations=2))
    labelled, count = ndimage.label(foreground)
    if count:
        sizes = ndimage.sum(foreground, labelled, range(1, count + 1))
        foreground = labelled == (1 + int(np.argmax(sizes)))
    if not 0.02 < foreground.mean() < 0.9:
        yy, xx = np.mgrid[0:h, 0:w]
        foreground = ((xx - w / 2) / (0.35 * w)) ** 2 + ((yy - h / 2) / (0.4 * h)) ** 2 <= 1
    return Image.fromarray(foreground.astype(np.uint8) * 255, mode="L")


def object_mask(image: Image.Image, image_path: str | os.PathLike | None = None) -> Image.Image:
    """The object's mask: the dataset's mask file when there is one, else `estimate_mask`."""
    path = mask_path(image_path) if image_path is not None else None
    return load_mask(path, image.size) if path is not None else estimate_mask(image)


# ---------------------------------------------------------------- backgrounds

@functools.lru_cache(maxsize=None)
def _bundled_photo(name: str) -> Image.Image:
    import skimage.data

    path = Path(skimage.data.__file__).parent / name
    if not path.is_file():
        raise ArtefactError(f"{path}: scikit-image's bundled photo is missing (reinstall scikit-image)")
    with Image.open(path) as opened:
        return opened.convert("RGB")


def _procedural(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """Cluttered table top: smooth two-colour noise plus random boxes, discs and strokes."""
    w, h = size
    coarse = rng.random((int(rng.integers(3, 9)), int(rng.integers(3, 9))))
    noise = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC), np.float32) / 255
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    canvas = noise[..., None] * a + (1 - noise[..., None]) * b + rng.normal(0, rng.uniform(2, 15), (h, w, 3))
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(4, 16))):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        x0, y0 = rng.uniform(-0.2, 1.0, 2) * (w, h)
        x1, y1 = (x0, y0) + rng.uniform(0.05, 0.5, 2) * (w, h)
        kind = rng.integers(3)
        if kind == 0:
            draw.rectangle([x0, y0, x1, y1], fill=colour)
        elif kind == 1:
            draw.ellipse([x0, y0, x1, y1], fill=colour)
        else:
            draw.line([x0, y0, x1, y1], fill=colour, width=int(rng.integers(1, max(2, w // 20))))
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 2)))


def background(rng: np.random.Generator, size: tuple[int, int], pool: str = "bench") -> Image.Image:
    """A cluttered RGB background of `size`: a random crop of a bundled photo or procedural clutter."""
    if pool not in POOLS:
        raise ArtefactError(f"unknown background pool {pool!r} (expected one of {', '.join(POOLS)})")
    if rng.random() < PROCEDURAL_SHARE[pool]:
        return _procedural(rng, size)
    photo = _bundled_photo(POOLS[pool][int(rng.integers(len(POOLS[pool])))])
    side = int(min(photo.size) * rng.uniform(0.35, 1.0))
    left = int(rng.integers(0, photo.width - side + 1))
    top = int(rng.integers(0, photo.height - side + 1))
    crop = photo.crop((left, top, left + side, top + side)).resize(size, Image.BILINEAR)
    if rng.random() < 0.5:
        crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
    if POOLS[pool] is TRAIN_PHOTOS:  # many training photos are grey: tint them
        crop = Image.fromarray(np.clip(np.asarray(crop, np.float32) * rng.uniform(0.6, 1.3, 3), 0, 255).astype(np.uint8))
    return crop


# ---------------------------------------------------------------- compositing

def composite(image: Image.Image, mask: Image.Image, rng: np.random.Generator, pool: str = "bench",
              scale: tuple[float, float] = SCALE, rotation: float = ROTATION) -> Image.Image:
    """Cut the object out with `mask` and place it, scaled and rotated, on a cluttered background."""
    box = mask.getbbox()
    if box is None:  # empty mask: keep the photo as it is
        box = (0, 0, *image.size)
        mask = Image.new("L", image.size, 255)
    cut, alpha = image.crop(box), mask.crop(box)
    factor = rng.uniform(*scale)
    new_size = (max(4, round(cut.width * factor)), max(4, round(cut.height * factor)))
    cut, alpha = cut.resize(new_size, Image.BILINEAR), alpha.resize(new_size, Image.BILINEAR)
    angle = rng.uniform(-rotation, rotation)
    cut = cut.rotate(angle, Image.BILINEAR, expand=True)
    alpha = alpha.rotate(angle, Image.BILINEAR, expand=True)
    fit = min(1.0, image.width / cut.width, image.height / cut.height)
    if fit < 1.0:  # rotation grew it past the frame
        fitted = (max(4, int(cut.width * fit)), max(4, int(cut.height * fit)))
        cut, alpha = cut.resize(fitted, Image.BILINEAR), alpha.resize(fitted, Image.BILINEAR)
    scene = background(rng, image.size, pool)
    x = int(rng.integers(0, image.width - cut.width + 1))
    y = int(rng.integers(0, image.height - cut.height + 1))
    scene.paste(cut, (x, y), alpha.filter(ImageFilter.GaussianBlur(0.6)))
    return scene


def photometric(image: Image.Image, rng: np.random.Generator, strength: float = 1.0) -> Image.Image:
    """Brightness, contrast and white-balance shift, blur, then JPEG re-compression."""
    image = ImageEnhance.Brightness(image).enhance(1 + strength * rng.uniform(-0.4, 0.4))
    image = ImageEnhance.Contrast(image).enhance(1 + strength * rng.uniform(-0.4, 0.4))
    gains = 1 + strength * rng.uniform(-0.2, 0.2, 3)
    image = Image.fromarray(np.clip(np.asarray(image, np.float32) * gains, 0, 255).astype(np.uint8))
    image = image.filter(ImageFilter.GaussianBlur(strength * rng.uniform(0, 1.5)))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(rng.integers(*JPEG_QUALITY)))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def photo_rng(seed: int, sample: Sample) -> np.random.Generator:
    """The random stream of one field photo: fixed by seed, object and file name (not by order)."""
    key = f"{sample.object_id}/{Path(sample.path).name}".encode("utf-8")
    return np.random.default_rng([seed, zlib.crc32(key)])


def field_photo(sample: Sample, seed: int = 0) -> Image.Image:
    """The field version of one studio photo."""
    image = load_image(sample.path)
    rng = photo_rng(seed, sample)
    return photometric(composite(image, object_mask(image, sample.path), rng, "bench"), rng)


def write_field_set(samples: Sequence[Sample], out: str | os.PathLike, seed: int = 0,
                    progress: bool = True) -> list[Sample]:
    """Write field versions of `samples` to `out/images/<collection>/<object>/` plus `out/manifest.csv`.

    Returns the field samples (same objects, collections and splits; paths inside `out`).
    The folder appears only when complete.
    """
    out = Path(out)
    field: list[Sample] = []
    with atomic_dir(out) as tmp:
        for sample in tqdm(samples, desc="field photos", unit="img", disable=not progress, leave=False):
            relative = Path("images", sample.collection or "-", sample.object_id, Path(sample.path).stem + ".jpg")
            (tmp / relative).parent.mkdir(parents=True, exist_ok=True)
            field_photo(sample, seed).save(tmp / relative, quality=95)
            field.append(replace(sample, path=str(out / relative)))
        write_manifest([replace(s, path=str(tmp / Path(s.path).relative_to(out))) for s in field], tmp / "manifest.csv")
    return field


def contact_sheet(samples: Sequence[Sample], path: str | os.PathLike, columns: int = 8, thumb: int = 96) -> Path:
    """A grid of the first photos of `samples` (for a person to see what the benchmark looks like)."""
    shown = list(samples)[: columns * 4]
    if not shown:
        raise ArtefactError("no photos for a contact sheet")
    rows = math.ceil(len(shown) / columns)
    sheet = Image.new("RGB", (columns * thumb, rows * thumb), (255, 255, 255))
    for i, sample in enumerate(shown):
        sheet.paste(load_image(sample.path).resize((thumb, thumb), Image.BILINEAR), ((i % columns) * thumb, (i // columns) * thumb))
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
    return Path(path)


# ---------------------------------------------------------------- training augmentation

class FieldAugment:
    """Training transform (PIL -> PIL): background replacement + strong photometric jitter.

    The object mask is ``image.info["artefact_mask"]`` (the dataset's mask file, attached by
    `MaskedPhotoDataset`) or else `estimate_mask`, stored there so that a cached photo is
    segmented once.  With probability `p` the object is composited onto a ``"train"``-pool
    background (never a benchmark one); every photo then gets a random-strength photometric shift.
    """

    def __init__(self, p: float = 0.7, seed: int | None = None):
        self.p = p
        self.rng = np.random.default_rng(np.random.randint(2**31) if seed is None else seed)

    def __call__(self, image: Image.Image) -> Image.Image:
        if self.rng.random() < self.p:
            if "artefact_mask" not in image.info:
                image.info["artefact_mask"] = estimate_mask(image)
            image = composite(image, image.info["artefact_mask"], self.rng, "train")  # the benchmark's geometry, other backdrops
        return photometric(image, self.rng, strength=float(self.rng.uniform(0.3, 1.0)))

    def __repr__(self) -> str:
        return f"FieldAugment(p={self.p})"


class MaskedPhotoDataset(PhotoDataset):
    """`PhotoDataset` whose photos carry their mask file (if any) in ``image.info["artefact_mask"]``."""

    def image(self, index: int) -> Image.Image:
        image = super().image(index)
        if "artefact_mask" not in image.info and (path := mask_path(self.samples[index].path)) is not None:
            image.info["artefact_mask"] = load_mask(path, image.size)
        return image


def field_tempdir() -> tempfile.TemporaryDirectory:
    """A scratch folder (context manager) for a benchmark's field photos."""
    return tempfile.TemporaryDirectory(prefix="artefact-field-")
