"""Catalogue scanning, manifests, min-images filtering and the museum protocol."""
from __future__ import annotations

import collections

import pytest

from artefact import data
from artefact.cli_data import main as data_cli
from artefact.errors import ArtefactError
from helpers import assert_one_line_error, photo, run_cli


def make_tree(root, layout: dict[str, int], collection: str | None = "col"):
    for obj, count in layout.items():
        folder = root / collection / obj if collection else root / obj
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            photo((32, 32), seed=i).save(folder / f"{obj}-{i}.jpg")
    return root


def test_scan_collection_layout(tmp_path):
    make_tree(tmp_path, {"pot1": 3, "pot2": 4}, "Egyptian")
    samples = data.scan_folder(tmp_path)
    assert len(samples) == 7
    assert {(s.object_id, s.collection) for s in samples} == {("pot1", "Egyptian"), ("pot2", "Egyptian")}


def test_scan_flat_layout_and_images_subfolder(tmp_path):
    make_tree(tmp_path / "images", {"a": 2, "b": 5}, None)
    samples = data.scan_folder(tmp_path)  # reads tmp_path/images
    assert data.photos_per_object(samples) == {"a": 2, "b": 5}
    assert all(s.collection == "" for s in samples)


def test_same_object_name_in_two_collections_stays_distinct(tmp_path):
    make_tree(tmp_path, {"bowl": 3}, "Chinese")
    make_tree(tmp_path, {"bowl": 3}, "Japanese")
    ids = {s.object_id for s in data.scan_folder(tmp_path)}
    assert ids == {"Chinese/bowl", "Japanese/bowl"}


def test_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtefactError, match="no photos found"):
        data.scan_folder(tmp_path / "empty")
    with pytest.raises(ArtefactError, match="no such folder"):
        data.scan_folder(tmp_path / "missing")


@pytest.mark.parametrize("min_images, kept", [(3, {"a", "b", "c", "d"}), (4, {"b", "c", "d"}), (5, {"c", "d"}), (6, {"d"})])
def test_filter_min_images(min_images, kept):
    counts = {"a": 3, "b": 4, "c": 5, "d": 6}
    samples = [data.Sample(f"{o}{i}.jpg", o) for o, n in counts.items() for i in range(n)]
    remaining, dropped = data.filter_min_images(samples, min_images)
    assert {s.object_id for s in remaining} == kept
    assert set(dropped) == set(counts) - kept


def synthetic_samples(objects: int = 40, photos: int = 41) -> list[data.Sample]:
    return [data.Sample(f"/x/{o}/{o}-{i}.jpg", f"obj{o}", f"c{o % 4}") for o in range(objects) for i in range(photos)]


def test_museum_protocol_splits_and_sizes():
    split = data.museum_protocol(synthetic_samples(), seed=0)
    per_object = collections.defaultdict(collections.Counter)
    for s in split:
        per_object[s.object_id][s.split] += 1
    for counts in per_object.values():
        assert 3 <= counts["train"] <= 10
        assert counts["val"] == 2
        assert counts["test"] == 41 - 2 - counts["train"]
    # the drawn catalogue sizes follow the protocol's distribution roughly (40 objects)
    sizes = collections.Counter(c["train"] for c in per_object.values())
    assert sizes[3] >= 5 and len(sizes) >= 4


def test_museum_protocol_is_deterministic_to_the_byte(tmp_path):
    samples = synthetic_samples()
    first = data.manifest_text(data.museum_protocol(samples, seed=1), tmp_path)
    again = data.manifest_text(data.museum_protocol(list(reversed(samples)), seed=1), tmp_path)
    other = data.manifest_text(data.museum_protocol(samples, seed=2), tmp_path)
    assert first == again
    assert first != other


def test_museum_protocol_rejects_objects_with_too_few_photos():
    with pytest.raises(ArtefactError, match="needs at least 6"):
        data.museum_protocol(synthetic_samples(objects=2, photos=5))


def test_manifest_round_trip_with_relative_paths(tmp_path):
    make_tree(tmp_path / "photos", {"p1": 6, "p2": 7}, "Greek")
    samples = data.museum_protocol(data.scan_folder(tmp_path / "photos"), seed=0)
    manifest = data.write_manifest(samples, tmp_path / "out" / "m.csv")
    assert "../photos/Greek/p1/" in manifest.read_text()
    assert data.read_manifest(manifest) == samples


def test_manifest_errors_name_the_problem(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,object,collection,split\nmissing.jpg,a,,train\n")
    with pytest.raises(ArtefactError, match=r"m.csv:2: photo not found"):
        data.read_manifest(manifest)
    manifest.write_text("file,label\nx.jpg,a\n")
    with pytest.raises(ArtefactError, match="lacks column"):
        data.read_manifest(manifest)
    photo().save(tmp_path / "x.jpg")
    manifest.write_text("path,object,collection,split\nx.jpg,a,,holdout\n")
    with pytest.raises(ArtefactError, match="unknown split 'holdout'"):
        data.read_manifest(manifest)


def test_cli_split_skips_bad_photos_and_small_objects(tmp_path):
    make_tree(tmp_path / "cat", {"big": 8, "small": 2}, "Roman")
    (tmp_path / "cat" / "Roman" / "big" / "broken.jpg").write_bytes(b"not a jpeg")
    result = run_cli(data_cli, ["split", tmp_path / "cat", "--out", tmp_path / "m.csv", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output and "broken.jpg" in result.output
    assert "dropped 1 object(s)" in result.output and "small" in result.output
    rows = data.read_manifest(tmp_path / "m.csv")
    assert {s.object_id for s in rows} == {"big"} and len(rows) == 8


def test_cli_errors_are_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run_cli(data_cli, ["summary", tmp_path / "empty"]), "no photos found")
    make_tree(tmp_path / "few", {"a": 2}, None)
    assert_one_line_error(run_cli(data_cli, ["summary", tmp_path / "few", "--min-images", "3"]), "at least 3")


def test_synth_objects_are_distinct_and_reproducible(tmp_path):
    first = run_cli(data_cli, ["synth", tmp_path / "a", "--objects", "4", "--photos", "3", "--size", "48"])
    assert first.exit_code == 0, first.output
    run_cli(data_cli, ["synth", tmp_path / "b", "--objects", "4", "--photos", "3", "--size", "48"])
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*"))
    assert len(files_a) == 4 * 3 * 2  # photos + masks
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    summary = data.summarize(data.scan_folder(tmp_path / "a"))
    assert summary["objects"] == 4 and len(summary["collections"]) == 4
