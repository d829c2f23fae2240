"""artefact-train, artefact-eval and artefact-predict."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import click
import numpy as np

from artefact.bundle import load_bundle
from artefact.data import load_samples, select_split
from artefact.errors import ArtefactError, Command
from artefact.images import load_image
from artefact.infer import default_device
from artefact.logs import setup_logging
from artefact.model import DEFAULT_BACKBONE

from .evaluate import evaluate, headline, write_report
from .loop import PAPER_LR, TrainConfig, train

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
log = logging.getLogger("artefact")


@click.command(cls=Command, context_settings=CONTEXT)
@click.option("--data", required=True, type=click.Path(), help="Photo folder or CSV manifest (unsplit data is split by the museum protocol with --seed).")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Bundle folder to write.")
@click.option("--backbone", default=DEFAULT_BACKBONE, show_default=True, help="Any timm model name.")
@click.option("--weights", type=click.Path(dir_okay=False), help="Backbone ImageNet weights file (.pth/.safetensors).")
@click.option("--no-pretrained", is_flag=True, help="Start from random weights (tests only).")
@click.option("--input-size", type=click.IntRange(32), help="Override the backbone's native input size.")
@click.option("--epochs", default=25, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1))
@click.option("--lr", default=PAPER_LR, show_default=True, type=float, help="Backbone learning rate (the study: 10^-4.8).")
@click.option("--head-lr", default=1e-3, show_default=True, type=float, help="Learning rate of the new head.")
@click.option("--patience", default=6, show_default=True, type=click.IntRange(1), help="Early stopping: epochs without val improvement.")
@click.option("--min-images", default=3, show_default=True, type=click.IntRange(1), help="Drop objects with fewer photos.")
@click.option("--augment", type=click.Choice(["standard", "none"]), default="standard", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default=default_device(), show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--max-minutes", type=float, help="Stop after this many minutes (keeps the best epoch).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run into the same --out.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def train_main(data, out, backbone, weights, no_pretrained, input_size, epochs, batch_size, lr, head_lr, patience,
               min_images, augment, seed, device, max_minutes, resume, quiet) -> None:
    """Train a recognition model (the Durham study's head and loss) and write a model bundle."""
    setup_logging()
    if weights and no_pretrained:
        raise ArtefactError("--weights and --no-pretrained contradict each other")
    config = TrainConfig(data=str(data), out=str(out), backbone=backbone, weights=weights, pretrained=not no_pretrained,
                         input_size=input_size, epochs=epochs, batch_size=batch_size, lr=lr, head_lr=head_lr,
                         patience=patience, min_images=min_images, augment=augment, seed=seed, device=device,
                         max_minutes=max_minutes)
    path = train(config, resume=resume, progress=not quiet)
    meta = json.loads((path / "bundle.json").read_text())
    m = meta["metrics"]
    click.echo(f"bundle written to {path}  (best epoch {m['best_epoch']}, val top-1 {m['val_top1']:.1%}, "
               f"{m['train_seconds'] / 60:.1f} min, {m['train_images_per_second']:.1f} img/s)")


@click.command(cls=Command, context_settings=CONTEXT)
@click.option("--bundle", "bundles", multiple=True, type=click.Path(file_okay=False), help="Bundle folder; repeat for an ensemble (mean probabilities). Default: the latest trained.")
@click.option("--manifest", type=click.Path(dir_okay=False), help="Manifest with splits (default: the one saved in the bundle).")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--out", "-o", type=click.Path(file_okay=False), help="Report folder (default: <bundle>/eval-<split>).")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1))
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def eval_main(bundles, manifest, split, out, batch_size, quiet) -> None:
    """Top-1/3/5/10 overall, per collection and per catalogue size; JSON + Markdown + plot."""
    setup_logging()
    loaded = [load_bundle(b) for b in (bundles or [None])]
    manifest = manifest or loaded[0].manifest
    if manifest is None:
        raise ArtefactError("no --manifest given and the bundle holds none")
    all_samples = load_samples(manifest)
    queries = select_split(all_samples, split)
    metrics, _ = evaluate(loaded, queries, all_samples, batch_size, progress=not quiet)
    metrics["split"] = split
    out = Path(out) if out else loaded[0].path / f"eval-{split}"
    title = f"artefact evaluation: {split} split" + (f", ensemble of {len(loaded)}" if len(loaded) > 1 else "")
    paths = write_report(metrics, out, title)
    click.echo(headline(metrics))
    click.echo(f"report: {paths['markdown']}")


@click.command(cls=Command, context_settings=CONTEXT)
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--bundle", type=click.Path(file_okay=False), help="Bundle folder (default: the latest trained).")
@click.option("--top-k", default=5, show_default=True, type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines instead of a table.")
def predict_main(images, bundle, top_k, as_json) -> None:
    """Rank the catalogue objects most likely shown in each photo."""
    setup_logging()
    import torch

    loaded = load_bundle(bundle)
    k = min(top_k, len(loaded.labels))
    for path in images:
        x = torch.from_numpy(loaded.preprocess(load_image(path)))[None]
        with torch.no_grad():
            probs = np.exp(loaded.model(x)[0].numpy())
        order = np.argsort(-probs)[:k]
        ranked = [{"object": loaded.labels[i].object_id, "collection": loaded.labels[i].collection,
                   "probability": round(float(probs[i]), 4)} for i in order]
        if as_json:
            click.echo(json.dumps({"image": str(path), "matches": ranked}))
        else:
            click.echo(str(path))
            for rank, match in enumerate(ranked, 1):
                click.echo(f"  {rank}. {match['object']:<24} {match['collection']:<16} {match['probability']:.1%}")
