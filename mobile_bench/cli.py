"""artefact-bench: accuracy x latency x size of bundles, their exports and large models; CI accuracy gate."""
from __future__ import annotations

import contextlib
import logging
import shlex
import sys
from pathlib import Path

import click

from artefact.bundle import load_bundle, resolve_bundle_path
from artefact.data import labels_of, load_samples, select_split
from artefact.errors import ArtefactError, Command
from artefact.logs import setup_logging

from . import gate as gating
from .bench import Settings, resolve_reference, run_benchmark
from .machine import describe, machine_info, usable_cores
from .measure import Queries
from .models import ensemble_spec, export_specs, load_bundle_specs, timm_spec
from .report import write_all

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}
log = logging.getLogger("artefact")


def parse_threads(text: str) -> list[int]:
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise ArtefactError(f"--threads {text!r}: expected a comma-separated list of integers, e.g. 1,2") from None
    if not values or min(values) < 1:
        raise ArtefactError(f"--threads {text!r}: thread counts must be >= 1")
    return values


def subsample(samples: list, limit: int | None) -> list:
    """Every k-th query (sorted by object, so every object keeps its share); all when `limit` is None."""
    if not limit or limit >= len(samples):
        return samples
    step = len(samples) / limit
    return [samples[int(i * step)] for i in range(limit)]


@click.command(cls=Command, context_settings=CONTEXT)
@click.option("--bundle", "bundles", multiple=True, type=click.Path(file_okay=False),
              help="Trained bundle (a PyTorch fp32 row, and the float reference of its exports). Repeat for several; "
                   "default: the latest trained.")
@click.option("--exports", "export_dirs", multiple=True, type=click.Path(file_okay=False),
              help="Folder written by artefact-export: every .tflite/.onnx/.mlpackage in it becomes a row. Repeatable.")
@click.option("--model", "model_files", multiple=True, type=click.Path(),
              help="A single exported model file (.tflite/.onnx/.mlpackage). Repeatable.")
@click.option("--timm", "timm_models", multiple=True, metavar="NAME[@SIZE]",
              help="Untrained timm backbone + paper head, latency/size only, e.g. tf_efficientnet_b6@528. Repeatable.")
@click.option("--ensemble/--no-ensemble", default=True, show_default=True,
              help="Add a row for the ensemble of all --bundle models (when two or more share labels).")
@click.option("--manifest", type=click.Path(dir_okay=False), help="Manifest with splits (default: the first bundle's).")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--max-queries", type=click.IntRange(1), help="Measure accuracy on at most N evenly spaced queries (default: the full split).")
@click.option("--threads", "threads_text", default=None, help="Comma-separated thread counts (default: 1,<usable cores>).")
@click.option("--runs", default=50, show_default=True, type=click.IntRange(1), help="Timed runs per model and thread count.")
@click.option("--warmup", default=5, show_default=True, type=click.IntRange(0), help="Untimed warm-up runs after the first inference.")
@click.option("--max-seconds", default=10.0, show_default=True, type=click.FloatRange(0),
              help="Stop timing a model after this many seconds once it has --min-runs runs (slow giants); "
                   "warm-up stops after half of it.")
@click.option("--min-runs", default=5, show_default=True, type=click.IntRange(1), help="Timed runs every model gets.")
@click.option("--reference", help="Row that speed-ups and accuracy deltas are relative to (name or unique part; default: first bundle).")
@click.option("--no-accuracy", is_flag=True, help="Latency, size and cost only.")
@click.option("--accuracy-threads", type=click.IntRange(1),
              help="Which of --threads runs the accuracy pass (default: the highest; 1 is faster on a busy machine).")
@click.option("--field", is_flag=True,
              help="Also measure every trained row on field versions of the queries (object cut out onto clutter, "
                   "photometric shifts, JPEG; see artefact.field): studio vs field top-k and the gap.")
@click.option("--field-seed", default=0, show_default=True, help="Seed of the field photos (same seed, same photos).")
@click.option("--check", "check_spec", metavar="THRESHOLDS",
              help="Accuracy gate: JSON/TOML file or inline 'top1=1,int8.top1=2,agreement=0.95' (top-k: allowed drop in "
                   "points vs the float source; agreement: min share of equal top-1). Exits 1 with a table of failures.")
