"""artefact-enroll (add an object without retraining) and artefact-openset (gallery, calibration, measurements)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np

from artefact.bundle import Bundle, load_bundle
from artefact.data import Sample, load_samples, natural_key, select_split, write_manifest
from artefact.errors import ArtefactError, Command, Group
from artefact.gallery import (
    METHODS, Gallery, build_gallery, embed, embed_and_predict, empty_gallery, has_gallery, load_gallery, save_gallery,
)
from artefact.images import load_image
from artefact.logs import setup_logging

from . import openset

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
BUNDLE = click.option("--bundle", type=click.Path(file_okay=False), help="Bundle folder (default: the latest trained).")
QUIET = click.option("--quiet", "-q", is_flag=True, help="No progress bars.")


def _catalogue(bundle: Bundle, manifest: str | None, split: str = "train") -> list[Sample]:
    source = manifest or bundle.manifest
    if source is None:
        raise ArtefactError(f"{bundle.path}: the bundle holds no manifest; pass --manifest")
    return select_split(load_samples(source), split)


def _rebuild(bundle: Bundle, manifest: str | None, progress: bool, old: Gallery | None = None,
             dim: int | None = None) -> Gallery:
    """The bundle's catalogue photos, plus objects enrolled into `old` re-embedded from their photos."""
    gallery = build_gallery(bundle, _catalogue(bundle, manifest), progress=progress, dim=dim)
    same = old is not None and (old.fingerprint, old.dim) == (gallery.fingerprint, gallery.dim)
    gallery.threshold = old.threshold if same else None
    for obj in (old.objects if old else []):
        if obj.enrolled and obj.sources and gallery.index_of(obj.object_id) is None:
            photos = [Sample(p, obj.object_id, obj.collection) for p in obj.sources]
            gallery = gallery.add(obj.object_id, obj.collection, embed(bundle, photos, progress=False), obj.sources)
    return gallery


def _gallery_of(bundle: Bundle, progress: bool) -> Gallery:
    """The bundle's gallery; built from its catalogue (train split) the first time."""
    if has_gallery(bundle.path):
        return load_gallery(bundle.path)
    if bundle.manifest is None:
        return empty_gallery(bundle)
    click.echo(f"building the gallery of {bundle.path} from its catalogue photos (once)", err=True)
    return build_gallery(bundle, _catalogue(bundle, None), progress=progress)


@click.command(cls=Command, context_settings=CONTEXT)
@click.argument("photos", nargs=-1, required=True, type=click.Path())
@BUNDLE
@click.option("--object", "object_id", required=True, help="Catalogue id of the new object.")
@click.option("--collection", default="", help="Collection it belongs to.")
@click.option("--replace", is_flag=True, help="Re-enrol an object that is already in the gallery.")
@QUIET
def enroll_main(photos, bundle, object_id, collection, replace, quiet) -> None:
    """Add an object to a bundle's gallery from a few photos, in seconds, without retraining.

    artefact-predict then ranks it with the catalogue. The gallery (gallery.safetensors +
    gallery.json inside the bundle) is built from the bundle's catalogue photos on first use.
    """
    setup_logging()
    started = time.time()
    loaded = load_bundle(bundle)
    object_id = object_id.strip()
    if not object_id:
        raise ArtefactError("--object must not be empty")
    for path in photos:
        load_image(path)  # a clear error naming the file before any slow work or any write
    gallery = _gallery_of(loaded, progress=not quiet)
    samples = [Sample(str(Path(p).resolve()), object_id, collection) for p in photos]
    vectors = embed(loaded, samples, progress=False)
    if gallery.objects:
        nearest = gallery.scores(vectors.mean(0, keepdims=True))[0]
        best = int(np.argmax(nearest))
        click.echo(f"closest catalogued object: {gallery.objects[best].object_id} (similarity {nearest[best]:.3f})")
    gallery = gallery.add(object_id, collection, vectors, [s.path for s in samples], replace_existing=replace)
    save_gallery(gallery, loaded.path)
    click.echo(f"enrolled {object_id} from {len(photos)} photo(s) in {time.time() - started:.1f} s; "
               f"gallery of {loaded.path}: {len(gallery.objects)} objects, {len(gallery.rows)} photos")


@click.group(cls=Group, context_settings=CONTEXT)
def openset_main() -> None:
    """Open-set tools: embedding gallery, 'not in catalogue' threshold, held-out and scale measurements."""
    setup_logging()


