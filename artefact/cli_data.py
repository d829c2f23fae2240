"""artefact-data: inspect catalogues, split them by the museum protocol, generate synthetic ones."""
from __future__ import annotations

import json
from pathlib import Path

import click

from . import data, synth
from .errors import ArtefactError, Group
from .infer import validate_photos
from .logs import setup_logging


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Inspect photo catalogues, split them by the museum protocol, or generate a synthetic one.

    DATA is a folder laid out <root>/<collection>/<object>/*.jpg (or <root>/<object>/*.jpg)
    or a CSV manifest with columns path,object,collection,split.
    """
    setup_logging()


def _load_checked(source: str, min_images: int) -> list[data.Sample]:
    samples = data.load_samples(source)
    samples, unreadable = validate_photos(samples)
    for message in unreadable:
        click.echo(f"warning: skipped {message}", err=True)
    if unreadable:
        click.echo(f"warning: {len(unreadable)} unreadable photo(s) skipped", err=True)
    samples, dropped = data.filter_min_images(samples, min_images)
    if dropped:
        click.echo(f"warning: dropped {len(dropped)} object(s) with fewer than {min_images} photos: "
                   f"{', '.join(dropped[:8])}{' ...' if len(dropped) > 8 else ''}", err=True)
    if not samples:
        raise ArtefactError(f"{source}: no object has at least {min_images} readable photos")
    return samples


@main.command()
@click.argument("source", metavar="DATA", type=click.Path())
@click.option("--min-images", default=3, show_default=True, type=click.IntRange(1), help="Drop objects with fewer photos.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def summary(source: str, min_images: int, as_json: bool) -> None:
    """Check every photo and print objects, images, collections and photos per object."""
    stats = data.summarize(_load_checked(source, min_images))
    click.echo(json.dumps(stats, indent=2) if as_json else data.format_summary(stats))


@main.command()
@click.argument("source", metavar="DATA", type=click.Path())
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="Manifest CSV to write.")
@click.option("--seed", default=0, show_default=True, help="Seed of the catalogue-size draw and photo shuffle.")
@click.option("--min-images", default=3, show_default=True, type=click.IntRange(1), help="Drop objects with fewer photos.")
def split(source: str, out: str, seed: int, min_images: int) -> None:
    """Write a museum-protocol manifest: per object n~{3..10} catalogue photos, 2 val, rest test."""
    samples = data.museum_protocol(_load_checked(source, min_images), seed=seed)
    path = data.write_manifest(samples, out)
    click.echo(data.format_summary(data.summarize(samples)))
    click.echo(f"wrote {path}")


@main.command("synth")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--objects", default=12, show_default=True, type=click.IntRange(2), help="Distinct objects.")
@click.option("--photos", default=8, show_default=True, type=click.IntRange(1), help="Photos per object.")
@click.option("--size", default=128, show_default=True, type=click.IntRange(32), help="Photo side in pixels.")
@click.option("--seed", default=0, show_default=True)
def synth_command(out: str, objects: int, photos: int, size: int, seed: int) -> None:
    """Generate a procedural catalogue (images/ and masks/) for tests and offline demos."""
    path = synth.generate(out, objects=objects, photos=photos, size=size, seed=seed)
    click.echo(f"wrote {objects} objects x {photos} photos to {Path(path) / 'images'}")