@click.option("--adb-benchmark-model", "adb_binary", type=click.Path(dir_okay=False),
              help="TFLite benchmark_model binary for Android: push it and every .tflite row to the phone over adb and run it.")
@click.option("--adb-serial", help="adb device serial (when several phones are connected).")
@click.option("--out", "-o", default="reports/bench", show_default=True, type=click.Path(file_okay=False),
              help="Report folder: bench.json, bench.md, bench.html, PNG plots.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def main(bundles, export_dirs, model_files, timm_models, ensemble, manifest, split, max_queries, threads_text, runs,
         warmup, max_seconds, min_runs, reference, no_accuracy, accuracy_threads, field, field_seed, check_spec, adb_binary, adb_serial, out, quiet) -> None:
    """Benchmark accuracy x latency x size of trained bundles, their exports and large models.

    \b
    Example (the full matrix):
      artefact-bench --bundle runs/lite0 --bundle runs/lite2 --exports exports/lite0 \\
          --timm tf_efficientnet_b3@300 --timm tf_efficientnet_b6@528 --threads 1,2 --out reports/bench
    CI gate:
      artefact-bench --bundle B --exports E --check mobile_bench/thresholds.toml --runs 5
    """
    setup_logging()
    threads = parse_threads(threads_text) if threads_text else sorted({1, usable_cores()})
    if accuracy_threads and accuracy_threads not in threads:
        raise ArtefactError(f"--accuracy-threads {accuracy_threads} is not one of --threads {','.join(map(str, threads))}")
    thresholds = gating.load_thresholds(check_spec) if check_spec else None
    if thresholds is not None and no_accuracy:
        raise ArtefactError("--check compares accuracy: it cannot be used with --no-accuracy")
    if field and no_accuracy:
        raise ArtefactError("--field measures accuracy: it cannot be used with --no-accuracy")
    adb = _connect_adb(adb_binary, adb_serial)

    specs, loaded, skipped = _collect_specs(bundles, export_dirs, model_files, timm_models, ensemble, standalone=bool(manifest))
    if thresholds is not None and not any(s.kind == "export" for s in specs):
        raise ArtefactError("--check: no exported models to gate (pass --exports DIR or --model FILE)")
    queries, query_note = _select_queries(loaded, manifest, split, max_queries, progress=not quiet)
    reference_name = resolve_reference(specs, reference)
    log.info(f"{len(specs)} models x threads {threads} on {describe(machine_info())}")
    log.info(f"accuracy on {query_note['used']} of {query_note['total']} {split} queries ({query_note['note']})")

    settings = Settings(threads=threads, runs=runs, warmup=warmup, max_seconds=max_seconds, min_runs=min(min_runs, runs),
                        accuracy=not no_accuracy, accuracy_threads=accuracy_threads, progress=not quiet)
    with contextlib.ExitStack() as scratch:
        field_queries = _field_queries(queries, field_seed, Path(out), scratch) if field else None
        if field:
            query_note["field_seed"] = field_seed
        results = run_benchmark(specs, queries, settings, reference_name, query_note, field_queries)
    results["command"] = "artefact-bench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    results["skipped"] = skipped
    if adb is not None:
        results["android"] = _android_rows(adb, Path(adb_binary), specs, threads, runs, warmup)
    if thresholds is not None:
        results["gate"] = _gate(results, thresholds)
    paths = write_all(results, Path(out))
    click.echo(_summary(results))
    click.echo(f"report: {paths['html']}  ({paths['markdown'].name}, {paths['json'].name}, plots)  in {results['seconds']:.0f} s")
    if thresholds is not None:
        gate = results["gate"]
        if gate["failure_table"]:
            click.echo(gate["failure_table"], err=True)
            raise ArtefactError(f"accuracy gate failed: {gate['checks_total'] - gate['passed_checks']} of "
                                f"{gate['checks_total']} checks (table above)")
        click.echo(f"accuracy gate passed: {gate['checks_total']} checks")


