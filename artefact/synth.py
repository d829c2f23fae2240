"""Procedural catalogue: N distinct synthetic objects photographed under varied pose, light and background.

Used by tests and by the demo when no real dataset is present; nothing is downloaded.
Each object has a fixed identity (silhouette, palette, surface pattern); each photo varies
rotation, scale, position, aspect (a crude out-of-plane tilt), lighting and background.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .atomic import atomic_dir

COLLECTIONS = ("vessels", "figurines", "coins", "tablets")
PATTERNS = ("stripes", "checks", "dots", "rings", "noise")


@dataclass(frozen=True)
class SynthObject:
    object_id: str
    collection: str
    vertices: tuple[tuple[float, float], ...]  # silhouette polygon, unit scale
    base_colour: tuple[int, int, int]
    accent_colour: tuple[int, int, int]
    pattern: str
    frequency: float
    pattern_angle: float


def _silhouette(rng: np.random.Generator, collection: str) -> tuple[tuple[float, float], ...]:
    points = int(rng.integers(5, 14))
    angles = np.sort(rng.uniform(0, 2 * math.pi, points))
    roughness = {"vessels": 0.15, "figurines": 0.45, "coins": 0.05, "tablets": 0.25}[collection]
    radii = 1.0 - roughness * rng.random(points)
    if collection == "tablets":
        angles = np.linspace(0, 2 * math.pi, 5)[:-1] + rng.uniform(-0.3, 0.3, 4)
        radii = 1.0 - 0.2 * rng.random(4)
    return tuple((float(r * math.cos(a)), float(r * math.sin(a))) for r, a in zip(radii, angles))


def make_objects(count: int, seed: int = 0) -> list[SynthObject]:
    """`count` objects with distinct, seed-determined identities."""
    rng = np.random.default_rng(seed)
    objects = []
    for index in range(count):
        collection = COLLECTIONS[index % len(COLLECTIONS)]
        objects.append(
            SynthObject(
                object_id=f"{collection[:-1]}{index:03d}",
                collection=collection,
                vertices=_silhouette(rng, collection),
                base_colour=tuple(int(v) for v in rng.integers(30, 226, 3)),
                accent_colour=tuple(int(v) for v in rng.integers(30, 226, 3)),
                pattern=PATTERNS[int(rng.integers(len(PATTERNS)))],
                frequency=float(rng.uniform(3, 12)),
                pattern_angle=float(rng.uniform(0, math.pi)),
            )
        )
    return objects


def _texture(obj: SynthObject, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    u = xx * math.cos(obj.pattern_angle) + yy * math.sin(obj.pattern_angle)
    v = -xx * math.sin(obj.pattern_angle) + yy * math.cos(obj.pattern_angle)
    f = obj.frequency
    if obj.pattern == "stripes":
        mask = np.sin(2 * math.pi * f * u) > 0
    elif obj.pattern == "checks":
        mask = (np.floor(f * u) + np.floor(f * v)) % 2 == 0
    elif obj.pattern == "dots":
        mask = (np.sin(2 * math.pi * f * u) * np.sin(2 * math.pi * f * v)) > 0.5
    elif obj.pattern == "rings":
        mask = np.sin(2 * math.pi * f * np.hypot(u - 0.5, v - 0.5)) > 0
    else:
        noise = np.random.default_rng(int(f * 1000)).random((8, 8))
        mask = np.asarray(Image.fromarray((noise * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)) > 128
    base = np.array(obj.base_colour, dtype=np.float32)
    accent = np.array(obj.accent_colour, dtype=np.float32)
    return np.where(mask[..., None], accent, base)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = np.linspace(0, 1, size)[:, None, None]
    image = top * (1 - ramp) + bottom * ramp
    image = np.broadcast_to(image, (size, size, 3)).copy()
    image += rng.normal(0, rng.uniform(2, 25), (size, size, 3))
    return image


def render(obj: SynthObject, rng: np.random.Generator, size: int = 128) -> tuple[Image.Image, Image.Image]:
    """One photo of `obj` and its mask, with random pose, light and background."""
    scale = size * rng.uniform(0.28, 0.42)
    angle = rng.uniform(0, 2 * math.pi)
    squash = rng.uniform(0.65, 1.0)  # out-of-plane tilt
    cx, cy = size / 2 + rng.uniform(-0.12, 0.12, 2) * size
    polygon = []
    for x, y in obj.vertices:
        x, y = x, y * squash
        polygon.append((cx + scale * (x * math.cos(angle) - y * math.sin(angle)),
                        cy + scale * (x * math.sin(angle) + y * math.cos(angle))))
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).polygon(polygon, fill=255)
    texture = Image.fromarray(_texture(obj, size).astype(np.uint8)).rotate(math.degrees(angle))
    light = rng.uniform(0.6, 1.3) * (1 + 0.35 * np.linspace(-1, 1, size)[None, :, None] * rng.uniform(-1, 1))
    lit = np.clip(np.asarray(texture, dtype=np.float32) * light, 0, 255)
    background = _background(rng, size)
    alpha = np.asarray(mask, dtype=np.float32)[..., None] / 255
    photo = np.clip(lit * alpha + background * (1 - alpha), 0, 255).astype(np.uint8)
    image = Image.fromarray(photo).filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.8)))
    return image, mask


def generate(out: str | os.PathLike, objects: int = 12, photos: int = 8, size: int = 128, seed: int = 0) -> Path:
    """Write `out/images/<collection>/<object>/<object>-NN.jpg` and matching masks; returns `out`."""
    rng = np.random.default_rng(seed + 1)
    with atomic_dir(out) as tmp:
        for obj in make_objects(objects, seed):
            image_dir = tmp / "images" / obj.collection / obj.object_id
            mask_dir = tmp / "masks" / obj.collection / obj.object_id
            image_dir.mkdir(parents=True)
            mask_dir.mkdir(parents=True)
            for view in range(photos):
                image, mask = render(obj, rng, size)
                image.save(image_dir / f"{obj.object_id}-{view:02d}.jpg", quality=92)
                mask.convert("1").save(mask_dir / f"{obj.object_id}-{view:02d}.png")
    return Path(out)
