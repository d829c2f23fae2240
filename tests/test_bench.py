"""artefact-bench units: benchmark_model parser, latency stats, interleaving, MAC counting, the accuracy gate."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

from artefact.errors import ArtefactError
from artefact_bench import gate
from artefact_bench.android import Adb, parse_benchmark_model
from artefact_bench.measure import Loaded, time_interleaved
from artefact_bench.stats import latency_stats, speedup

DATA = Path(__file__).parent / "data"


# --- benchmark_model output (real text from public repositories, see tests/data/README.md) ---

def test_parser_reads_the_riscv_mobilenet_run_with_exponent_notation():
    r = parse_benchmark_model((DATA / "benchmark_model_riscv_mobilenet_v1.txt").read_text())
    assert r["init_ms"] == pytest.approx(17.187)
    assert r["first_ms"] == pytest.approx(3512.391)
    assert r["warmup_avg_ms"] == pytest.approx(3512.39)
    assert r["mean_ms"] == pytest.approx(2950.34)
    # the measured count= line (not the single warm-up line, not the profiler's Timings line after the summary)
    assert r["runs"] == 50 and r["std_ms"] == pytest.approx(109.798)
    assert r["min_ms"] == pytest.approx(2727.568) and r["max_ms"] == pytest.approx(3189.954)
    assert r["memory_init_mb"] == pytest.approx(4.21094) and r["memory_overall_mb"] == pytest.approx(46.0859)
    assert r["threads"] == 4
    assert "p50_ms" not in r  # this build prints no median


def test_parser_reads_the_phone_run():
    r = parse_benchmark_model((DATA / "benchmark_model_mi11_yolov5s_int8.txt").read_text())
    assert (r["init_ms"], r["first_ms"], r["warmup_avg_ms"], r["mean_ms"]) == pytest.approx((1.829, 232.333, 184.951, 159.413))
    assert r["runs"] == 50 and r["std_ms"] == pytest.approx(1.311)
    assert r["memory_overall_mb"] == pytest.approx(43.9961)


def test_parser_reads_logcat_prefixed_lines_and_periodic_peak_memory():
    r = parse_benchmark_model((DATA / "benchmark_model_chromeos_xnnpack.txt").read_text())
    assert r["runs"] == 1061 and r["std_ms"] == pytest.approx(0.982)  # the second count= line, not the warm-up one
    assert r["mean_ms"] == pytest.approx(56.2658)
    assert r["peak_memory_mb"] == pytest.approx(93.2383)


def test_parser_reads_the_median_of_newer_builds():
    text = ("count=25 first=187533 curr=140990 min=140071 max=195121 avg=145528 std=13583 p5=140545 median=141253 p95=187533\n"
            "Inference timings in us: Init: 92318, First inference: 187533, Warmup (avg): 211669, Inference (avg): 145528\n")
    r = parse_benchmark_model(text)
    assert r["p50_ms"] == pytest.approx(141.253) and r["runs"] == 25


def test_parser_reports_a_failed_run_in_one_line():
    with pytest.raises(ArtefactError, match="no timing summary; last line: Benchmarking failed."):
        parse_benchmark_model((DATA / "benchmark_model_mi11_nnapi_failed.txt").read_text())


def test_adb_missing_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ArtefactError, match="adb not found on PATH"):
        Adb()


def test_adb_without_a_device_says_so(monkeypatch, tmp_path):
    fake = tmp_path / "adb"
    fake.write_text("#!/bin/sh\necho 'error: no devices/emulators found' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(ArtefactError, match="no Android device ready over adb: error: no devices/emulators found"):
        Adb(adb=str(fake))


# --- statistics and timing ---

def test_latency_stats_in_milliseconds():
    s = latency_stats([0.001 * v for v in range(1, 11)])  # 1..10 ms
    assert s["runs"] == 10
    assert s["p50_ms"] == pytest.approx(5.5) and s["p90_ms"] == pytest.approx(9.1)
    assert s["mean_ms"] == pytest.approx(5.5) and s["std_ms"] == pytest.approx(np.std(np.arange(1, 11)))
    assert (s["min_ms"], s["max_ms"]) == pytest.approx((1.0, 10.0))
    with pytest.raises(ValueError):
        latency_stats([])
    assert speedup(10.0, 2.5) == 4.0 and speedup(None, 1.0) is None


def test_models_are_timed_interleaved_and_slow_ones_capped():
    order: list[str] = []

    def fake(name, seconds):
        def run():
            order.append(name)
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                pass
        return lambda i: run  # prepare(i) -> the call that is timed

    rows = [Loaded(spec=None, runner=None, call=fake("A", 0.0), result={}),
            Loaded(spec=None, runner=None, call=fake("B", 0.0), result={}),
            Loaded(spec=None, runner=None, call=fake("slow", 0.004), result={})]
    time_interleaved(rows, runs=20, max_seconds=0.02, min_runs=3, progress=False)
    assert order[:6] == ["A", "B", "slow", "B", "slow", "A"]  # rotating A B C / B C A
    assert rows[0].result["runs"] == rows[1].result["runs"] == 20
    assert 3 <= rows[2].result["runs"] < 10  # stopped after ~20 ms of timing
    assert rows[2].result["p50_ms"] >= 4.0


def test_macs_of_lite0_match_the_published_count():
    from artefact.model import create_model
    from artefact_bench.models import count_params_and_macs

    params, macs = count_params_and_macs(create_model("tf_efficientnet_lite0", 80, pretrained=False), 224)
    # EfficientNet-Lite0: 4.65 M params with its 1.28 M ImageNet classifier, ~0.4 G MACs (published);
    # here 3.37 M backbone + 2.79 M paper head (1280 -> 2048 -> 80)
    assert params == pytest.approx(6.16e6, rel=0.01)
    assert 0.37e9 < macs < 0.42e9


# --- the accuracy gate ---

def _results(export_top1: float, agreement: float, precision: str = "int8") -> dict:
    ref = {"top1": 0.90, "top3": 0.95, "top5": 0.97, "top10": 0.99}
    exp = {**ref, "top1": export_top1}
    return {"models": [
        {"name": "lite0", "kind": "bundle", "precision": "fp32", "source": None, "accuracy": ref},
        {"name": "lite0/model_int8.tflite", "kind": "export", "precision": precision, "source": "lite0",
         "accuracy": exp, "agreement_with_source": agreement},
    ]}


def test_gate_passes_within_limits_and_fails_beyond_them():
    limits = gate.load_thresholds("top1=1,int8.top1=3,agreement=0.95")
    assert limits == {"default": {"top1": 1.0, "agreement": 0.95}, "int8": {"top1": 3.0}}
    passing = gate.check(_results(0.88, 0.97), limits)
    assert passing and all(c["passed"] for c in passing)
    failing = gate.check(_results(0.88, 0.97, precision="fp16"), limits)  # fp16 gets the 1-point default
    assert [c["metric"] for c in failing if not c["passed"]] == ["top1"]
    table = gate.failure_table(failing)
    assert "lite0/model_int8.tflite" in table and "88.00%" in table and "90.00%" in table and "drop 2.00 points" in table
    low_agreement = gate.check(_results(0.90, 0.80), limits)
    assert [c["metric"] for c in low_agreement if not c["passed"]] == ["agreement"]


def test_gate_fails_an_export_without_a_float_reference():
    results = _results(0.9, 1.0)
    results["models"][1]["source"] = None
    checks = gate.check(results, gate.load_thresholds("top1=50"))
    assert not checks[0]["passed"] and "no float source" in checks[0]["why"]
    with pytest.raises(ArtefactError, match="no exported models"):
        gate.check({"models": results["models"][:1]}, gate.load_thresholds("top1=50"))


def test_thresholds_from_json_and_toml_files(tmp_path):
    (tmp_path / "t.json").write_text(json.dumps({"top5": 1, "int8": {"top1": 3}}))
    (tmp_path / "t.toml").write_text("top1 = 2.0\nagreement = 0.9\n[fp16]\ntop1 = 0.5\n")
    assert gate.load_thresholds(str(tmp_path / "t.json")) == {"default": {"top5": 1.0}, "int8": {"top1": 3.0}}
    assert gate.load_thresholds(str(tmp_path / "t.toml")) == {"default": {"top1": 2.0, "agreement": 0.9},
                                                               "fp16": {"top1": 0.5}}


def test_shipped_thresholds_file_is_valid():
    limits = gate.load_thresholds(str(Path(__file__).parents[1] / "mobile_bench" / "thresholds.toml"))
    assert gate.limits_for(limits, "int8")["top1"] == 2.0 and gate.limits_for(limits, "fp32")["top1"] == 1.0


@pytest.mark.parametrize("spec, message", [
    ("top1=200", "must be percentage points in [0, 100]"),
    ("agreement=2", "must be a fraction in [0, 1]"),
    ("top7=0.1", "unknown metric"),
    ("bf16.top1=0.1", "unknown section"),
    ("top1", "is not KEY=VALUE"),
    ("top1=abc", "is not a number"),
    ("missing.json", "no such thresholds file"),
])
def test_bad_thresholds_are_one_line_errors(spec, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ArtefactError, match=re.escape(message)):
        gate.load_thresholds(spec)
