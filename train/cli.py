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
from artefact.gallery import has_gallery, load_gallery, rank as gallery_rank
from artefact.images import load_image
from artefact.infer import default_device
from artefact.logs import setup_logging
from artefact.model import DEFAULT_BACKBONE

from .analysis import capture_features, write_analysis
from .evaluate import evaluate, headline, write_report
from .loop import PAPER_LR, TrainConfig, train
from .openset import evaluate_field, field_headline
from .openset_cli import format_ranking

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
@click.option("--augment", type=click.Choice(["standard", "field", "none"]), default="standard", show_default=True,
              help="field: also composite objects onto cluttered backgrounds (masks/ beside images/, else a heuristic) with strong photometric jitter.")
@click.option("--metric-loss", type=click.Choice(["none", "arcface"]), default="none", show_default=True,
              help="arcface: also train the pooled features with sub-center ArcFace (better gallery embeddings for "
                   "enrolled and unknown objects).")
@click.option("--metric-weight", default=1.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Weight of the metric loss next to the paper's NLL loss.")
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default=default_device(), show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--max-minutes", type=float, help="Stop after this many minutes (keeps the best epoch).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run into the same --out.")
@click.option("--mark-latest/--no-mark-latest", default=True, show_default=True,
              help="Record the bundle in runs/LATEST, the default of later commands.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def train_main(data, out, backbone, weights, no_pretrained, input_size, epochs, batch_size, lr, head_lr, patience,
               min_images, augment, metric_loss, metric_weight, seed, device, max_minutes, resume, mark_latest, quiet) -> None:
    """Train a recognition model (the Durham study's head and loss) and write a model bundle."""
    setup_logging()
    if weights and no_pretrained:
        raise ArtefactError("--weights and --no-pretrained contradict each other")
    config = TrainConfig(data=str(data), out=str(out), backbone=backbone, weights=weights, pretrained=not no_pretrained,
                         input_size=input_size, epochs=epochs, batch_size=batch_size, lr=lr, head_lr=head_lr,
                         patience=patience, min_images=min_images, augment=augment, metric_loss=metric_loss,
                         metric_weight=metric_weight, seed=seed, device=device, max_minutes=max_minutes)
    path = train(config, resume=resume, progress=not quiet, mark_as_latest=mark_latest)
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
@click.option("--analysis", is_flag=True, help="Also add t-SNE/PCA of query features, most-confused pairs with photos, per-object accuracy, and write eval.html.")
@click.option("--field", is_flag=True, help="Also evaluate field versions of the queries (object cut out by its mask onto clutter, photometric shifts, JPEG): studio vs field top-1/5.")
@click.option("--field-seed", default=0, show_default=True, help="Seed of the field photos (same seed, same photos).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def eval_main(bundles, manifest, split, out, batch_size, analysis, field, field_seed, quiet) -> None:
    """Top-1/3/5/10 overall, per collection and per catalogue size; JSON + Markdown + plot."""
    setup_logging()
    loaded = [load_bundle(b) for b in (bundles or [None])]
    manifest = manifest or loaded[0].manifest
    if manifest is None:
        raise ArtefactError("no --manifest given and the bundle holds none")
    all_samples = load_samples(manifest)
    queries = select_split(all_samples, split)
    with capture_features(loaded[0].model, enabled=analysis) as features:
        metrics, logprobs = evaluate(loaded, queries, all_samples, batch_size, progress=not quiet)
    metrics["split"] = split
    out = Path(out) if out else loaded[0].path / f"eval-{split}"
    title = f"artefact evaluation: {split} split" + (f", ensemble of {len(loaded)}" if len(loaded) > 1 else "")
    if field:
        metrics["field"] = evaluate_field(loaded, queries, all_samples, metrics, out, field_seed, batch_size, not quiet)
    paths = write_report(metrics, out, title)
    if analysis:
        paths.update(write_analysis(loaded[0], metrics, queries, all_samples, logprobs, np.concatenate(features), paths, title))
    click.echo(headline(metrics))
    if field:
        click.echo(field_headline(metrics["field"]))
    click.echo(f"report: {paths['markdown']}" + (f" and {paths['html']}" if "html" in paths else ""))


@click.command(cls=Command, context_settings=CONTEXT)
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--bundle", type=click.Path(file_okay=False), help="Bundle folder (default: the latest trained).")
@click.option("--top-k", default=5, show_default=True, type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines instead of a table.")
@click.option("--head-only", is_flag=True, help="Ignore the bundle's gallery: rank trained objects by the classifier head.")
def predict_main(images, bundle, top_k, as_json, head_only) -> None:
    """Rank the catalogue objects most likely shown in each photo.

    With a gallery in the bundle (artefact-enroll / artefact-openset gallery), all gallery objects,
    enrolled ones included, are ranked by embedding similarity, and "no match" is reported below
    the calibrated threshold; otherwise the trained objects are ranked by the head's probability.
    """
    setup_logging()
    import torch

    loaded = load_bundle(bundle)
    gallery = None if head_only or not has_gallery(loaded.path) else load_gallery(loaded.path)
    k = min(top_k, len(loaded.labels))
    for path in images:
        if gallery is not None:
            click.echo(format_ranking(path, gallery_rank(loaded, gallery, load_image(path), top_k), as_json))
            continue
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
