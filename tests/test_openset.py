"""Open set: held-out objects, rejection metrics, calibration, fusion, the measurement and catalogue scale."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from artefact.bundle import load_bundle
from artefact.data import Sample, load_samples, museum_protocol, read_manifest, write_manifest
from artefact.gallery import load_gallery
from artefact.model import PaperHead
from artefact.synth import generate
from artefact_train import openset
from artefact_train.cli import predict_main
from artefact_train.openset_cli import openset_main
from helpers import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def all_manifest(tiny_bundle, tmp_path_factory) -> Path:
    """The tiny bundle's own manifest plus 4 objects it never saw (split by the museum protocol)."""
    root = generate(tmp_path_factory.mktemp("wider") / "cat", objects=16, photos=12, size=96, seed=0)
    known = read_manifest(load_bundle(tiny_bundle).manifest)
    new = [s for s in load_samples(root) if s.object_id not in {k.object_id for k in known}]
    return write_manifest(known + museum_protocol(new, seed=0), tmp_path_factory.mktemp("manifests") / "all.csv")


def test_hold_out_takes_a_fraction_of_every_collection(synth_root):
    samples = load_samples(synth_root)
    held = openset.hold_out(samples, 0.34, seed=0)
    collections = {s.object_id: s.collection for s in samples}
    assert len(held) == 4 and sorted(collections[h] for h in held) == ["coins", "figurines", "tablets", "vessels"]
    assert held == openset.hold_out(samples, 0.34, seed=0) and held != openset.hold_out(samples, 0.34, seed=1)
    with pytest.raises(Exception, match="between 0 and 1"):
        openset.hold_out(samples, 1.0)


def test_rejection_metrics_on_known_score_distributions():
    known, unknown = np.linspace(0.5, 1.0, 100), np.linspace(0.0, 0.49, 50)
    perfect = openset.rejection_metrics(known, unknown, calibrated=0.6)
    assert perfect["auroc"] == 1.0 and perfect["fmr_at_95_recall"] == 0.0
    assert perfect["calibrated_known_recall"] == pytest.approx(0.8, abs=0.01) and perfect["calibrated_false_match_rate"] == 0.0
    same = openset.rejection_metrics(np.linspace(0, 1, 101), np.linspace(0, 1, 101), calibrated=0.5)
    assert same["auroc"] == pytest.approx(0.5, abs=0.01) and same["fmr_at_95_recall"] == pytest.approx(0.95, abs=0.02)
    threshold = openset.calibrate(np.arange(100.0), recall=0.95)
    assert np.mean(np.arange(100.0) >= threshold) >= 0.95 and threshold == 4.0


def test_spread_per_object_keeps_evenly_spaced_photos():
    samples = [Sample(f"{o}-{i}.jpg", o) for o in ("a", "b") for i in range(10)] + [Sample("c-0.jpg", "c")]
    kept = openset.spread_per_object(samples, 4)
    assert [s.path for s in kept if s.object_id == "a"] == ["a-0.jpg", "a-3.jpg", "a-6.jpg", "a-9.jpg"]
    assert len(kept) == 9 and [s.path for s in kept if s.object_id == "c"] == ["c-0.jpg"]


def test_fused_groups_and_fusion():
    samples = [Sample(f"{o}-{i}.jpg", o) for o in ("a", "b") for i in range(7)]
    groups = openset.fused_groups(samples, 3, seed=0)
    assert len(groups) == 4 and all(len(g) == 3 and len({samples[i].object_id for i in g}) == 1 for g in groups)
    assert groups == openset.fused_groups(samples, 3, seed=0)
    embeddings = np.eye(4, dtype=np.float32)[[0, 1, 0, 1]]
    fused = openset.fuse_embeddings(embeddings, [[0, 1], [2, 3]])
    assert np.allclose(fused, [[2 ** -0.5, 2 ** -0.5, 0, 0]] * 2)
    logprobs = np.log(np.array([[0.9, 0.1], [0.3, 0.7]]))
    assert np.allclose(np.exp(openset.fuse_logprobs(logprobs, [[0, 1]])), [[0.6, 0.4]])


