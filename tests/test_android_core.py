"""The Android app's pure logic (android_demo/core, plain Kotlin/JVM) compiled with kotlinc and run
with JUnit 4, including the golden test: its preprocessing of sample photos equals
`artefact.contract.Preprocess.to_pixels` within one step, and its config parser (and embedding
gallery, when exported) reading the assets that `artefact-export --target android` really writes.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

from artefact.contract import Preprocess
from artefact.images import load_image

from helpers import photo
from test_android_assets import android_assets, require_tool  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "android_demo" / "core"
KOTLINC = ROOT / "android_demo" / ".tools" / "node_modules" / "kotlin-compiler" / "bin" / "kotlinc"
ETH80 = ROOT.parent / "shared" / "datasets" / "eth80" / "images"


def _with_exif(image: Image.Image, path: Path, orientation: int) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.save(path, exif=exif.tobytes(), **({"quality": 95} if path.suffix == ".jpg" else {}))
    return path


def golden_cases(folder: Path) -> Path:
    """Write sample photos' stored pixels (RGBA, before EXIF rotation) and Python's to_pixels output.

    Covers downscaling (antialiased), upscaling, centre crops, all EXIF orientations, alpha and a
    real ETH-80 photo when the dataset is present. Returns the folder holding cases.json.
    """
    folder.mkdir(parents=True, exist_ok=True)
    sources = [  # (name, file, input_size, crop_fraction)
        ("big_exif6", _with_exif(photo((1000, 700), seed=1), folder / "big.jpg", 6), 224, 0.875),
        ("upscale_exif3", _with_exif(photo((40, 30), seed=2), folder / "up.jpg", 3), 64, 1.0),
        ("alpha_png", folder / "alpha.png", 32, 0.9),
    ]
    rgba = photo((97, 61), seed=3).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))
    rgba.save(folder / "alpha.png")
    for o in (2, 4, 5, 7, 8):
        sources.append((f"odd_exif{o}", _with_exif(photo((33, 21), seed=o), folder / f"o{o}.png", o), 16, 0.7))
    eth = sorted(ETH80.rglob("*.png"))[:1] + sorted(ETH80.rglob("*.jpg"))[:1] if ETH80.is_dir() else []
    sources += [(f"eth80_{p.stem}", p, 224, 1.0) for p in eth]
    cases = []
    for name, path, size, crop in sources:
        with Image.open(path) as stored:
            orientation = stored.getexif().get(0x0112, 1)
            raw = np.asarray(stored.convert("RGBA"), dtype=np.uint8)
        (folder / f"{name}.rgba").write_bytes(raw.tobytes())
        expected = Preprocess(input_size=size, crop_fraction=crop).to_pixels(load_image(path))
        (folder / f"{name}.rgb").write_bytes(expected.tobytes())
        cases.append({"name": name, "width": raw.shape[1], "height": raw.shape[0], "orientation": orientation,
                      "input_size": size, "crop_fraction": crop, "input": f"{name}.rgba", "expected": f"{name}.rgb"})
    (folder / "cases.json").write_text(json.dumps(cases, indent=1))
    return folder


def test_kotlin_core_unit_golden_and_assets(android_assets, tmp_path):
    require_tool(KOTLINC.is_file(), f"kotlinc ({KOTLINC})")
    require_tool(Path("/usr/share/java/junit4.jar").is_file() and Path("/usr/share/java/gson.jar").is_file(),
                 "JUnit 4 / Gson jars (apt-get install junit4 libgoogle-gson-java)")
    cases = golden_cases(tmp_path / "golden")
    n_cases = len(json.loads((cases / "cases.json").read_text()))
    env = {"ARTEFACT_GOLDEN_DIR": str(cases), "ARTEFACT_ASSETS_DIR": str(android_assets)}
    run = subprocess.run(["bash", str(CORE / "jvm-test.sh")], capture_output=True, text=True, timeout=600,
                         env={**os.environ, **env})
    output = run.stdout + run.stderr
    print(output[-3000:])
    assert run.returncode == 0, output[-5000:]
    assert re.search(r"^OK \(\d+ tests\)$", run.stdout, re.M), output[-2000:]
    golden = re.findall(r"GOLDEN (\S+) max_diff=(\d+)", run.stdout)
    assert len(golden) == n_cases and all(int(d) <= 1 for _, d in golden), golden
    assert re.search(r"ASSETS ok labels=\d+", run.stdout), "exported-assets test did not run"
    gallery = json.loads((android_assets / "artefact_config.json").read_text(encoding="utf-8")).get("gallery")
    if gallery:  # the app's Gallery loads gallery.bin (size, sha256) and finds row 0's object first
        assert f"GALLERY ok objects={len(gallery['objects'])} rows={gallery['rows']}" in run.stdout, "gallery check did not run"
