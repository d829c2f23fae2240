"""`artefact-export`: bundle -> ONNX / TFLite / Core ML / field-app assets, with a parity gate."""
from __future__ import annotations

import sys

import click

from artefact.errors import ArtefactError, Command
from artefact.logs import setup_logging

from .calibration import DEFAULT_NUM_CALIBRATION
from .parity import Gate
from .pipeline import TARGETS, ExportOptions, run_export

EPILOG = """\b
Examples:
  artefact-export --target tflite --int8            # latest bundle (runs/LATEST) -> exports/<bundle>/
  artefact-export --bundle runs/b --target all --check
  artefact-export --bundle runs/b --target android --out android_demo/app/src/main/assets

\b
Precision: no flag = every precision of the target (TFLite fp32+fp16+int8; Core ML fp16;
'all' adds Core ML int8 weights and the android assets). --int8 / --fp16 = only that one.
int8 TFLite: uint8 NHWC raw-pixel input (normalisation folded into the input quantisation),
float32 log-probability output, calibrated on real training photos (--calibration overrides).
--check exits 1 when an fp32/fp16 export agrees with PyTorch on fewer than --min-agreement
of val+test top-1 predictions, or an int8 export loses more than --max-int8-drop points top-1.
"""


@click.command(cls=Command, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--bundle", "bundle", type=click.Path(), default=None,
              help="Model bundle folder. Default: the latest trained bundle (runs/LATEST).")
@click.option("--target", type=click.Choice(TARGETS), default="tflite", show_default=True,
              help="What to export.")
@click.option("--int8", "int8", is_flag=True, help="Only int8 (TFLite full integer; Core ML int8 weights).")
@click.option("--fp16", "fp16", is_flag=True, help="Only fp16.")
@click.option("--calibration", type=click.Path(), default=None,
              help="int8 calibration photos: a manifest .csv or a photo folder. Default: the bundle's train split.")
@click.option("--num-calibration", type=int, default=DEFAULT_NUM_CALIBRATION, show_default=True,
              help="Calibration photos (round-robin over objects, so all are represented).")
@click.option("--out", type=click.Path(), default=None,
              help="Output folder. Default: exports/<bundle name>/ (--target android: the asset folder, default exports/<bundle name>/android).")
@click.option("--check", is_flag=True, help="Exit 1 when the parity gate fails (what CI runs).")
@click.option("--min-agreement", type=click.FloatRange(0, 1), default=Gate.min_agreement, show_default=True,
              help="Gate: fp32/fp16 top-1 agreement with PyTorch (fraction).")
@click.option("--max-int8-drop", type=click.FloatRange(0, 100), default=100 * Gate.max_int8_drop, show_default=True,
              help="Gate: allowed int8 top-1 loss vs PyTorch, in points.")
@click.option("--parity/--no-parity", "run_parity", default=True, show_default=True,
              help="Measure parity on the val and test photos (always on with --check).")
@click.option("--max-parity-photos", type=click.IntRange(1), default=None,
              help="Evaluate parity on an evenly spaced subset of this many val+test photos.")
@click.option("--threads", type=click.IntRange(1), default=None, help="CPU threads for parity inference.")
@click.option("--gallery/--no-gallery", default=True, show_default=True,
              help="android: ship the embedding gallery (catalogue photos + objects enrolled with artefact-enroll), "
                   "so the apps rank enrolled objects too.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(bundle, target, int8, fp16, calibration, num_calibration, out, check, min_agreement, max_int8_drop,
         run_parity, max_parity_photos, threads, gallery, quiet, verbose) -> None:
    """Export a trained bundle for phones and browsers, and prove it is as accurate as PyTorch.

    Writes the models, an export manifest (files, sizes, sha256, preprocessing contract, label
    hash, source bundle hash) and a parity report (parity.json, parity.md) into --out.
    """
    setup_logging(verbose)
    if int8 and fp16:
        raise ArtefactError("--int8 and --fp16 exclude each other; pass one (or neither for every precision)")
    options = ExportOptions(
        bundle=bundle, target=target, precision="int8" if int8 else "fp16" if fp16 else None,
        calibration=calibration, num_calibration=num_calibration, out=out, check=check,
        gate=Gate(min_agreement=min_agreement, max_int8_drop=max_int8_drop / 100.0),
        run_parity=run_parity, max_parity_photos=max_parity_photos, threads=threads, progress=not quiet,
        gallery=gallery,
    )
    result = run_export(options)
    click.echo(f"exported to {result['out']} in {result['timings_s']['export_total']:.0f} s:")
    for name, info in result["files"].items():
        click.echo(f"  {name:<24} {info['size_bytes'] / 1e6:8.2f} MB  {info['sha256'][:12]}")
    if result["parity"]:
        click.echo(f"parity report: {result['out']}/parity.md")
    if result["gate_failures"]:
        for failure in result["gate_failures"]:
            click.echo(f"FAIL {failure}", err=True)
        if check:
            sys.exit(1)
    elif check:
        click.echo("parity gate: pass")
