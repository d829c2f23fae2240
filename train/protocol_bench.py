"""The museum-protocol benchmark: several backbones x seeds, trained, evaluated and summarised (mean +- sd).

Finished runs are reused, so an interrupted benchmark continues where it stopped:
    python -m artefact_train.protocol_bench --data ../shared/datasets/eth80 --backbone tf_efficientnet_lite0 \
        --backbone tf_efficientnet_lite2 --seed 0 --seed 1 --seed 2 --out reports/protocol
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import click

from artefact import atomic
from artefact.bundle import META_FILE, load_bundle
from artefact.data import read_manifest, select_split
from artefact.errors import Command
from artefact.logs import setup_logging

from .evaluate import KS, evaluate, write_report
from .loop import PAPER_LR, TrainConfig, train


def run_one(data: str, backbone: str, seed: int, runs: Path, epochs: int, lr: float, patience: int,
            max_minutes: float | None) -> dict:
    """Train (or reuse) one bundle and evaluate it on its test split."""
    out = runs / f"{backbone}-s{seed}"
    if not (out / META_FILE).is_file():
        train(TrainConfig(data=data, out=str(out), backbone=backbone, seed=seed, epochs=epochs, lr=lr, patience=patience,
                          max_minutes=max_minutes),
              resume=(out.parent / f".{out.name}.resume" / "state.pt").is_file(), mark_as_latest=False)
    bundle = load_bundle(out)
    samples = read_manifest(bundle.manifest)
    metrics, _ = evaluate([bundle], select_split(samples, "test"), samples)
    write_report(metrics, out / "eval-test", f"{backbone} seed {seed}: test split")
    train_metrics = bundle.meta["metrics"]
    return {"backbone": backbone, "seed": seed, "bundle": str(out), **{f"top{k}": metrics[f"top{k}"] for k in KS},
            "per_collection": metrics["per_collection"], "per_catalogue_size": metrics["per_catalogue_size"],
            "train_seconds": train_metrics["train_seconds"], "train_images_per_second": train_metrics["train_images_per_second"],
            "best_epoch": train_metrics["best_epoch"]}


def summarise(rows: list[dict]) -> str:
    """Markdown: mean +- sd per backbone, then per-collection and per-catalogue-size top-1 tables."""
    def mean_sd(values: list[float]) -> str:
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{100 * statistics.mean(values):.1f} ± {100 * sd:.1f}"

    backbones = list(dict.fromkeys(r["backbone"] for r in rows))
    lines = ["# Museum protocol benchmark", "", "| backbone | seeds | top-1 | top-3 | top-5 | top-10 | train min | img/s |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name in backbones:
        rs = [r for r in rows if r["backbone"] == name]
        lines.append(f"| {name} | {','.join(str(r['seed']) for r in rs)} | " +
                     " | ".join(mean_sd([r[f'top{k}'] for r in rs]) for k in KS) +
                     f" | {statistics.mean(r['train_seconds'] for r in rs) / 60:.1f} | "
                     f"{statistics.mean(r['train_images_per_second'] for r in rs):.1f} |")
    for table, title in (("per_collection", "Top-1 per collection"), ("per_catalogue_size", "Top-1 per catalogue size n")):
        keys = sorted({k for r in rows for k in r[table]}, key=lambda k: (len(k), k))
        lines += ["", f"## {title} (mean over seeds, %)", "", "| backbone | " + " | ".join(keys) + " |",
                  "|---|" + "---:|" * len(keys)]
        for name in backbones:
            rs = [r for r in rows if r["backbone"] == name]
            cells = [f"{100 * statistics.mean(r[table][k]['top1'] for r in rs if k in r[table]):.1f}"
                     if any(k in r[table] for r in rs) else "-" for k in keys]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


@click.command(cls=Command, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data", required=True, type=click.Path(exists=True), help="Photo folder (split per seed by the museum protocol).")
@click.option("--backbone", "backbones", multiple=True, default=["tf_efficientnet_lite0"], show_default=True)
@click.option("--seed", "seeds", multiple=True, type=int, default=[0], show_default=True)
@click.option("--runs", default="runs/protocol", show_default=True, type=click.Path(file_okay=False))
@click.option("--out", default="reports/protocol", show_default=True, type=click.Path(file_okay=False))
@click.option("--epochs", default=25, show_default=True)
@click.option("--lr", default=PAPER_LR, show_default=True, type=float, help="Backbone learning rate.")
@click.option("--patience", default=6, show_default=True, help="Early-stopping patience (epochs).")
@click.option("--max-minutes", type=float, help="Per-run training time budget.")
def main(data, backbones, seeds, runs, out, epochs, lr, patience, max_minutes) -> None:
    """Train and evaluate every backbone x seed on the museum protocol; write a mean +- sd summary."""
    setup_logging()
    rows = [run_one(data, b, s, Path(runs), epochs, lr, patience, max_minutes) for b in backbones for s in seeds]
    atomic.write_json(Path(out) / "protocol.json", rows)
    atomic.write_text(Path(out) / "protocol.md", summarise(rows))
    click.echo(summarise(rows))
    click.echo(f"report: {Path(out) / 'protocol.md'}")


if __name__ == "__main__":
    main()
