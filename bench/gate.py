"""The regression gate: `python -m bench --gate bench/baseline.json` (and `--write-baseline`).

It compares ratios, not absolute numbers: each through-daemon path against the direct path of the
same run (`direct stdio` for core, http and cache; `everything direct` for everything), so a busier
or quieter machine moves both sides together. A metric fails when it regresses past the mission's
thresholds relative to the committed baseline:

- throughput ratio (path calls/s ÷ direct calls/s) down more than 5%;
- p95 ratio (path p95 ÷ direct p95) up more than 10%;
- daemon memory (RSS while serving that path; there is no daemon on the direct path, so this one
  is absolute bytes on the same machine) up more than 20%;
- error rate up more than 1 percentage point.

Not run in CI: the machine is shared and noisy. Improvements pass; update the baseline on purpose
with `--write-baseline` when a change is meant to move the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GATE_SCENARIOS = ("core", "http", "cache", "everything")
REFERENCE = {"core": ("core", "direct stdio"), "http": ("core", "direct stdio"),
             "cache": ("core", "direct stdio"), "everything": ("everything", "everything direct")}
THRESHOLDS = {"throughput": -0.05, "p95": 0.10, "memory": 0.20, "errors": 0.01}


def extract(run: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """`scenario: path @ concurrency` → its ratios (and daemon memory, error rate) in this run."""
    scenarios = run.get("scenarios") or {}
    out: dict[str, dict[str, float | None]] = {}
    for name in GATE_SCENARIOS:
        result = scenarios.get(name) or {}
        ref_scenario, ref_path = REFERENCE[name]
        refs = {p["concurrency"]: p for p in (scenarios.get(ref_scenario) or {}).get("points") or []
                if p["path"] == ref_path}
        for point in result.get("points") or []:
            if point["path"] == ref_path:
                continue
            ref = refs.get(point["concurrency"])
            if ref is None:
                continue
            throughput = (point["ops_per_s"] / ref["ops_per_s"]) if ref["ops_per_s"] else None
            p95 = (point["p95_ms"] / ref["p95_ms"]) if point["p95_ms"] and ref["p95_ms"] else None
            memory = (point.get("rss_bytes") or {}).get("daemon")
            out[f"{name}: {point['path']} @ {point['concurrency']}"] = {
                "throughput": round(throughput, 4) if throughput is not None else None,
                "p95": round(p95, 4) if p95 is not None else None,
                "memory": float(memory) if memory else None,
                "errors": float(point.get("error_rate") or 0.0),
            }
    return out


@dataclass
class Check:
    key: str
    metric: str
    baseline: float | None
    current: float | None
    change: float | None  # relative change; for errors, percentage points as a fraction
    ok: bool
    note: str = ""


def compare(baseline: dict[str, dict[str, float | None]], current: dict[str, dict[str, float | None]],
            thresholds: dict[str, float] | None = None) -> list[Check]:
    limits = {**THRESHOLDS, **(thresholds or {})}
    checks: list[Check] = []
    for key, base in baseline.items():
        now = current.get(key)
        if now is None:
            checks.append(Check(key, "all", None, None, None, False, "missing from this run"))
            continue
        for metric in ("throughput", "p95", "memory", "errors"):
            was, is_ = base.get(metric), now.get(metric)
            if was is None or is_ is None:
                continue
            if metric == "errors":
                change = is_ - was
                ok = change <= limits["errors"]
            else:
                change = (is_ - was) / was if was else 0.0
                ok = change >= limits[metric] if metric == "throughput" else change <= limits[metric]
            checks.append(Check(key, metric, was, is_, change, ok))
    return checks


def _show(metric: str, value: float | None) -> str:
    if value is None:
        return "–"
    if metric == "memory":
        return f"{value / 2**20:.1f} MiB"
    if metric == "errors":
        return f"{value * 100:.2f}%"
    return f"{value:.3f}×"


def table(checks: list[Check], thresholds: dict[str, float] | None = None) -> str:
    limits = {**THRESHOLDS, **(thresholds or {})}
    rule = {"throughput": f"≥ {limits['throughput']:+.0%}", "p95": f"≤ {limits['p95']:+.0%}",
            "memory": f"≤ {limits['memory']:+.0%}", "errors": f"≤ +{limits['errors'] * 100:g} pt",
            "all": ""}
    width = max([len(c.key) for c in checks] + [10])
    lines = [f"{'path':<{width}}  {'metric':<10} {'baseline':>12} {'now':>12} {'change':>9} "
             f"{'limit':>9}  result"]
    for c in checks:
        if c.change is None:
            change = "–"
        elif c.metric == "errors":
            change = f"{c.change * 100:+.2f}pt"
        else:
            change = f"{c.change:+.1%}"
        lines.append(f"{c.key:<{width}}  {c.metric:<10} {_show(c.metric, c.baseline):>12} "
                     f"{_show(c.metric, c.current):>12} {change:>9} {rule[c.metric]:>9}  "
                     f"{'pass' if c.ok else 'FAIL'}{'  ' + c.note if c.note else ''}")
    failed = [c for c in checks if not c.ok]
    lines.append("")
    lines.append(f"gate: {'FAILED' if failed else 'passed'}: {len(checks) - len(failed)} of {len(checks)} "
                 "checks within the thresholds")
    return "\n".join(lines)


def baseline_document(run: dict[str, Any]) -> dict[str, Any]:
    return {
        "recorded": run.get("started"),
        "command": run.get("command"),
        "machine": run.get("machine"),
        "versions": run.get("versions"),
        "thresholds": THRESHOLDS,
        "note": "ratios are through-daemon ÷ direct in the same run; memory is the daemon's RSS",
        "metrics": extract(run),
    }


__all__ = ["GATE_SCENARIOS", "THRESHOLDS", "Check", "baseline_document", "compare", "extract", "table"]