@openset_main.command("gallery")
@BUNDLE
@click.option("--manifest", type=click.Path(dir_okay=False), help="Catalogue manifest (default: the bundle's own).")
@click.option("--dtype", type=click.Choice(["float32", "int8"]), default="float32", show_default=True,
              help="Storage of the embeddings; int8 is a quarter of the size.")
@click.option("--dim", type=click.IntRange(1), help="Reduce embeddings to this many PCA components (fitted on the catalogue).")
@QUIET
def gallery_cmd(bundle, manifest, dtype, dim, quiet) -> None:
    """(Re)build a bundle's gallery from its catalogue (train-split) photos; enrolled objects are kept."""
    loaded = load_bundle(bundle)
    old = load_gallery(loaded.path, check_fingerprint=False) if has_gallery(loaded.path) else None
    gallery = _rebuild(loaded, manifest, not quiet, old, dim)
    save_gallery(gallery, loaded.path, dtype)
    click.echo(f"gallery of {loaded.path}: {len(gallery.objects)} objects, {len(gallery.rows)} photos, "
               f"{gallery.dim}-d {dtype} (threshold {'kept' if gallery.threshold else 'not calibrated'})")


@openset_main.command("calibrate")
@BUNDLE
@click.option("--manifest", type=click.Path(dir_okay=False), help="Manifest with a val split (default: the bundle's own).")
@click.option("--recall", default=0.95, show_default=True, type=click.FloatRange(0.5, 1.0, max_open=True),
              help="Fraction of known objects' validation photos that must be accepted.")
@click.option("--method", type=click.Choice(METHODS), default="nn", show_default=True, help="Gallery score.")
@QUIET
def calibrate_cmd(bundle, manifest, recall, method, quiet) -> None:
    """Set the 'not in catalogue' threshold on validation photos; stored in gallery.json.

    Below it, artefact-predict (and the apps) answer "no match".  Both a similarity threshold
    (gallery) and a probability threshold (closed-set head) are written.
    """
    loaded = load_bundle(bundle)
    gallery = _gallery_of(loaded, progress=not quiet)
    val = [s for s in _catalogue(loaded, manifest, "val") if gallery.index_of(s.object_id) is not None]
    if not val:
        raise ArtefactError("no validation photos of gallery objects to calibrate on")
    embeddings, logprobs = embed_and_predict(loaded.model, loaded.preprocess, val, progress=not quiet)
    gallery.threshold = {
        "similarity": openset.calibrate(gallery.scores(embeddings, method).max(1), recall),
        "probability": openset.calibrate(np.exp(logprobs).max(1), recall),
        "method": method, "known_recall": recall, "validation_photos": len(val),
    }
    save_gallery(gallery, loaded.path)
    t = gallery.threshold
    click.echo(f"'not in catalogue' below similarity {t['similarity']:.3f} (gallery) or probability "
               f"{t['probability']:.3f} (head); {recall:.0%} of {len(val)} validation photos accepted")


