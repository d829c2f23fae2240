"""Every odd photo a user may hand over decodes to upright 8-bit RGB, or fails with the path named."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from artefact.images import ImageDecodeError, load_image
from helpers import exif_rotated_jpeg, photo, truncated_jpeg


def test_rgb_jpeg_round_trip(tmp_path):
    path = tmp_path / "a.jpg"
    photo().save(path, quality=95)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (80, 60)


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    stored = exif_rotated_jpeg(path, orientation=6)  # 'rotate 90 CW to display'
    image = load_image(path)
    assert image.size == (stored.size[1], stored.size[0])
    # the red top half of the stored image becomes the right half once displayed upright
    array = np.asarray(image).astype(int)
    assert array[:, -5:, 0].mean() > 220 and array[:, :5, 0].mean() < 170


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "LA"])
def test_other_modes_become_rgb(tmp_path, mode):
    path = tmp_path / f"img-{mode}.{'jpg' if mode == 'CMYK' else 'png'}"
    photo().convert(mode).save(path)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (80, 60)


def test_rgba_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (40, 40), (10, 20, 30, 0))
    rgba.paste((200, 0, 0, 255), (0, 0, 20, 40))
    path = tmp_path / "alpha.png"
    rgba.save(path)
    array = np.asarray(load_image(path))
    assert tuple(array[5, 5]) == (200, 0, 0)
    assert tuple(array[5, 35]) == (255, 255, 255)


def test_16_bit_grayscale_is_scaled_to_8_bit(tmp_path):
    ramp = (np.linspace(0, 65535, 64 * 32).reshape(32, 64)).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    array = np.asarray(load_image(path))
    assert array.dtype == np.uint8 and array.shape == (32, 64, 3)
    assert array[0, 0, 0] == 0 and array[-1, -1, 0] == 255


@pytest.mark.parametrize(
    "writer, message",
    [
        (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 50), "cannot decode"),
        (lambda p: p.write_text("not an image at all"), "not a recognised image"),
        (truncated_jpeg, "cannot decode"),
        (lambda p: photo((8, 8)).save(p, format="PNG"), "too small"),
    ],
    ids=["corrupt", "text", "truncated", "tiny"],
)
def test_bad_files_raise_with_path(tmp_path, writer, message):
    path = tmp_path / "bad.jpg"
    writer(path)
    with pytest.raises(ImageDecodeError) as err:
        load_image(path)
    assert str(path) in str(err.value) and message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(ImageDecodeError, match="no such image file"):
        load_image(tmp_path / "nope.jpg")
