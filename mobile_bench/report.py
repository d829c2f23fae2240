"""Benchmark outputs: bench.json, bench.md, PNG plots and one self-contained bench.html."""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from artefact import atomic

from .machine import describe
from .measure import KS


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _ms(x: float | None) -> str:
    return "-" if x is None else (f"{x:.2f}" if x < 100 else f"{x:.0f}")


def _num(x: float | None, fmt: str, scale: float = 1.0, suffix: str = "") -> str:
    return "-" if x is None else f"{x / scale:{fmt}}{suffix}"


def _model_rows(results: dict) -> list[tuple[dict, dict]]:
    by_name = {m["name"]: m for m in results["models"]}
    return [(by_name[row["model"]], row) for row in results["latency"]]


def markdown(results: dict) -> str:
    """The whole report as Markdown: machine, settings, one table row per model x threads, Android, gate."""
    q, s = results["queries"], results["settings"]
    lines = [
        "# artefact-bench", "",
        f"Machine: {describe(results['machine'])}", "",
        f"Queries: {q['used']} of {q['total']} photos of the {q['split']} split ({q['note']}); "
        f"{q['objects']} objects. Accuracy measured once per model at {s['accuracy_threads']} thread(s).", "",
        f"Latency: {s['timed']}; {s['warmup']} warm-up runs, then up to {s['runs']} timed runs per model, models at the "
        f"same thread count interleaved (A B A B); a model stops after {s['max_seconds_per_row']:.0f} s of timing once it "
        f"has {s.get('min_runs', 10)} runs. Reference row: **{results['reference']}** (Δ top-1 and speed-up are against it).", "",
        "| model | runtime | prec. | thr. | top-1 | top-3 | top-5 | top-10 | Δ top-1 | p50 ms | p90 ms | mean ± std ms "
        "| init ms | first ms | runs | speed-up | size MB | params M | GMACs | peak RSS MB (Δ) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model, row in _model_rows(results):
        acc = model.get("accuracy")
        accuracy = [_pct(acc[f"top{k}"]) for k in KS] if acc else (["not trained"] + ["-"] * 3 if not model["trained"] else ["-"] * 4)
        delta = model.get("delta_vs_reference", {}).get("top1")
        lines.append(
            f"| {model['name']} | {model['runtime']} | {model['precision']} | {row['threads']} | " + " | ".join(accuracy)
            + f" | {_num(delta, '+.1f', 0.01)} | {_ms(row['p50_ms'])} | {_ms(row['p90_ms'])} | "
            f"{_ms(row['mean_ms'])} ± {_ms(row['std_ms'])}{'' if row.get('timed') == 'model' else ' (e2e)'} | {_ms(row['init_ms'])} | {_ms(row['first_ms'])} | {row['runs']} | "
            f"{_num(row.get('speedup_vs_reference'), '.2f', 1, 'x')} | {model['size_mb']:.1f} | "
            f"{_num(model['params'], '.2f', 1e6)} | {_num(model['macs'], '.2f', 1e9)} | "
            f"{row['peak_rss_mb']:.0f} ({row['rss_delta_mb']:+.0f}) |"
        )
    lines += headline(results)
    lines += field_section(results)
    notes = [f"- {m['name']}: {m['note']}" for m in results["models"] if m.get("note")]
    notes += [f"- {line}" for line in results.get("skipped", [])]
    agreement = [f"- {m['name']}: top-1 agreement with {m['source']} {m['agreement_with_source']:.2%}, "
                 f"Δ top-1 vs source {m['delta_vs_source']['top1'] * 100:+.2f} points"
                 for m in results["models"] if m.get("agreement_with_source") is not None and m.get("delta_vs_source")]
    if agreement:
        lines += ["", "## Exports vs their float source", ""] + agreement
    if notes:
        lines += ["", "## Notes", ""] + notes
    lines += ["", "Peak RSS: the process's peak resident memory while loading, first inference and warm-up of that model "
              "(in brackets: growth over the RSS before loading it; models loaded earlier stay resident). "
              "Params and MACs of exports are those of their source model (same graph); MACs = torch FLOP counter / 2."]
    if results.get("android"):
        lines += ["", "## Android phone (TFLite benchmark_model over adb)", "",
                  "| model | device | thr. | mean ms | std ms | p50 ms | init ms | first ms | warm-up avg ms | runs | memory MB |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in results["android"]:
            mem = r.get("peak_memory_mb", r.get("memory_overall_mb"))
            lines.append(f"| {r['model']} | {r.get('device', '')} | {r['threads']} | {_ms(r['mean_ms'])} | {_ms(r.get('std_ms'))} | "
                         f"{_ms(r.get('p50_ms'))} | {_ms(r['init_ms'])} | {_ms(r['first_ms'])} | {_ms(r['warmup_avg_ms'])} | "
                         f"{r.get('runs', '-')} | {_num(mem, '.1f')} |")
    if results.get("gate"):
        gate = results["gate"]
        lines += ["", "## Accuracy gate", "", f"{gate['passed_checks']} of {gate['checks_total']} checks passed "
                  f"(thresholds: `{json.dumps(gate['thresholds'])}`)."]
        if gate.get("failure_table"):
            lines += ["", gate["failure_table"]]
    phases = ", ".join(f"{k.replace('_', ' ')} {v:.0f} s" for k, v in results.get("phase_seconds", {}).items())
    lines += ["", f"Total benchmark time: {results['seconds']:.0f} s wall, {results.get('cpu_seconds', 0):.0f} s CPU ({phases}). "
              f"Command: `{results.get('command', '')}`"]
    return "\n".join(lines) + "\n"


def headline(results: dict) -> list[str]:
    """The deployment claim, at the highest thread count: fastest trained model vs most accurate and vs slowest."""
    threads = max(results["settings"]["threads"])
    by_name = {m["name"]: m for m in results["models"]}
    rows = [(by_name[r["model"]], r) for r in results["latency"] if r["threads"] == threads]
    trained = [(m, r) for m, r in rows if m.get("accuracy")]
    if not trained:
        return []
    fast_m, fast_r = min(trained, key=lambda mr: mr[1]["p50_ms"])
    best_m, best_r = max(trained, key=lambda mr: (mr[0]["accuracy"]["top1"], -mr[1]["p50_ms"]))
    slow_m, slow_r = max(rows, key=lambda mr: mr[1]["p50_ms"])
    gap = (best_m["accuracy"]["top1"] - fast_m["accuracy"]["top1"]) * 100
    lines = ["", f"## Small vs large ({threads} thread(s))", "",
             f"- Fastest trained model: **{fast_m['name']}** [{fast_m['runtime']} {fast_m['precision']}], p50 "
             f"{fast_r['p50_ms']:.2f} ms, p90 {fast_r['p90_ms']:.2f} ms, {fast_m['size_mb']:.1f} MB, top-1 {fast_m['accuracy']['top1']:.1%}."]
    if best_m is fast_m:
        lines.append("- It is also the most accurate model measured.")
    else:
        lines.append(f"- Most accurate: **{best_m['name']}** [{best_m['runtime']} {best_m['precision']}], top-1 "
                     f"{best_m['accuracy']['top1']:.1%}, p50 {best_r['p50_ms']:.2f} ms, {best_m['size_mb']:.1f} MB: the fastest "
                     f"is {gap:.1f} points below it, {best_r['p50_ms'] / fast_r['p50_ms']:.1f}x faster and "
                     f"{best_m['size_mb'] / max(fast_m['size_mb'], 1e-9):.1f}x smaller.")
    if slow_m["name"] != fast_m["name"]:
        lines.append(f"- Slowest: **{slow_m['name']}** [{slow_m['runtime']} {slow_m['precision']}"
                     f"{', not trained' if not slow_m['trained'] else ''}], p50 {slow_r['p50_ms']:.0f} ms: the fastest "
                     f"trained model is {slow_r['p50_ms'] / fast_r['p50_ms']:.0f}x faster.")
    return lines


def _field_models(results: dict) -> list[dict]:
    return [m for m in results["models"] if m.get("field_accuracy")]


def field_section(results: dict) -> list[str]:
    """Studio vs field top-1/5 of every measured row (artefact-bench --field)."""
    models = _field_models(results)
    if not models:
        return []
    q = results["queries"]
    lines = ["", "## Field conditions (studio vs field photos)", "",
             f"Field versions of the same {q['used']} queries (seed {q.get('field_seed', 0)}): object cut out by its mask, "
             "scaled 0.4-1.0, rotated +-30 deg onto a cluttered background, brightness/contrast/white-balance shift, blur, "
             "JPEG (artefact.field; examples in field_examples.png).", "",
             "| model | runtime | prec. | studio top-1 | field top-1 | gap top-1 (points) | studio top-5 | field top-5 | gap top-5 |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for m in models:
        studio, field, gap = m["accuracy"], m["field_accuracy"], m["field_gap_points"]
        lines.append(f"| {m['name']} | {m['runtime']} | {m['precision']} | {_pct(studio['top1'])} | {_pct(field['top1'])} | "
                     f"{gap['top1']:.1f} | {_pct(studio['top5'])} | {_pct(field['top5'])} | {gap['top5']:.1f} |")
    return lines


def plot_field(results: dict, path: Path) -> Path:
    """Studio vs field top-1 per model (bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = _field_models(results)
    names = [f"{m['name'].split('/')[-1][:28]}\n{m['runtime']} {m['precision']}" for m in models]
    x = range(len(models))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(models) + 2), 4.5), dpi=120)
    ax.bar([i - 0.2 for i in x], [m["accuracy"]["top1"] * 100 for m in models], 0.4, label="studio")
    ax.bar([i + 0.2 for i in x], [m["field_accuracy"]["top1"] * 100 for m in models], 0.4, label="field")
    ax.set_xticks(list(x), names, fontsize=7)
    ax.set_ylabel("top-1 (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    ax.set_title("Studio vs field photos")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def _save(fig, path: Path) -> Path:
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def plot_accuracy_vs_latency(results: dict, path: Path) -> Path:
    """Top-1 vs p50 latency (log x), marker area ~ model size; untrained models as labelled vertical lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    threads = max(results["settings"]["threads"])
    by_name = {m["name"]: m for m in results["models"]}
    rows = [r for r in results["latency"] if r["threads"] == threads]
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    for row in rows:
        model = by_name[row["model"]]
        if model.get("accuracy"):
            ax.scatter(row["p50_ms"], model["accuracy"]["top1"] * 100, s=30 + 12 * model["size_mb"], alpha=0.55,
                       edgecolors="black", label=f"{model['name']} [{model['runtime']} {model['precision']}]")
            ax.annotate(f"{model['name'].split('/')[-1][:28]} {model['runtime']} {model['precision']}", (row["p50_ms"], model["accuracy"]["top1"] * 100),
                        fontsize=7, xytext=(4, 4), textcoords="offset points")
        else:
            ax.axvline(row["p50_ms"], color="grey", linestyle="--", linewidth=1)
            ax.annotate(f"{model['name']} (not trained)", (row["p50_ms"], 0.97), xycoords=("data", "axes fraction"),
                        rotation=90, fontsize=7, color="grey", ha="right", va="top", xytext=(-2, 0), textcoords="offset points")
    tops = [by_name[r["model"]]["accuracy"]["top1"] * 100 for r in rows if by_name[r["model"]].get("accuracy")]
    if tops:  # at least a 10-point window, so equal accuracies do not look different
        centre = (max(tops) + min(tops)) / 2
        half = max(5.0, (max(tops) - min(tops)) / 2 + 2)
        ax.set_ylim(max(0.0, centre - half), min(100.5, centre + half))
    ax.set_xscale("log")
    ax.set_xlabel(f"p50 latency per photo (ms, log scale, {threads} thread(s))")
    ax.set_ylabel(f"top-1 on {results['queries']['split']} queries (%)")
    ax.grid(alpha=0.3, which="both")
    ax.set_title("Accuracy vs latency (marker area ~ model size)")
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=6, loc="lower right", markerscale=0.4)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def plot_topk(results: dict, path: Path) -> Path:
    """Top-k accuracy curves (k = 1, 3, 5, 10) per trained model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for model in results["models"]:
        if model.get("accuracy"):
            ax.plot(KS, [model["accuracy"][f"top{k}"] * 100 for k in KS], marker="o",
                    label=f"{model['name']} [{model['runtime']} {model['precision']}]")
    ax.set_xticks(KS)
    ax.set_xlabel("k")
    ax.set_ylabel("top-k accuracy (%)")
    ax.grid(alpha=0.3)
    ax.set_title("Top-k accuracy")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def html_report(markdown_text: str, images: list[Path]) -> str:
    """A single HTML page: the Markdown tables rendered as HTML, plots embedded as base64 PNG."""
    body, table = [], []

    def flush_table() -> None:
        if not table:
            return
        rows = [r for r in table if not set(r.replace("|", "").strip()) <= set("-: ")]
        cells = [[html.escape(c.strip()) for c in r.strip().strip("|").split("|")] for r in rows]
        head = "".join(f"<th>{c}</th>" for c in cells[0])
        rest = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in cells[1:])
        body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rest}</tbody></table>")
        table.clear()

    for line in markdown_text.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush_table()
        if line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    flush_table()
    for image in images:
        data = base64.b64encode(image.read_bytes()).decode("ascii")
        body.append(f'<figure><img alt="{html.escape(image.stem)}" src="data:image/png;base64,{data}"></figure>')
    style = ("body{font-family:sans-serif;margin:2em;max-width:1600px}table{border-collapse:collapse;font-size:12px}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}td:first-child{text-align:left}"
             "img{max-width:900px}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>artefact-bench</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n"


def write_all(results: dict, out: Path) -> dict[str, Path]:
    """bench.json, bench.md, accuracy_vs_latency.png, topk.png (field.png), bench.html in `out` (each written atomically)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "bench.json", "markdown": out / "bench.md", "html": out / "bench.html"}
    atomic.write_json(paths["json"], results)
    text = markdown(results)
    atomic.write_text(paths["markdown"], text)
    paths["plot"] = plot_accuracy_vs_latency(results, out / "accuracy_vs_latency.png")
    paths["topk"] = plot_topk(results, out / "topk.png")
    images = [paths["plot"], paths["topk"]]
    if _field_models(results):
        paths["field"] = plot_field(results, out / "field.png")
        images.append(paths["field"])
    atomic.write_text(paths["html"], html_report(text, images))
    return paths
