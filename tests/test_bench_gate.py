"""The regression gate's arithmetic (bench/gate.py): ratios from a run, thresholds, the table."""

from __future__ import annotations

from typing import Any

import pytest

from bench.gate import compare, extract, table


def point(path: str, level: int, ops: float, p95: float, rss: int | None = None,
          error_rate: float = 0.0) -> dict[str, Any]:
    return {"path": path, "concurrency": level, "ops_per_s": ops, "p95_ms": p95, "error_rate": error_rate,
            "rss_bytes": {"daemon": rss} if rss else {}}


def run(socket_ops: float = 500.0, socket_p95: float = 2.0, rss: int = 40 * 2**20,
        error_rate: float = 0.0) -> dict[str, Any]:
    return {"scenarios": {
        "core": {"points": [point("direct stdio", 100, 1000.0, 1.0),
                            point("control socket session", 100, socket_ops, socket_p95, rss, error_rate)]},
        "http": {"points": [point("HTTP /mcp/echo", 500, 100.0, 9.0, rss)]},  # no direct at 500
    }}


def test_extract_takes_ratios_against_the_direct_path_of_the_same_run() -> None:
    assert extract(run()) == {"core: control socket session @ 100": {
        "throughput": 0.5, "p95": 2.0, "memory": float(40 * 2**20), "errors": 0.0}}


@pytest.mark.parametrize(("changed", "failing"), [
    ({}, set()),
    ({"socket_ops": 476.0}, set()),  # -4.8%: within -5%
    ({"socket_ops": 470.0}, {"throughput"}),
    ({"socket_ops": 700.0}, set()),  # faster always passes
    ({"socket_p95": 2.19}, set()),  # +9.5%
    ({"socket_p95": 2.3}, {"p95"}),
    ({"rss": 48 * 2**20}, set()),  # +20% exactly
    ({"rss": 49 * 2**20}, {"memory"}),
    ({"error_rate": 0.009}, set()),
    ({"error_rate": 0.011}, {"errors"}),
])
def test_thresholds(changed: dict[str, Any], failing: set[str]) -> None:
    checks = compare(extract(run()), extract(run(**changed)))
    assert {c.metric for c in checks if not c.ok} == failing
    assert len(checks) == 4


def test_a_path_missing_from_the_run_fails_and_the_table_says_so() -> None:
    baseline = extract(run())
    checks = compare(baseline, {})
    text = table(checks)
    assert "missing from this run" in text and "FAIL" in text and "gate: FAILED" in text
    ok = table(compare(baseline, baseline))
    assert "gate: passed: 4 of 4" in ok and "FAIL" not in ok
