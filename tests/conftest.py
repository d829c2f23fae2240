"""Shared fixtures: a tiny synthetic catalogue and a small trained bundle, built once per session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TQDM_DISABLE", "1")

ROOT = Path(__file__).resolve().parents[1]
ETH80 = ROOT.parent / "shared" / "datasets" / "eth80"


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """12 synthetic objects x 8 photos (64 px) with masks."""
    from artefact.synth import generate

    return generate(tmp_path_factory.mktemp("synth") / "catalogue", objects=12, photos=8, size=96, seed=0)


@pytest.fixture(scope="session")
def tiny_bundle(synth_root, tmp_path_factory) -> Path:
    """A pretrained Lite0 + paper head trained 3 epochs at 64 px on the synthetic catalogue."""
    from artefact_train.loop import TrainConfig, train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    config = TrainConfig(data=str(synth_root), out=str(out), input_size=64, epochs=3, batch_size=16,
                         head_lr=3e-3, lr=1e-3, seed=0, device="cpu")
    return train(config, progress=False, mark_as_latest=False)