@openset_main.command("holdout")
@click.option("--data", required=True, type=click.Path(), help="Photo folder or manifest (unsplit data is split by the museum protocol).")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Folder for all.csv, known.csv, held_out.txt.")
@click.option("--fraction", default=0.2, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Fraction of each collection's objects left out of training.")
@click.option("--seed", default=0, show_default=True, help="Seed of the museum protocol and of the choice.")
def holdout_cmd(data, out, fraction, seed) -> None:
    """Leave objects out of training: write known.csv (train on it) and all.csv (measure on it)."""
    from artefact.data import museum_protocol

    samples = load_samples(data)
    if not all(s.split for s in samples):
        samples = museum_protocol(samples, seed=seed)
    held = openset.hold_out(samples, fraction, seed)
    out = Path(out)
    write_manifest(samples, out / "all.csv")
    write_manifest([s for s in samples if s.object_id not in held], out / "known.csv")
    from artefact import atomic

    atomic.write_text(out / "held_out.txt", "\n".join(sorted(held, key=natural_key)) + "\n")
    click.echo(f"{len(held)} object(s) held out: {', '.join(sorted(held, key=natural_key))}")
    click.echo(f"next: artefact-train --data {out / 'known.csv'} --out runs/NAME && "
               f"artefact-openset measure --bundle runs/NAME --manifest {out / 'all.csv'}")


@openset_main.command("measure")
@BUNDLE
@click.option("--manifest", required=True, type=click.Path(dir_okay=False), help="all.csv of `artefact-openset holdout` (trained + held-out objects).")
@click.option("--shots", default=3, show_default=True, type=click.IntRange(1), help="Catalogue photos used to enrol each held-out object.")
@click.option("--fuse", default=3, show_default=True, type=click.IntRange(2), help="Photos per multi-photo query.")
@click.option("--recall", default=0.95, show_default=True, type=click.FloatRange(0.5, 1.0, max_open=True))
@click.option("--method", type=click.Choice(METHODS), default="nn", show_default=True, help="Gallery score.")
@click.option("--queries-per-object", type=click.IntRange(1), help="Use at most this many test photos per object (evenly spread; default: all).")
@click.option("--pca-dim", default=256, show_default=True, type=click.IntRange(1), help="Dimension of the PCA-reduced int8 gallery compared.")
@click.option("--field", is_flag=True, help="Query with field versions (cluttered backgrounds) of the test photos.")
@click.option("--field-seed", default=0, show_default=True)
@click.option("--out", "-o", type=click.Path(file_okay=False), help="Report folder (default: <bundle>/openset[-field]).")
@QUIET
def measure_cmd(bundle, manifest, shots, fuse, recall, method, queries_per_object, pca_dim, field, field_seed, out, quiet) -> None:
    """Enrolment of held-out objects, unknown-object rejection and multi-photo fusion; JSON + Markdown."""
    loaded = load_bundle(bundle)
    samples = load_samples(manifest)
    if field:
        from artefact.field import field_tempdir, write_field_set

        with field_tempdir() as tmp:
            test = select_split(samples, "test")
            test = openset.spread_per_object(test, queries_per_object) if queries_per_object else test
            test = write_field_set(test, Path(tmp) / "field", field_seed, progress=not quiet)
            samples = [s for s in samples if s.split != "test"] + test
            report = openset.measure(loaded, samples, shots, fuse, recall, method, progress=not quiet, pca_dim=pca_dim,
                                     queries_per_object=queries_per_object)
        report["queries_are"] = f"field photos (seed {field_seed})"
    else:
        report = openset.measure(loaded, samples, shots, fuse, recall, method, progress=not quiet, pca_dim=pca_dim,
                                     queries_per_object=queries_per_object)
        report["queries_are"] = "studio photos"
    out = Path(out) if out else loaded.path / ("openset-field" if field else "openset")
    paths = openset.write_report(report, out)
    e = report["enrolment"][f"{shots}_photos"]
    r = report["rejection"]
    click.echo(f"enrolled ({shots} photos) top-1 {e['enrolled_objects_gallery']['top1']:.1%} vs trained "
               f"{e['trained_objects_head']['top1']:.1%} (head) / {e['trained_objects_gallery']['top1']:.1%} (gallery)")
    click.echo(f"unknown rejection AUROC {r['similarity']['auroc']:.3f} (similarity), {r['probability']['auroc']:.3f} (probability)")
    click.echo(f"report: {paths['markdown']}")


@openset_main.command("scale")
@click.option("--sizes", default="1000,10000,50000", show_default=True, help="Catalogue sizes (objects), comma-separated.")
@click.option("--dim", default=1280, show_default=True, type=click.IntRange(8), help="Embedding dimension (Lite0: 1280).")
@click.option("--photos-per-object", default=1, show_default=True, type=click.IntRange(1), help="Gallery rows per object.")
@click.option("--out", "-o", default="reports/scale", show_default=True, type=click.Path(file_okay=False))
def scale_cmd(sizes, dim, photos_per_object, out) -> None:
    """Memory, file size and latency of the closed-set head vs gallery search at 1k-50k objects."""
    try:
        counts = [int(v) for v in sizes.split(",") if v.strip()]
    except ValueError:
        raise ArtefactError(f"--sizes must be comma-separated integers, not {sizes!r}") from None
    if not counts or min(counts) < 1:
        raise ArtefactError(f"--sizes must be positive integers, not {sizes!r}")
    report = openset.scale_benchmark(counts, dim, photos_per_object=photos_per_object)
    paths = openset.write_report(report, Path(out), stem="scale")
    click.echo(openset.scale_markdown(report))
    click.echo(f"report: {paths['markdown']}")


def format_ranking(path: str, result: dict, as_json: bool = False) -> str:
    """artefact-predict's output for a gallery ranking (`artefact.gallery.rank`)."""
    if as_json:
        return json.dumps({"image": str(path), **result})
    lines = [f"{path}" + ("  -> no match (not in the catalogue)" if result["decision"] == "no match" else "")]
    for i, m in enumerate(result["matches"], 1):
        head = "enrolled" if m["probability"] is None else f"p={m['probability']:.1%}"
        lines.append(f"  {i}. {m['object']:<24} {m['collection']:<16} similarity {m['similarity']:.3f}  {head}")
    return "\n".join(lines)
