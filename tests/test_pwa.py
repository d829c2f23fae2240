"""The browser client (android_demo/pwa) in real headless Chromium on the exported android assets.

Serves the PWA and the assets on 127.0.0.1, drives Chromium with playwright-core
(android_demo/pwa/test/e2e.mjs) and checks that for each test photo the PWA's top-1 equals the
Python LiteRT interpreter's top-1 on the same file (with an embedding gallery in the assets: the
gallery object ranked first by `artefact_export.android.gallery_ranking`, else the head's top-1);
plus bad input (undecodable photo, no camera, missing assets, model/label mismatch, a gallery.bin
from another export) and offline start.
Also runs the Node unit tests of the PWA's pure modules, including the preprocessing golden check.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_android_assets import android_assets, require_tool  # noqa: F401  (fixture)
from test_android_core import golden_cases

ROOT = Path(__file__).resolve().parents[1]
PWA = ROOT / "android_demo" / "pwa"
sys.path.insert(0, str(PWA / "test"))
from pwa_harness import CHROMIUM, object_ids, python_reference, run_browser, serve  # noqa: E402


@pytest.fixture(scope="module")
def browser_tools() -> None:
    require_tool(shutil.which("node"), "node (apt-get install nodejs)")
    require_tool(CHROMIUM.is_file(), f"{CHROMIUM} (apt-get install chromium)")
    for package in ("@litertjs/core", "playwright-core"):
        require_tool((PWA / "node_modules" / package).is_dir(), f"{package} (android_demo/setup.sh)")


def sample_photos(folder: Path, synth_root: Path) -> list[Path]:
    """Catalogue photos plus odd files: EXIF-rotated JPEG, PNG with alpha, a non-square crop."""
    photos = sorted((synth_root / "images").rglob("*.jpg"))[::9][:6]
    out = [shutil.copy(p, folder / f"{i}_{p.name}") for i, p in enumerate(photos)]
    rotated = folder / "exif6.jpg"
    image = Image.open(photos[0]).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    image.transpose(Image.Transpose.ROTATE_90).resize((image.width + 30, image.height)).save(rotated, exif=exif.tobytes(), quality=95)
    rgba = Image.open(photos[1]).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))
    rgba.save(folder / "alpha.png")
    return [Path(p) for p in out] + [rotated, folder / "alpha.png"]


def test_pwa_end_to_end_matches_python_litert(browser_tools, android_assets, synth_root, tmp_path):
    photos = sample_photos(tmp_path, synth_root)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"this is not a JPEG")
    missing = tmp_path / "no-assets"
    missing.mkdir()
    mismatch = tmp_path / "mismatch"
    shutil.copytree(android_assets, mismatch)
    labels = (mismatch / "labels.txt").read_text().splitlines()
    (mismatch / "labels.txt").write_text("\n".join(labels[:-1]) + "\n")
    config = json.loads((android_assets / "artefact_config.json").read_text())
    sites = {"app": android_assets, "missing": missing, "mismatch": mismatch}
    if config.get("gallery"):  # a gallery.bin one byte short: refused at start-up
        sites["bad_gallery"] = Path(shutil.copytree(android_assets, tmp_path / "bad-gallery"))
        gallery_bin = sites["bad_gallery"] / config["gallery"]["file"]
        gallery_bin.write_bytes(gallery_bin.read_bytes()[:-1])

    with serve(sites) as url:
        report = run_browser({"base": f"{url}/app/", **{f"{k}_base": f"{url}/{k}/" for k in sites if k != "app"},
                              "images": [str(p) for p in photos], "bad_file": str(bad)}, tmp_path, timeout_s=240)
    assert report["start"]["state"] == "ready", report
    print(f"\nLiteRT.js outputs: {report['outputs']}")

    tops, py_ms = python_reference(android_assets, photos)
    browser_tops = [r.get("top") for r in report["images"]]
    print(f"\nPWA top-5: {browser_tops}\nPython top-5: {tops}")
    for photo, ours, theirs in zip(photos, browser_tops, tops):
        assert ours is not None, f"{photo.name}: {report['images']}"
        assert ours[0] == theirs[0], f"{photo.name}: PWA top-1 {ours[0]} != Python LiteRT top-1 {theirs[0]}"
    first = report["images"][0]
    ids = object_ids(config)
    assert len(first["shown"]) == min(config["top_k"], len(ids)) and first["shown"][0] == f"1. {ids[first['top'][0]]}"
    if config.get("gallery"):
        assert report["outputs"]["slots"]["embedding"] is not None, report["outputs"]
        for r in report["images"]:
            assert None not in r["similarities"] and r["similarities"] == sorted(r["similarities"], reverse=True), r
        assert "bytes but the config says" in report["bad_gallery"]["status"], report["bad_gallery"]
    assert report["history_items"] == len(photos)

    browser_ms = [r["inference_ms"] for r in report["images"]]
    print(f"latency per image (median): PWA LiteRT.js wasm {np.median(browser_ms):.2f} ms "
          f"(+ preprocessing {np.median([r['preprocess_ms'] for r in report['images']]):.2f} ms), "
          f"Python LiteRT interpreter {np.median(py_ms):.2f} ms, 1 thread; PWA start-up {report['start_ms']} ms")

    assert "broken.jpg" in report["bad_file"]["error"] and "cannot decode" in report["bad_file"]["error"]
    assert report["camera_denied"]["state"] == "error" and "permission denied" in report["camera_denied"]["status"]
    assert report["camera_granted"]["state"] == "camera", report["camera_granted"]
    assert report["camera_result"]["origin"] == "camera" and len(report["camera_result"]["top"]) == min(config["top_k"], len(ids))
    assert report["offline_start"]["state"] == "ready", report["offline_start"]
    assert report["offline_image"]["top"][0] == tops[0][0]
    assert report["missing"]["state"] == "error" and "artefact_config.json: missing" in report["missing"]["status"]
    assert report["mismatch"]["state"] == "error" and "model/label mismatch" in report["mismatch"]["status"]
    assert not [m for m in report["console"] if "pageerror" in m], report["console"]


def test_pwa_unit_and_golden(browser_tools, tmp_path):
    """node --test on the PWA's pure modules; the golden check compares preprocess.js with Python."""
    cases = golden_cases(tmp_path)
    run = subprocess.run(["node", "--test", str(PWA / "test" / "unit.test.mjs")], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "ARTEFACT_GOLDEN_DIR": str(cases)}, cwd=PWA)
    print(run.stdout[-2000:])
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "# fail 0" in run.stdout and "# skipped 0" in run.stdout
    golden = re.findall(r"GOLDEN (\S+) max_diff=(\d+)", run.stdout)
    assert len(golden) == len(json.loads((cases / "cases.json").read_text())) and all(int(d) <= 1 for _, d in golden), golden
