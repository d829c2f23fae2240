"""Embedding gallery: build, store (float32 / int8), integrity checks, enrolment and gallery ranking."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from artefact.bundle import load_bundle
from artefact.data import Sample, read_manifest, select_split
from artefact.errors import ArtefactError
from artefact.images import load_image
from artefact.gallery import (
    GALLERY_META, GALLERY_WEIGHTS, Gallery, build_gallery, embed, has_gallery, load_gallery,
    save_gallery,
)
from artefact.synth import generate
from artefact_train.cli import predict_main
from artefact_train.openset_cli import enroll_main
from helpers import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def new_object_photos(tmp_path_factory) -> list[Path]:
    """Photos of an object the tiny bundle never saw (object 13 of a larger synthetic catalogue)."""
    root = generate(tmp_path_factory.mktemp("more") / "cat", objects=14, photos=6, size=96, seed=0)
    photos = sorted((root / "images").rglob("figurine013-*.jpg"))
    assert len(photos) == 6
    return photos


@pytest.fixture()
def bundle_copy(tiny_bundle, tmp_path) -> Path:
    """A private copy of the tiny bundle (enrolment writes into the bundle folder)."""
    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


@pytest.fixture(scope="module")
def catalogue_gallery(tiny_bundle) -> Gallery:
    bundle = load_bundle(tiny_bundle)
    return build_gallery(bundle, select_split(read_manifest(bundle.manifest), "train"), progress=False)


def test_gallery_groups_catalogue_photos_by_object(tiny_bundle, catalogue_gallery):
    bundle = load_bundle(tiny_bundle)
    train = select_split(read_manifest(bundle.manifest), "train")
    g = catalogue_gallery
    assert g.object_ids == bundle.label_ids  # same objects, same (natural) order
    assert len(g.rows) == len(train) and np.all(np.diff(g.rows) >= 0)
    assert [o.photos for o in g.objects] == [sum(s.object_id == obj for s in train) for obj in g.object_ids]
    assert not any(o.enrolled for o in g.objects)
    assert np.allclose(np.linalg.norm(g.embeddings, axis=1), 1, atol=1e-5)
    assert g.dim == bundle.model.num_features


def test_nn_and_centroid_scores_match_brute_force(catalogue_gallery):
    g = catalogue_gallery
    queries = g.embeddings[:5] + 0.1
    nn = g.scores(queries, "nn")
    sims = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ g.embeddings.T
    expected = np.stack([sims[:, g.rows == i].max(1) for i in range(len(g.objects))], axis=1)
    assert np.allclose(nn, expected, atol=1e-5)
    means = np.stack([g.embeddings[g.rows == i].mean(0) for i in range(len(g.objects))])
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    assert np.allclose(g.scores(queries, "centroid"), q @ means.T, atol=1e-5)
    with pytest.raises(ArtefactError, match="unknown gallery method"):
        g.scores(queries, "median")


def test_add_replace_and_duplicate(catalogue_gallery):
    g = catalogue_gallery
    rng = np.random.default_rng(0)
    added = g.add("new1", "coins", rng.normal(size=(3, g.dim)), sources=["a.jpg", "b.jpg", "c.jpg"])
    assert added.object_ids[-1] == "new1" and added.objects[-1].enrolled and added.objects[-1].photos == 3
    assert len(added.rows) == len(g.rows) + 3 and len(g.rows) == len(g.embeddings)  # original untouched
    with pytest.raises(ArtefactError, match="already in the gallery"):
        added.add("new1", "coins", rng.normal(size=(1, g.dim)))
    first = g.object_ids[0]
    replaced = added.add(first, "x", rng.normal(size=(2, g.dim)), replace_existing=True)
    assert replaced.object_ids.count(first) == 1 and replaced.object_ids[-1] == first
    assert len(replaced.rows) == len(added.rows) - g.objects[0].photos + 2
    assert np.all(np.diff(replaced.rows) >= 0)
    assert np.allclose(replaced.scores(g.embeddings[-1:])[0, :len(g.objects) - 1], g.scores(g.embeddings[-1:])[0, 1:], atol=1e-6)


def test_storage_roundtrip_int8_and_integrity(bundle_copy, catalogue_gallery):
    save_gallery(catalogue_gallery, bundle_copy)
    f32_size = (bundle_copy / GALLERY_WEIGHTS).stat().st_size
    loaded = load_gallery(bundle_copy)
    assert np.array_equal(loaded.embeddings, catalogue_gallery.embeddings) and loaded.object_ids == catalogue_gallery.object_ids
    save_gallery(catalogue_gallery, bundle_copy, "int8")
    assert (bundle_copy / GALLERY_WEIGHTS).stat().st_size < 0.35 * f32_size
    q8 = load_gallery(bundle_copy)
    assert q8.dtype == "int8" and json.loads((bundle_copy / GALLERY_META).read_text())["embedding"]["dtype"] == "int8"
    queries = catalogue_gallery.embeddings[::3]
    assert np.abs(q8.scores(queries) - catalogue_gallery.scores(queries)).max() < 0.02
    # a half-updated pair and a gallery from other weights are refused
    data = bytearray((bundle_copy / GALLERY_WEIGHTS).read_bytes())
    data[-1] ^= 0xFF
    (bundle_copy / GALLERY_WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(ArtefactError, match="does not match"):
        load_gallery(bundle_copy)
    save_gallery(Gallery(catalogue_gallery.embeddings, catalogue_gallery.rows, catalogue_gallery.objects, "0" * 64), bundle_copy)
    with pytest.raises(ArtefactError, match="different model weights"):
        load_gallery(bundle_copy)
    with pytest.raises(ArtefactError, match="no gallery"):
        load_gallery(bundle_copy.parent)


def test_enroll_then_predict_ranks_the_new_object(bundle_copy, new_object_photos):
    enrol, query = new_object_photos[:3], new_object_photos[3:]
    assert not has_gallery(bundle_copy)
    result = run_cli(enroll_main, ["--bundle", bundle_copy, "--object", "figurine013", "--collection", "figurines", "-q", *enrol])
    assert result.exit_code == 0, result.output
    assert "enrolled figurine013 from 3 photo(s)" in result.output and "13 objects" in result.output
    gallery = load_gallery(bundle_copy)
    new = gallery.objects[gallery.index_of("figurine013")]
    assert new.enrolled and new.photos == 3 and new.sources == [str(p.resolve()) for p in enrol]
    assert sum(not o.enrolled for o in gallery.objects) == 12
    # the enrolled photos themselves are found first (their own embeddings are in the gallery)
    result = run_cli(predict_main, [enrol[0], "--bundle", bundle_copy, "--json", "--top-k", "3"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["matches"][0]["object"] == "figurine013" and answer["matches"][0]["enrolled"]
    assert answer["matches"][0]["probability"] is None and answer["decision"] == "uncalibrated"
    assert answer["matches"][0]["similarity"] > 0.99
    # new photos of it: all 13 objects ranked by similarity; the new one scores its best enrolled photo's cosine
    bundle = load_bundle(bundle_copy)
    enrolled_vectors = embed(bundle, [Sample(str(p), "figurine013") for p in enrol], progress=False)
    for photo in query:
        ranked = json.loads(run_cli(predict_main, [photo, "--bundle", bundle_copy, "--json", "--top-k", "13"]).output)["matches"]
        similarities = [m["similarity"] for m in ranked]
        assert len(ranked) == 13 and similarities == sorted(similarities, reverse=True)
        expected = float((embed(bundle, [Sample(str(photo), "figurine013")], progress=False) @ enrolled_vectors.T).max())
        assert next(m for m in ranked if m["object"] == "figurine013")["similarity"] == pytest.approx(expected, abs=2e-4)
    # the closed-set path still works and knows only the trained objects
    head = json.loads(run_cli(predict_main, [query[0], "--bundle", bundle_copy, "--json", "--head-only"]).output)
    assert all(m["object"] != "figurine013" for m in head["matches"]) and "probability" in head["matches"][0]
    # re-enrolling needs --replace
    assert_one_line_error(run_cli(enroll_main, ["--bundle", bundle_copy, "--object", "figurine013", *enrol]), "already in the gallery")
    assert run_cli(enroll_main, ["--bundle", bundle_copy, "--object", "figurine013", "--replace", "-q", *enrol[:2]]).exit_code == 0
    assert load_gallery(bundle_copy).objects[-1].photos == 2


def test_enroll_rejects_bad_photos_without_touching_the_gallery(bundle_copy, new_object_photos, tmp_path):
    run_cli(enroll_main, ["--bundle", bundle_copy, "--object", "a", "-q", new_object_photos[0]])
    before = (bundle_copy / GALLERY_WEIGHTS).read_bytes(), (bundle_copy / GALLERY_META).read_bytes()
    (tmp_path / "bad.jpg").write_bytes(b"not a photo")
    assert_one_line_error(run_cli(enroll_main, ["--bundle", bundle_copy, "--object", "b", new_object_photos[1], tmp_path / "bad.jpg"]), "bad.jpg")
    assert_one_line_error(run_cli(enroll_main, ["--bundle", bundle_copy, "--object", " ", new_object_photos[1]]), "--object")
    assert_one_line_error(run_cli(enroll_main, ["--bundle", tmp_path / "nope", "--object", "b", new_object_photos[1]]), "no such bundle")
    assert ((bundle_copy / GALLERY_WEIGHTS).read_bytes(), (bundle_copy / GALLERY_META).read_bytes()) == before


def test_embed_is_the_models_normalised_features(tiny_bundle):
    import torch

    bundle = load_bundle(tiny_bundle)
    samples = select_split(read_manifest(bundle.manifest), "val")[:4]
    vectors = embed(bundle, samples, progress=False)
    x = torch.from_numpy(np.stack([bundle.preprocess(load_image(s.path)) for s in samples]))
    with torch.no_grad():
        expected = bundle.model.embed(x).numpy()
    assert np.allclose(vectors, expected, atol=1e-5)


def test_pca_reduced_gallery_roundtrip_and_enrolment(tiny_bundle, bundle_copy, catalogue_gallery):
    bundle = load_bundle(tiny_bundle)
    train = select_split(read_manifest(bundle.manifest), "train")
    reduced = build_gallery(bundle, train, embeddings=catalogue_gallery.embeddings, dim=8)
    assert reduced.dim == 8 and reduced.projection.shape == (bundle.model.num_features, 8)
    assert np.allclose(np.linalg.norm(reduced.embeddings, axis=1), 1, atol=1e-5)
    # queries are model embeddings: a catalogue photo is its own best match after projection too
    own = reduced.scores(catalogue_gallery.embeddings)
    assert np.mean(own.argmax(1) == reduced.rows) > 0.9
    save_gallery(reduced, bundle_copy, "int8")
    loaded = load_gallery(bundle_copy)
    assert loaded.dim == 8 and np.allclose(loaded.projection, reduced.projection)
    assert "pca 1280->8" == json.loads((bundle_copy / GALLERY_META).read_text())["embedding"]["projection"]
    added = loaded.add("x", "", catalogue_gallery.embeddings[:2])
    assert added.dim == 8 and added.scores(catalogue_gallery.embeddings[:1]).shape == (1, 13)
    with pytest.raises(ArtefactError, match="needs at least"):
        build_gallery(bundle, train[:3], embeddings=catalogue_gallery.embeddings[:3], dim=8)
