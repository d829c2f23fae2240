"""Training writes a usable bundle, resumes after an interruption, and evaluation/prediction use it."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from artefact.bundle import load_bundle, read_meta
from artefact.data import read_manifest, select_split
from artefact.errors import ArtefactError
from artefact.infer import predict_logprobs, topk_accuracy
from artefact_train import loop
from artefact_train.cli import eval_main, predict_main, train_main
from artefact_train.evaluate import evaluate
from helpers import assert_one_line_error, photo, run_cli


def test_bundle_carries_labels_contract_and_splits(tiny_bundle, synth_root):
    bundle = load_bundle(tiny_bundle)
    assert len(bundle.labels) == 12 and bundle.model.num_classes == 12
    assert bundle.preprocess.input_size == 64 and bundle.preprocess.mean == (127.5, 127.5, 127.5)
    assert {l.collection for l in bundle.labels} == {"coins", "figurines", "tablets", "vessels"}
    samples = read_manifest(bundle.manifest)
    assert {s.split for s in samples} == {"train", "val", "test"}
    meta = bundle.meta
    assert meta["metrics"]["best_epoch"] >= 1 and len(meta["metrics"]["history"]) == 4
    assert meta["train_config"]["backbone"] == "tf_efficientnet_lite0"


def test_trained_model_beats_chance_on_new_photos(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    queries = select_split(read_manifest(bundle.manifest), "test")
    logprobs = predict_logprobs(bundle.model, bundle.preprocess, queries, progress=False)
    targets = np.array([bundle.label_ids.index(s.object_id) for s in queries])
    accuracy = topk_accuracy(logprobs, targets, (1, 5))
    assert accuracy["top1"] > 3 / 12  # chance is 1/12
    assert accuracy["top5"] >= accuracy["top1"]


def test_ensemble_of_identical_bundles_equals_single(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    samples = read_manifest(bundle.manifest)
    queries = select_split(samples, "test")
    single, logp1 = evaluate([bundle], queries, samples, progress=False)
    double, logp2 = evaluate([bundle, bundle], queries, samples, progress=False)
    assert np.allclose(logp1, logp2, atol=1e-5)
    assert single["top1"] == double["top1"]
    assert set(single["per_catalogue_size"]) and set(single["per_collection"]) == {"coins", "figurines", "tablets", "vessels"}


@pytest.mark.parametrize("metric_loss", ["none", "arcface"])
def test_resume_after_interruption_continues_the_same_run(synth_root, tmp_path, monkeypatch, metric_loss):
    config = loop.TrainConfig(data=str(synth_root), out=str(tmp_path / "run"), input_size=48, epochs=2,
                              batch_size=16, seed=3, device="cpu", metric_loss=metric_loss)
    real_evaluate = loop.evaluate_split
    calls = {"n": 0}

    def interrupt_on_second_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(loop, "evaluate_split", interrupt_on_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        loop.train(config, progress=False, mark_as_latest=False)
    assert not (tmp_path / "run").exists()  # no half-written bundle
    assert (tmp_path / ".run.resume" / "state.pt").is_file()
    saved = torch.load(tmp_path / ".run.resume" / "state.pt", weights_only=True)
    assert ("metric" in saved) == (metric_loss == "arcface")  # the ArcFace class centres resume too

    monkeypatch.setattr(loop, "evaluate_split", real_evaluate)
    loop.train(config, resume=True, progress=False, mark_as_latest=False)
    meta = read_meta(tmp_path / "run")
    assert [h["epoch"] for h in meta["metrics"]["history"]] == [1, 2]
    assert meta["train_config"]["metric_loss"] == metric_loss
    assert not (tmp_path / ".run.resume" / "state.pt").exists()


def test_arcface_loss_rewards_embeddings_near_their_class():
    config = loop.TrainConfig(data="-", out="-", metric_loss="arcface")
    metric = loop.build_metric_loss(config, num_classes=4, dim=8)
    centres = metric.W.detach().T.reshape(4, 3, 8)[:, 0]  # sub-centre 0 of each class
    labels = torch.arange(4).repeat(4)
    near = metric(centres[labels] + 0.01 * torch.randn(16, 8), labels)
    far = metric(centres[(labels + 1) % 4], labels)
    assert near < far
    assert loop.build_metric_loss(loop.TrainConfig(data="-", out="-"), 4, 8) is None
    with pytest.raises(ArtefactError, match="unknown metric loss"):
        loop.build_metric_loss(loop.TrainConfig(data="-", out="-", metric_loss="triplet"), 4, 8)


def test_resume_refuses_a_different_run(synth_root, tmp_path):
    state_dir = tmp_path / ".run.resume"
    state_dir.mkdir()
    torch.save({"config": json.dumps({"backbone": "other", "seed": 0, "data": str(synth_root), "input_size": 48})},
               state_dir / "state.pt")
    config = loop.TrainConfig(data=str(synth_root), out=str(tmp_path / "run"), input_size=48, epochs=1, device="cpu")
    with pytest.raises(ArtefactError, match="backbone"):
        loop.train(config, resume=True, progress=False, mark_as_latest=False)


def test_corrupt_bundles_are_clear_errors(tiny_bundle, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bundle, broken)
    (broken / "model.safetensors").write_bytes(b"junk")
    with pytest.raises(ArtefactError, match="corrupt or mismatched weights"):
        load_bundle(broken)
    shutil.copy(tiny_bundle / "model.safetensors", broken / "model.safetensors")
    meta = json.loads((broken / "bundle.json").read_text())
    meta["labels"] = meta["labels"][::-1]
    (broken / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(ArtefactError, match="hash"):
        load_bundle(broken)
    (broken / "bundle.json").write_text("{not json")
    with pytest.raises(ArtefactError, match="corrupt bundle metadata"):
        load_bundle(broken)
    with pytest.raises(ArtefactError, match="not a model bundle"):
        load_bundle(tmp_path)


def test_eval_cli_writes_report(tiny_bundle, tmp_path):
    result = run_cli(eval_main, ["--bundle", tiny_bundle, "--split", "test", "--out", tmp_path / "rep", "-q"])
    assert result.exit_code == 0, result.output
    assert "top-1" in result.output
    metrics = json.loads((tmp_path / "rep" / "eval.json").read_text())
    assert 0 <= metrics["top1"] <= metrics["top3"] <= metrics["top5"] <= metrics["top10"] <= 1
    assert (tmp_path / "rep" / "accuracy_vs_photos.png").stat().st_size > 1000
    assert "Per collection" in (tmp_path / "rep" / "eval.md").read_text()


def test_eval_cli_rejects_data_the_bundle_does_not_know(tiny_bundle, tmp_path):
    photo().save(tmp_path / "x.jpg")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,object,collection,split\nx.jpg,stranger,,test\n")
    result = run_cli(eval_main, ["--bundle", tiny_bundle, "--manifest", manifest, "-q"])
    assert_one_line_error(result, "does not know 1 object", "stranger")


def test_predict_cli_ranks_objects_and_rejects_bad_photos(tiny_bundle, synth_root, tmp_path):
    query = next((synth_root / "images").rglob("*.jpg"))
    result = run_cli(predict_main, [query, "--bundle", tiny_bundle, "--top-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    probabilities = [m["probability"] for m in answer["matches"]]
    assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    assert_one_line_error(run_cli(predict_main, [tmp_path / "bad.jpg", "--bundle", tiny_bundle]), "bad.jpg")
    assert_one_line_error(run_cli(predict_main, [query, "--bundle", tmp_path / "none"]), "no such bundle")


def test_train_cli_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run_cli(train_main, ["--data", tmp_path / "empty", "--out", tmp_path / "o"]), "no photos found")
    assert_one_line_error(run_cli(train_main, ["--data", tmp_path / "empty", "--out", tmp_path / "o",
                                               "--backbone", "nope_net", "--no-pretrained"]), "no photos")