def _collect_specs(bundles, export_dirs, model_files, timm_models, ensemble: bool, standalone: bool):
    """Rows to benchmark: bundles (default: the latest), their ensemble, exports, untrained timm models."""
    bundle_paths = list(bundles)
    if not bundle_paths and not (standalone and (export_dirs or model_files or timm_models)):
        bundle_paths = [resolve_bundle_path(None)]  # the latest trained bundle
    bundle_specs, loaded = load_bundle_specs(bundle_paths)
    for other in loaded[1:]:
        if other.label_hash != loaded[0].label_hash:
            raise ArtefactError(f"bundles {loaded[0].path} and {other.path} know different objects: benchmark them separately")
    specs = list(bundle_specs)
    if ensemble and len(bundle_specs) > 1:
        specs.append(ensemble_spec(bundle_specs))
    exports, skipped = export_specs([Path(d) for d in export_dirs], [Path(f) for f in model_files], bundle_specs)
    for line in skipped:
        log.warning(line)
    specs += exports
    num_classes = len(loaded[0].labels) if loaded else 10
    specs += [timm_spec(name, num_classes) for name in timm_models]
    if not specs:
        raise ArtefactError("nothing to benchmark: pass --bundle, --exports, --model or --timm")
    return specs, loaded, skipped


def _select_queries(loaded, manifest, split: str, max_queries: int | None, progress: bool) -> tuple[Queries, dict]:
    """The labelled query photos of `split` (all, or at most --max-queries evenly spaced) and a note saying which."""
    manifest = manifest or (loaded[0].manifest if loaded else None)
    if manifest is None:
        raise ArtefactError("no --manifest given and no bundle with a saved manifest: the benchmark needs real query photos")
    all_samples = load_samples(manifest)
    split_samples = select_split(all_samples, split)
    for bundle in loaded:
        bundle.check_labels([s.object_id for s in split_samples], f"{split} split of {manifest}")
    label_ids = loaded[0].label_ids if loaded else [obj for obj, _ in labels_of(all_samples)]
    chosen = subsample(split_samples, max_queries)
    note = {
        "split": split, "manifest": str(manifest), "used": len(chosen), "total": len(split_samples),
        "objects": len({s.object_id for s in chosen}),
        "note": "full split" if len(chosen) == len(split_samples)
        else f"subsampled: every {len(split_samples) / len(chosen):.1f}-th query",
    }
    return Queries(chosen, label_ids, progress=progress), note


def _field_queries(queries: Queries, seed: int, out: Path, scratch: contextlib.ExitStack) -> Queries:
    """Field versions of the queries, written to a scratch folder that lives as long as `scratch`."""
    from artefact.field import contact_sheet, field_tempdir, write_field_set

    folder = Path(scratch.enter_context(field_tempdir()))
    samples = write_field_set(queries.samples, folder / "field", seed, queries.progress)
    contact_sheet(samples[:: max(1, len(samples) // 32)], out / "field_examples.png")
    return Queries(samples, queries.label_ids, progress=queries.progress)


def _gate(results: dict, thresholds: dict) -> dict:
    checks = gating.check(results, thresholds)
    failed = [c for c in checks if not c["passed"]]
    return {"thresholds": thresholds, "checks": checks, "checks_total": len(checks), "passed_checks": len(checks) - len(failed),
            "failure_table": gating.failure_table(checks) if failed else ""}


def _connect_adb(binary: str | None, serial: str | None):
    if binary is None:
        return None
    from .android import Adb

    if not Path(binary).is_file():
        raise ArtefactError(f"{binary}: no such benchmark_model binary")
    return Adb(serial)


def _android_rows(adb, binary: Path, specs, threads: list[int], runs: int, warmup: int) -> list[dict]:
    from .android import benchmark_on_device

    rows = []
    for spec in specs:
        if spec.runtime != "tflite":
            continue
        for t in threads:
            log.info(f"phone: {spec.name} at {t} thread(s)")
            rows.append({"model": spec.name, "threads": t, **benchmark_on_device(adb, binary, spec.path, t, runs, warmup)})
    if not rows:
        log.warning("--adb-benchmark-model: no .tflite rows to run on the phone")
    return rows


def _summary(results: dict) -> str:
    by_name = {m["name"]: m for m in results["models"]}
    lines = []
    for row in results["latency"]:
        model = by_name[row["model"]]
        acc = f"top-1 {model['accuracy']['top1']:.1%}" if model.get("accuracy") else ("not trained" if not model["trained"] else "top-1 -")
        lines.append(f"{model['name'][:60]:<60} {model['runtime']:<11} {model['precision']:<4} {row['threads']}t  "
                     f"{acc:<12} p50 {row['p50_ms']:8.2f} ms  p90 {row['p90_ms']:8.2f} ms  {model['size_mb']:6.1f} MB")
    return "\n".join(lines)
