"""Small utilities for tests: odd image files and CLI runs."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from click.testing import CliRunner, Result
from PIL import Image


def photo(size: tuple[int, int] = (80, 60), seed: int = 0) -> Image.Image:
    """A deterministic RGB test photo with a clear left/right and top/bottom structure."""
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    array[: size[1] // 2, :, 0] = 255  # red top half
    array[:, : size[0] // 4, 2] = 0  # no blue on the left edge
    return Image.fromarray(array)


def exif_rotated_jpeg(path: Path, orientation: int = 6) -> Image.Image:
    """Save a landscape JPEG whose EXIF says 'rotate'; returns the stored (unrotated) image."""
    image = photo((80, 40))
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.save(path, exif=exif.tobytes(), quality=95)
    return image


def truncated_jpeg(path: Path) -> None:
    buffer = io.BytesIO()
    photo((120, 90)).save(buffer, format="JPEG", quality=95)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


def run_cli(command, args: list[str]) -> Result:
    """Invoke a click command as a user would (exceptions are not swallowed into output)."""
    return CliRunner().invoke(command, [str(a) for a in args], catch_exceptions=False)


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code != 0, result.output
    text = result.output.strip()
    assert "Traceback" not in text, text
    error_lines = [line for line in text.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1, text
    for fragment in fragments:
        assert fragment in error_lines[0], error_lines[0]
