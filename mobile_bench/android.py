"""Latency on an Android phone: push a .tflite and TFLite's `benchmark_model` binary over adb, run, parse.

`parse_benchmark_model(text)` reads the tool's summary lines (all versions seen in the wild):

    count=50 first=... curr=... min=... max=... avg=40126.6 std=553 [p5=... median=... p95=...]
    Inference timings in us: Init: 3236, First inference: 57283, Warmup (avg): 42113.8, Inference (avg): 40126.6
    Memory footprint delta from the start of the tool (MB): init=2.85547 overall=10.5
    Peak memory footprint (MB): init=4.92969 overall=138.809          (older builds)
    Overall peak memory footprint (MB) via periodic monitoring: 93.2383  (newer builds)

Lines may carry a logcat-style prefix ("INFO: ", "I tflite  : ").
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

from artefact.errors import ArtefactError

REMOTE_DIR = "/data/local/tmp/artefact_bench"
_NUMBER = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_SUMMARY = re.compile(
    rf"Inference timings in us: Init: {_NUMBER}, First inference: {_NUMBER}, "
    rf"Warmup \(avg\): {_NUMBER}, Inference \(avg\): {_NUMBER}"
)
_COUNT = re.compile(rf"count=(\d+)(?:\s+first={_NUMBER})?\s+curr={_NUMBER}(?:\s+min={_NUMBER}\s+max={_NUMBER}\s+avg={_NUMBER}\s+std={_NUMBER})?")
_MEDIAN = re.compile(rf"median={_NUMBER}")
_MEMORY_DELTA = re.compile(rf"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): init={_NUMBER} overall={_NUMBER}")
_PEAK = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: {_NUMBER}")
_THREADS = re.compile(r"(?:#threads used for CPU inference|Num threads): \[(\d+)\]")


def parse_benchmark_model(text: str) -> dict:
    """benchmark_model stdout -> {init_ms, first_ms, warmup_avg_ms, mean_ms, std_ms, runs, ...}.

    Raises ArtefactError (quoting the tool's last line) when the summary is missing, e.g.
    when the benchmark failed on the device.
    """
    summary = _SUMMARY.search(text)
    if summary is None:
        tail = [line for line in text.strip().splitlines() if line.strip()][-1:] or ["(no output)"]
        raise ArtefactError(f"benchmark_model output has no timing summary; last line: {tail[0].strip()}")
    init, first, warmup, inference = (float(v) / 1000.0 for v in summary.groups())
    result: dict = {"init_ms": init, "first_ms": first, "warmup_avg_ms": warmup, "mean_ms": inference}
    # The last full count= line before the summary is the measured run (the one before it is warm-up).
    runs = [m for m in _COUNT.finditer(text[: summary.start()]) if m.group(7) is not None]
    if runs:
        last = runs[-1]
        result.update(runs=int(last.group(1)), min_ms=float(last.group(4)) / 1000, max_ms=float(last.group(5)) / 1000,
                      std_ms=float(last.group(7)) / 1000)
        line_end = text.find("\n", last.end())
        median = _MEDIAN.search(text[last.end(): line_end if line_end >= 0 else None])
        if median:
            result["p50_ms"] = float(median.group(1)) / 1000
    if memory := _MEMORY_DELTA.search(text):
        result["memory_init_mb"], result["memory_overall_mb"] = float(memory.group(1)), float(memory.group(2))
    if peak := _PEAK.search(text):
        result["peak_memory_mb"] = float(peak.group(1))
    if threads := _THREADS.search(text):
        result["threads"] = int(threads.group(1))
    return result


class Adb:
    """A connected Android device, driven through the `adb` command-line tool."""

    def __init__(self, serial: str | None = None, adb: str | None = None):
        self.adb = adb or shutil.which("adb")
        if not self.adb:
            raise ArtefactError("adb not found on PATH: cannot benchmark on an Android phone (install Android platform-tools)")
        self.serial = serial
        state = self._call(["get-state"], check=False)
        if state.returncode != 0 or state.stdout.strip() != "device":
            reason = (state.stderr or state.stdout).strip().splitlines()
            raise ArtefactError(f"no Android device ready over adb{f' (serial {serial})' if serial else ''}: "
                                f"{reason[0] if reason else 'adb get-state failed'}")

    def _call(self, args: list[str], check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        command = [self.adb] + (["-s", self.serial] if self.serial else []) + args
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ArtefactError(f"adb timed out after {timeout:.0f} s: {' '.join(args[:2])}") from None
        if check and done.returncode != 0:
            message = (done.stderr or done.stdout).strip().splitlines()
            raise ArtefactError(f"adb {' '.join(args[:2])} failed: {message[-1] if message else done.returncode}")
        return done

    def push(self, local: Path, remote: str) -> None:
        self._call(["push", str(local), remote])

    def shell(self, command: str, timeout: float = 600) -> str:
        done = self._call(["shell", command], check=False, timeout=timeout)
        return done.stdout + done.stderr


def benchmark_on_device(adb: Adb, binary: Path, model: Path, threads: int, runs: int, warmup: int) -> dict:
    """Push `binary` and `model`, run benchmark_model with XNNPACK at `threads`, parse its output."""
    if not binary.is_file():
        raise ArtefactError(f"{binary}: no such benchmark_model binary")
    adb.shell(f"mkdir -p {REMOTE_DIR}")
    remote_binary, remote_model = f"{REMOTE_DIR}/benchmark_model", f"{REMOTE_DIR}/{model.name}"
    adb.push(binary, remote_binary)
    adb.shell(f"chmod 755 {remote_binary}")
    adb.push(model, remote_model)
    command = (f"{remote_binary} --graph={shlex.quote(remote_model)} --num_threads={threads} --use_xnnpack=true "
               f"--warmup_runs={warmup} --num_runs={runs}")
    output = adb.shell(command)
    try:
        result = parse_benchmark_model(output)
    except ArtefactError as err:
        raise ArtefactError(f"{model} on the phone: {err}") from None
    result["command"] = f"adb shell {command}"
    result["device"] = adb.shell("getprop ro.product.model").strip()
    return result
