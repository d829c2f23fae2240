"""The CI accuracy gate: exported models must stay close to the float model they were exported from.

Thresholds come from a JSON or TOML file, or inline as ``KEY=VALUE,...``. Keys are a metric,
optionally prefixed by a precision section (``fp32``, ``fp16``, ``int8``; unprefixed keys
are the default for every precision):

    top1, top3, top5, top10   largest allowed accuracy drop vs the source float model, in
                              percentage points (as artefact-export's --max-int8-drop)
    agreement                 smallest allowed fraction of queries whose top-1 prediction
                              equals the source model's (as artefact-export's --min-agreement)

e.g. ``top1=1,top5=1,int8.top1=2,agreement=0.95`` or, in TOML::

    top1 = 1.0
    agreement = 0.95
    [int8]
    top1 = 2.0
"""
from __future__ import annotations

import json
from pathlib import Path

from artefact.errors import ArtefactError

METRICS = ("top1", "top3", "top5", "top10", "agreement")
PRECISIONS = ("fp32", "fp16", "int8")


def load_thresholds(spec: str) -> dict[str, dict[str, float]]:
    """{'default': {...}, 'int8': {...}, ...} from a file path or an inline KEY=VALUE list."""
    path = Path(spec)
    if path.suffix.lower() in (".json", ".toml") or path.is_file():
        raw = _read_file(path)
    else:
        raw = _parse_inline(spec)
    return _validate(raw, spec)


def _read_file(path: Path) -> dict:
    if not path.is_file():
        raise ArtefactError(f"{path}: no such thresholds file")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            return tomllib.loads(text)
        return json.loads(text)
    except (ValueError, ImportError) as err:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise ArtefactError(f"{path}: cannot read thresholds ({str(err).splitlines()[0]})") from None


def _parse_inline(text: str) -> dict:
    raw: dict = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        if "=" not in item:
            raise ArtefactError(f"--check {text!r}: {item!r} is not KEY=VALUE (or a thresholds file that exists)")
        key, value = (s.strip() for s in item.split("=", 1))
        try:
            number = float(value)
        except ValueError:
            raise ArtefactError(f"--check: {key}={value!r} is not a number") from None
        section, _, metric = key.rpartition(".")
        (raw.setdefault(section, {}) if section else raw)[metric] = number
    return raw


def _validate(raw: dict, origin: str) -> dict[str, dict[str, float]]:
    if not isinstance(raw, dict):
        raise ArtefactError(f"{origin}: thresholds must be a table of metric = limit")
    out: dict[str, dict[str, float]] = {"default": {}}
    for key, value in raw.items():
        if isinstance(value, dict):
            if key not in PRECISIONS and key != "default":
                raise ArtefactError(f"{origin}: unknown section {key!r} (expected {', '.join(PRECISIONS)})")
            out.setdefault(key, {}).update(_metrics(value, origin, key))
        else:
            out["default"].update(_metrics({key: value}, origin, "default"))
    if not any(out.values()):
        raise ArtefactError(f"{origin}: no thresholds given")
    return out


def _metrics(table: dict, origin: str, section: str) -> dict[str, float]:
    checked = {}
    for metric, value in table.items():
        if metric not in METRICS:
            raise ArtefactError(f"{origin}: unknown metric {section}.{metric} (expected {', '.join(METRICS)})")
        top = 1 if metric == "agreement" else 100
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= top:
            unit = "a fraction in [0, 1]" if metric == "agreement" else "percentage points in [0, 100]"
            raise ArtefactError(f"{origin}: {section}.{metric} = {value!r} must be {unit}")
        checked[metric] = float(value)
    return checked


def limits_for(thresholds: dict[str, dict[str, float]], precision: str) -> dict[str, float]:
    return {**thresholds.get("default", {}), **thresholds.get(precision, {})}


def check(results: dict, thresholds: dict[str, dict[str, float]]) -> list[dict]:
    """One entry per (exported model, metric) checked, with `passed`; raises when nothing can be checked."""
    by_name = {m["name"]: m for m in results["models"]}
    checks = []
    exports = [m for m in results["models"] if m["kind"] == "export"]
    if not exports:
        raise ArtefactError("--check: no exported models in this benchmark (pass --exports DIR or --model FILE)")
    for model in exports:
        source = by_name.get(model.get("source") or "")
        limits = limits_for(thresholds, model["precision"])
        if source is None or not source.get("accuracy") or not model.get("accuracy"):
            checks.append({"model": model["name"], "precision": model["precision"], "metric": "reference",
                           "value": None, "reference": None, "limit": None, "passed": False,
                           "why": "no float source model with accuracy to compare against (pass its --bundle)"})
            continue
        for metric, limit in limits.items():
            if metric == "agreement":
                value = model.get("agreement_with_source")
                passed = value is not None and value >= limit
                checks.append({"model": model["name"], "precision": model["precision"], "metric": metric,
                               "value": value, "reference": 1.0, "limit": limit, "passed": passed,
                               "why": "" if passed else f"top-1 agreement {value:.1%} < {limit:.1%}"})
                continue
            value, ref = model["accuracy"][metric], source["accuracy"][metric]
            drop = (ref - value) * 100
            passed = drop <= limit + 1e-9
            checks.append({"model": model["name"], "precision": model["precision"], "metric": metric,
                           "value": value, "reference": ref, "limit": limit, "passed": passed,
                           "why": "" if passed else f"drop {drop:.2f} points > {limit:.2f}"})
    return checks


def failure_table(checks: list[dict]) -> str:
    """Markdown table of the failed checks."""
    failed = [c for c in checks if not c["passed"]]
    lines = ["| model | precision | metric | exported | float source | allowed | why |", "|---|---|---|---:|---:|---:|---|"]
    for c in failed:
        value = "-" if c["value"] is None else f"{c['value']:.2%}"
        ref = "-" if c["reference"] is None else f"{c['reference']:.2%}"
        limit = "-" if c["limit"] is None else (f">= {c['limit']:.1%}" if c["metric"] == "agreement" else f"drop <= {c['limit']:.2f} pt")
        lines.append(f"| {c['model']} | {c['precision']} | {c['metric']} | {value} | {ref} | {limit} | {c['why']} |")
    return "\n".join(lines)