def test_measure_reports_enrolment_rejection_and_fusion(tiny_bundle, all_manifest, tmp_path):
    result = run_cli(openset_main, ["measure", "--bundle", tiny_bundle, "--manifest", all_manifest, "--shots", "2",
                                    "--fuse", "2", "--out", tmp_path / "report", "-q"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report" / "openset.json").read_text())
    assert report["trained_objects"] == 12 and report["held_out"] == ["coin014", "figurine013", "tablet015", "vessel012"]
    enrol = report["enrolment"]["2_photos"]
    assert enrol["gallery_objects"] == 16 and enrol["enrolled_photos_per_object"] == 2
    for key in ("trained_objects_gallery", "enrolled_objects_gallery", "trained_objects_head"):
        assert 0 <= enrol[key]["top1"] <= enrol[key]["top5"] <= 1
    assert "enrolled_vs_trained_head_same_photos" in enrol and "trained_objects_head_2_photos" in enrol
    for score in openset.SCORES:
        r = report["rejection"][score]
        assert 0 <= r["auroc"] <= 1 and 0 <= r["calibrated_false_match_rate"] <= 1
    assert report["fusion"]["groups"] > 0 and report["fusion"]["head_fused"]["top1"] is not None
    fused = report["rejection_fused"]
    assert 0 <= fused["auroc"] <= 1 and fused["photos_per_query"] == 2
    assert fused["calibrated_threshold"] == report["rejection"]["probability"]["calibrated_threshold"]
    markdown = (tmp_path / "report" / "openset.md").read_text()
    assert "## Unknown-object rejection" in markdown and "2 photos fused" in markdown
    roc = report["rejection"]["probability"]["roc"]
    assert roc["known_recall"] == sorted(roc["known_recall"]) and roc["known_recall"][-1] == 1.0
    assert (tmp_path / "report" / "rejection_roc.png").read_bytes()[:4] == b"\x89PNG"
    # field queries run the same measurement on cluttered versions of the test photos
    result = run_cli(openset_main, ["measure", "--bundle", tiny_bundle, "--manifest", all_manifest, "--field",
                                    "--out", tmp_path / "field", "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "field" / "openset.json").read_text())["queries_are"].startswith("field")


def test_measure_needs_held_out_objects(tiny_bundle):
    manifest = load_bundle(tiny_bundle).manifest
    assert_one_line_error(run_cli(openset_main, ["measure", "--bundle", tiny_bundle, "--manifest", manifest, "-q"]),
                          "no objects the bundle was not trained on")


def test_gallery_calibrate_and_no_match(tiny_bundle, tmp_path):
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
    result = run_cli(openset_main, ["gallery", "--bundle", bundle, "--dtype", "int8", "-q"])
    assert result.exit_code == 0 and "12 objects" in result.output, result.output
    result = run_cli(openset_main, ["calibrate", "--bundle", bundle, "--recall", "0.9", "-q"])
    assert result.exit_code == 0, result.output
    gallery = load_gallery(bundle)
    assert gallery.dtype == "int8" and gallery.threshold["known_recall"] == 0.9
    assert -1 <= gallery.threshold["similarity"] <= 1 and 0 <= gallery.threshold["probability"] <= 1
    # a photo of nothing in the catalogue (flat grey) falls below the threshold
    grey = tmp_path / "grey.png"
    from PIL import Image

    Image.new("RGB", (96, 96), (128, 128, 128)).save(grey)
    answer = json.loads(run_cli(predict_main, [grey, "--bundle", bundle, "--json"]).output)
    assert answer["decision"] in ("match", "no match")
    best = answer["matches"][0]  # a trained object: decided by the head's probability
    assert best["probability"] is not None
    assert (answer["decision"] == "no match") == (best["probability"] < gallery.threshold["probability"])
    # rebuilding keeps the threshold and the storage choice is explicit
    assert "threshold kept" in run_cli(openset_main, ["gallery", "--bundle", bundle, "-q"]).output


def test_holdout_cli_writes_manifests(synth_root, tmp_path):
    result = run_cli(openset_main, ["holdout", "--data", synth_root, "--out", tmp_path / "ho", "--fraction", "0.34"])
    assert result.exit_code == 0, result.output
    everything, known = read_manifest(tmp_path / "ho" / "all.csv"), read_manifest(tmp_path / "ho" / "known.csv")
    held = set((tmp_path / "ho" / "held_out.txt").read_text().split())
    assert len(held) == 4 and {s.object_id for s in known} == {s.object_id for s in everything} - held
    assert all(s.split for s in everything)
    assert_one_line_error(run_cli(openset_main, ["holdout", "--data", tmp_path / "none", "--out", tmp_path / "x"]), "no such folder")


def test_scale_benchmark_sizes_and_head_parameters(tmp_path):
    report = openset.scale_benchmark([100, 400], dim=32, hidden=64, queries=5, features=48)
    small, large = report["rows"]
    head = PaperHead(48, 400, hidden=64)
    state_numel = sum(v.numel() for k, v in head.state_dict().items() if not k.endswith("num_batches_tracked"))
    assert large["head_parameters"] == state_numel
    assert large["gallery_int8_file_mb"] < 0.5 * large["gallery_float32_file_mb"]
    assert large["gallery_float32_memory_mb"] == pytest.approx(400 * 32 * 4 / 1e6)
    assert large["gallery_float32_file_mb"] > small["gallery_float32_file_mb"]
    assert all(r[k] > 0 for r in report["rows"] for k in ("head_ms", "gallery_float32_ms", "gallery_int8_ms"))
    values, scales = openset.quantize_int8(np.eye(3, dtype=np.float32))
    assert np.allclose(openset.int8_search(values, scales, np.array([0, 2, 0], np.float32)), [0, 1, 0])
    result = run_cli(openset_main, ["scale", "--sizes", "50,100", "--dim", "16", "--out", tmp_path / "s"])
    assert result.exit_code == 0 and (tmp_path / "s" / "scale.md").is_file(), result.output
    assert_one_line_error(run_cli(openset_main, ["scale", "--sizes", "a,b", "--out", tmp_path / "s"]), "--sizes")
