"""Run the PWA on exported assets in headless Chromium and compare it with the Python LiteRT interpreter.

Used by tests/test_pwa.py and, as a command, to measure a real export:

    python android_demo/pwa/test/pwa_harness.py --assets exports/eth80-android --manifest runs/b/manifest.csv --limit 40

It serves android_demo/pwa with the assets on 127.0.0.1, classifies the photos in the page
(e2e.mjs, playwright-core, Debian chromium), runs the same photos through the Python LiteRT
interpreter (ranked by `artefact_export.android.gallery_ranking` when the assets have an embedding
gallery) and prints top-1 agreement and per-image latency.
"""
from __future__ import annotations

import contextlib
import http.server
import json
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from artefact.contract import Preprocess
from artefact.images import load_image

PWA = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("ARTEFACT_CHROMIUM", "/usr/bin/chromium"))


class _Handler(http.server.SimpleHTTPRequestHandler):
    """/<site>/assets/... comes from that site's asset folder, the rest of /<site>/ from the PWA."""

    sites: dict[str, Path] = {}

    def translate_path(self, path: str) -> str:
        parts = [p for p in path.split("?", 1)[0].split("#", 1)[0].split("/") if p and p not in (".", "..")]
        if not parts or parts[0] not in self.sites:
            return str(PWA / "__nothing__")
        if len(parts) > 1 and parts[1] == "assets":
            return str(self.sites[parts[0]].joinpath(*parts[2:]))
        return str(PWA.joinpath(*parts[1:]))

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serve(sites: dict[str, Path]):
    """An HTTP server on 127.0.0.1 (random free port) for the given sites; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (_Handler,), {"sites": sites}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run_browser(plan: dict, workdir: Path, timeout_s: int = 300) -> dict:
    """Run e2e.mjs with `plan` (chromium path and profile are filled in); returns its JSON report."""
    plan = {"chromium": str(CHROMIUM), "user_data_dir": str(workdir / "chromium-profile"), **plan,
            "images": [str(Path(p).resolve()) for p in plan["images"]]}  # node runs in the PWA folder
    (workdir / "plan.json").write_text(json.dumps(plan))
    run = subprocess.run(["node", str(PWA / "test" / "e2e.mjs"), str(workdir / "plan.json")],
                         capture_output=True, text=True, timeout=timeout_s, cwd=PWA)
    if run.returncode != 0:
        raise RuntimeError(f"e2e.mjs failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def preprocess_of(config: dict) -> Preprocess:
    """The contract as the asset config states it."""
    inp = config["input"]
    return Preprocess(input_size=inp["width"], crop_fraction=inp["crop_fraction"], mean=tuple(inp["mean"]), std=tuple(inp["std"]))


def object_ids(config: dict) -> list[str]:
    """Object ids by the index the apps rank: gallery objects when there is a gallery, else labels."""
    objects = config["gallery"]["objects"] if config.get("gallery") else config["labels"]
    return [o["object_id"] for o in objects]


def _model_input(config: dict, pixels: np.ndarray) -> np.ndarray:
    """NHWC batch of one: raw uint8 pixels (the quantisation is folded in), or (pixel - mean) / std."""
    c = config["input"]
    if c["dtype"] == "uint8":
        return pixels[None]
    return ((pixels.astype(np.float32) - np.float32(c["mean"])) / np.float32(c["std"]))[None]


def python_reference(assets: Path, photos: list[Path]) -> tuple[list[list[int]], list[float]]:
    """Best-first matches and per-image invoke latency (ms, 1 thread) of the Python LiteRT interpreter.

    Matches are gallery object indices (`gallery_ranking`, the reference the apps mirror) when the
    assets have a gallery, with the embedding read from output `embedding.output_index`; otherwise
    the head's top-5 output indices.
    """
    from ai_edge_litert.interpreter import Interpreter

    config = json.loads((assets / "artefact_config.json").read_text(encoding="utf-8"))
    preprocess = preprocess_of(config)
    interpreter = Interpreter(model_path=str(assets / config["model_file"]), num_threads=1)
    interpreter.allocate_tensors()
    inp, outputs = interpreter.get_input_details()[0], interpreter.get_output_details()
    gallery = config.get("gallery")
    if gallery:
        from artefact_export.android import gallery_ranking

        values = np.fromfile(assets / gallery["file"], np.int8).reshape(gallery["rows"], gallery["dim"])
    tops, times = [], []
    for photo in photos:
        x = _model_input(config, preprocess.to_pixels(load_image(photo)))
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()  # warm-up
        start = time.perf_counter()
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        times.append((time.perf_counter() - start) * 1000)
        logprobs = interpreter.get_tensor(outputs[0]["index"]).reshape(-1)
        if gallery:
            embedding = interpreter.get_tensor(outputs[config["embedding"]["output_index"]]["index"]).reshape(-1)
            tops.append([int(i) for i in gallery_ranking(config, values, logprobs, embedding)["matches"]])
        else:
            tops.append([int(i) for i in np.argsort(-logprobs, kind="stable")[:5]])
    return tops, times


def main() -> None:
    import click

    from artefact.data import read_manifest

    @click.command(help=__doc__.split("\n\n")[0])
    @click.option("--assets", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
                  help="Folder written by artefact-export --target android.")
    @click.option("--manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                  help="Take photos from this manifest (a bundle's manifest.csv).")
    @click.option("--split", default="test", show_default=True, help="Manifest split to use.")
    @click.option("--limit", type=int, default=40, show_default=True, help="At most this many photos (spread over the split).")
    @click.argument("photos", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
    def command(assets: Path, manifest: Path | None, split: str, limit: int, photos: tuple[Path, ...]) -> None:
        chosen = list(photos)
        truth: dict[Path, str] = {}
        if manifest:
            samples = [s for s in read_manifest(manifest) if s.split == split]
            samples = samples[:: max(1, len(samples) // limit)][:limit]
            truth = {Path(s.path): s.object_id for s in samples}
            chosen += list(truth)
        if not chosen:
            raise click.UsageError("no photos: pass PHOTOS or --manifest")
        with tempfile.TemporaryDirectory() as tmp, serve({"app": assets}) as url:
            try:
                report = run_browser({"base": f"{url}/app/", "images": [str(p) for p in chosen]}, Path(tmp))
            except (RuntimeError, subprocess.TimeoutExpired) as err:
                raise click.ClickException(str(err).strip().splitlines()[-1]) from None
        if report["start"]["state"] != "ready":
            raise click.ClickException(f"PWA did not start: {report['start']['status']}")
        tops, py_ms = python_reference(assets, chosen)
        agree = sum(r["top"][0] == t[0] for r, t in zip(report["images"], tops))
        web_ms = [r["inference_ms"] for r in report["images"]]
        click.echo(f"photos: {len(chosen)}; top-1 agreement PWA vs Python LiteRT: {agree}/{len(chosen)}; "
                   f"PWA confident (>= threshold): {sum(r['confident'] for r in report['images'])}")
        if truth:
            ids = object_ids(json.loads((assets / "artefact_config.json").read_text(encoding="utf-8")))
            hits = [ids[r["top"][0]] == truth.get(p) for p, r in zip(chosen, report["images"]) if p in truth]
            click.echo(f"PWA top-1 accuracy on the {split} photos: {sum(hits)}/{len(hits)}")
        click.echo(f"PWA (LiteRT.js wasm CPU, headless Chromium): inference median {np.median(web_ms):.2f} ms, "
                   f"p90 {np.percentile(web_ms, 90):.2f} ms; preprocessing median "
                   f"{np.median([r['preprocess_ms'] for r in report['images']]):.2f} ms; start-up {report['start_ms']} ms")
        click.echo(f"Python LiteRT interpreter (1 thread): invoke median {np.median(py_ms):.2f} ms, p90 {np.percentile(py_ms, 90):.2f} ms")

    command()


if __name__ == "__main__":
    main()
