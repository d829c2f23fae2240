"""Field photos: masks, deterministic compositing, the field benchmark and the 'field' training augmentation."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artefact import field
from artefact.data import Sample, load_samples, museum_protocol, read_manifest
from artefact.errors import ArtefactError
from artefact.images import load_image
from artefact.model import default_preprocess
from artefact_train.cli import eval_main
from artefact_train.loop import train_transform
from helpers import run_cli


@pytest.fixture(scope="module")
def studio(synth_root) -> list[Sample]:
    return museum_protocol(load_samples(synth_root), seed=0)


def test_masks_mirror_images_and_are_read_as_binary(studio):
    path = field.mask_path(studio[0].path)
    assert path is not None and "masks" in path.parts and path.suffix == ".png"
    assert Path(str(path).replace("/masks/", "/images/")).with_suffix(".jpg") == Path(studio[0].path)
    mask = field.load_mask(path, (96, 96))
    assert set(np.unique(np.asarray(mask))) <= {0, 255} and np.asarray(mask).mean() > 10
    assert field.mask_path("/nowhere/photo.jpg") is None


def test_background_pools_ship_with_scikit_image_and_are_disjoint():
    assert not set(field.BENCH_PHOTOS) & set(field.TRAIN_PHOTOS)
    rng = np.random.default_rng(0)
    for pool in field.POOLS:
        for _ in range(6):
            assert field.background(rng, (50, 40), pool).size == (50, 40)
    with pytest.raises(ArtefactError, match="unknown background pool"):
        field.background(rng, (8, 8), "nope")


def test_composite_keeps_the_object_smaller_or_equal_and_on_a_new_background():
    image = Image.new("RGB", (120, 120), (0, 0, 255))  # studio blue
    mask = Image.new("L", (120, 120), 0)
    mask.paste(255, (30, 30, 90, 90))
    image.paste((255, 0, 255), (30, 30, 90, 90))  # a magenta object of 3600 px
    for seed in range(5):
        out = np.asarray(field.composite(image, mask, np.random.default_rng(seed)), dtype=np.int16)
        magenta = (np.abs(out - [255, 0, 255]).max(axis=2) < 40).sum()
        assert 0.4 ** 2 * 3600 * 0.7 <= magenta <= 3600 * 1.15, magenta
        studio_blue = (np.abs(out - [0, 0, 255]).max(axis=2) < 10).mean()
        assert studio_blue < 0.5  # the plain backdrop is gone


def test_field_photos_are_deterministic_and_independent_of_order(studio, tmp_path):
    queries = studio[:6]
    first = field.write_field_set(queries, tmp_path / "a", seed=3, progress=False)
    again = field.write_field_set(list(reversed(queries)), tmp_path / "b", seed=3, progress=False)
    other = field.write_field_set(queries, tmp_path / "c", seed=4, progress=False)
    by_name = {Path(s.path).name: s for s in again}
    for a, c in zip(first, other):
        assert Path(a.path).read_bytes() == Path(by_name[Path(a.path).name].path).read_bytes()
        assert Path(a.path).read_bytes() != Path(c.path).read_bytes()
        assert (a.object_id, a.collection, a.split) == (c.object_id, c.collection, c.split)
        studio_pixels = np.asarray(load_image(queries[first.index(a)].path), np.float32)
        assert load_image(a.path).size == (96, 96)
        assert np.abs(np.asarray(load_image(a.path), np.float32) - studio_pixels).mean() > 10
    manifest = read_manifest(tmp_path / "a" / "manifest.csv")
    assert [(s.object_id, s.split) for s in manifest] == [(s.object_id, s.split) for s in queries]


def test_field_set_is_written_atomically(studio, tmp_path):
    broken = studio[:2] + [Sample(str(tmp_path / "missing.jpg"), "x", "c", "test")]
    with pytest.raises(ArtefactError, match="missing.jpg"):
        field.write_field_set(broken, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_foreground_heuristic_finds_the_object(studio):
    ious = []
    for s in studio[:24]:
        image = load_image(s.path)
        estimate = np.asarray(field.estimate_mask(image)) > 0
        truth = np.asarray(field.load_mask(field.mask_path(s.path), image.size)) > 0
        ious.append((estimate & truth).sum() / (estimate | truth).sum())
    assert np.mean(ious) > 0.5, ious


def test_field_augmentation_uses_mask_files_and_yields_model_inputs(studio):
    preprocess = default_preprocess("tf_efficientnet_lite0", 64)
    transform = train_transform(preprocess, "field")
    dataset = field.MaskedPhotoDataset(studio[:4], transform, {s.object_id: 0 for s in studio}, cache=True)
    x, y = dataset[0]
    assert tuple(x.shape) == (3, 64, 64) and x.dtype.is_floating_point and y == 0
    cached = dataset.image(0)
    assert np.array_equal(np.asarray(cached.info["artefact_mask"]),
                          np.asarray(field.load_mask(field.mask_path(studio[0].path), cached.size)))
    augmented = [np.asarray(field.FieldAugment(p=1.0, seed=i)(load_image(studio[0].path)), np.float32) for i in range(2)]
    assert np.abs(augmented[0] - augmented[1]).mean() > 5  # a different scene each time


def test_eval_cli_reports_studio_vs_field(tiny_bundle, tmp_path):
    out = tmp_path / "report"
    result = run_cli(eval_main, ["--bundle", tiny_bundle, "--field", "--out", out, "-q"])
    assert result.exit_code == 0, result.output
    assert "field top-1" in result.output and "gap" in result.output
    summary = json.loads((out / "eval.json").read_text())["field"]
    field_metrics = json.loads((out / "field" / "eval.json").read_text())
    assert summary["field_top1"] == field_metrics["top1"] and summary["field_top5"] == field_metrics["top5"]
    assert field_metrics["queries"] == json.loads((out / "eval.json").read_text())["queries"]
    assert summary["gap_top1_points"] == round(100 * (summary["studio_top1"] - summary["field_top1"]), 2)
    assert (out / "field" / "field_examples.png").is_file()
