"""artefact-eval --analysis: projections, confusions with photos, per-object accuracy, HTML report."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from artefact.bundle import load_bundle
from artefact.data import Sample, read_manifest, select_split
from artefact.infer import predict_logprobs
from artefact_train.analysis import capture_features, confusion_examples, per_object_rows, project
from artefact_train.cli import eval_main
from helpers import run_cli


def test_captured_features_are_the_queries_features_in_order(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    queries = select_split(read_manifest(bundle.manifest), "test")[:7]
    with capture_features(bundle.model) as batches:
        predict_logprobs(bundle.model, bundle.preprocess, queries, batch_size=3, device="cpu", progress=False)
    predict_logprobs(bundle.model, bundle.preprocess, queries[:1], device="cpu", progress=False)  # hook gone
    from artefact.images import load_image

    x = torch.stack([torch.from_numpy(bundle.preprocess(load_image(s.path))) for s in queries])
    with torch.no_grad():
        expected = bundle.model.features(x).numpy()
    assert [len(b) for b in batches] == [3, 3, 1]
    np.testing.assert_allclose(np.concatenate(batches), expected, rtol=1e-4, atol=1e-5)


def test_projections_keep_separate_clusters_apart():
    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(0, 0.05, (20, 64)) + 1, rng.normal(0, 0.05, (20, 64)) - 1])
    features[:20, :32] += 3  # direction differs, so the clusters stay apart after L2 normalisation
    for method in ("pca", "tsne"):
        xy = project(features, method)
        assert xy.shape == (40, 2) and np.isfinite(xy).all()
        a, b = xy[:20], xy[20:]
        spread = max(np.ptp(a, axis=0).max(), np.ptp(b, axis=0).max())
        assert np.linalg.norm(a.mean(0) - b.mean(0)) > spread, method


def test_confusion_example_is_the_most_confident_mistake():
    samples = [Sample(f"q{i}.jpg", "a", "c1") for i in range(3)] + [Sample("q3.jpg", "b", "c1")]
    probs = np.array([[0.3, 0.6, 0.1], [0.1, 0.85, 0.05], [0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
    metrics = {"confused_pairs": [{"true": "a", "predicted": "b", "count": 2}]}
    [example] = confusion_examples(metrics, samples, np.log(probs), ["a", "b", "c"], {"a": "cat_a.jpg"})
    assert example["query"] == "q1.jpg" and example["probability"] == pytest.approx(0.85)
    assert example["catalogue_true"] == "cat_a.jpg" and example["catalogue_predicted"] is None


def test_per_object_rows_are_worst_first_with_their_usual_mistake():
    samples = [Sample("1", "a", "x"), Sample("2", "a", "x"), Sample("3", "b", "y")]
    metrics = {"per_object": {"a": {"queries": 2, "top1": 0.5, "top5": 1.0}, "b": {"queries": 1, "top1": 1.0, "top5": 1.0}}}
    rows = per_object_rows(metrics, samples, ["a", "b", "b"])
    assert [r["object"] for r in rows] == ["a", "b"]
    assert rows[0]["mistaken_for"] == "b (1)" and rows[1]["mistaken_for"] == "" and rows[0]["collection"] == "x"


def test_eval_analysis_writes_a_self_contained_report(tiny_bundle, tmp_path):
    result = run_cli(eval_main, ["--bundle", tiny_bundle, "--out", tmp_path, "--analysis", "-q"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "eval.json").read_text())
    analysis = json.loads((tmp_path / "analysis.json").read_text())
    markdown = (tmp_path / "eval.md").read_text()
    html = (tmp_path / "eval.html").read_text()

    for heading in ("## Per collection", "## Feature projections", "## Most confused pairs: photos", "## Per-object accuracy"):
        assert heading in markdown
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert {"projection_tsne.png", "projection_pca.png", "per_object.png"} <= set(images)
    assert ("confusions.png" in images) == bool(metrics["confused_pairs"])
    for name in images:
        assert (tmp_path / name).stat().st_size > 1000 and (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    sources = re.findall(r'<img[^>]*src="([^"]+)"', html)
    assert len(sources) == len(images) and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<table>" in html and "eval.html" in result.output

    rows = analysis["per_object"]
    assert {r["object"] for r in rows} == set(metrics["per_object"])
    assert [r["top1"] for r in rows] == sorted(r["top1"] for r in rows)
    for r in rows:
        assert r["top1"] == metrics["per_object"][r["object"]]["top1"]
        assert f"| {r['object']} | " in markdown
    for r in rows:  # the misrecognised queries shows up as a mistake of its object
        expected = round(r["queries"] * (1 - r["top1"]))
        shown = sum(int(n) for n in re.findall(r"\((\d+)\)", r["mistaken_for"]))
        assert shown <= expected and (shown > 0) == (expected > 0)
    assert not list(tmp_path.glob(".*.tmp"))
