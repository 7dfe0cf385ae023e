"""The benchmark harness runs end to end and writes the JSON it promises (no timing assertions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from .conftest import REPO


def _bench(tmp_path: Path, timeout: float, *args: str) -> Any:
    """Run `python -m bench ARGS` into tmp_path/results; its one JSON result, parsed."""
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "bench", *args, "--warmup", "0.1", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [result] = out.glob("*.json")
    return json.loads(result.read_text())


def test_quick_core_writes_the_expected_json(tmp_path: Path) -> None:
    run = _bench(tmp_path, 90, "--quick", "core", "--levels", "1,10", "--duration", "0.4")
    assert {"started", "command", "machine", "versions", "settings", "scenarios"} <= run.keys()
    assert {"cpu", "cores", "memory_gib", "os", "python"} <= run["machine"].keys()
    core = run["scenarios"]["core"]
    assert "error" not in core, core
    paths = {(p["path"], p["concurrency"]) for p in core["points"]}
    assert paths == {(path, level) for path in ("direct stdio", "mcpctl connect", "control socket session")
                     for level in (1, 10)}
    for point in core["points"]:
        assert {"ops_per_s", "p50_ms", "p95_ms", "p99_ms", "max_ms", "errors", "calls", "cpu_us_per_call",
                "rss_bytes"} <= point.keys()
        assert point["calls"] > 0 and point["errors"] == {}, point
        if point["path"] != "direct stdio":
            assert "daemon" in point["cpu_us_per_call"]
    assert {"cpu_percent", "rss_bytes"} <= core["daemon_idle"].keys()
    [report] = (tmp_path / "results").glob("*.md")  # the markdown report beside the JSON
    assert report.read_text().startswith("# mcp-supervisor benchmark")


def test_a_client_with_repeating_keys_checks_each_answer_against_its_key() -> None:
    """`LineClient(keys=N)` (the bench's cache-hit path) cycles its arguments through N keys and
    still checks every echoed text against the key it asked with: a wrong one is `misrouted`."""
    import asyncio
    import socket

    from bench.load import LineClient, Window, drive
    from bench.scenarios import _Responder

    class Shifted(_Responder):
        def data_received(self, data: bytes) -> None:  # answers every request with the next key
            super().data_received(data.replace(b'-', b'-1'))

    async def run(responder: type[_Responder]) -> tuple[int, dict[str, int]]:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        await loop.create_unix_connection(responder, sock=b)
        client = LineClient(0, Window(), keys=4)
        await loop.create_unix_connection(lambda: client, sock=a)
        result = await drive([client], 8, 0.05, 0.3)
        client.close()
        return len(result.tally.latencies), dict(result.tally.errors)

    answered, errors = asyncio.run(run(_Responder))
    assert answered > 0 and errors == {}
    answered, errors = asyncio.run(run(Shifted))
    assert answered == 0 and errors.get("misrouted", 0) > 0


def test_the_http_stress_ramp_runs_the_door_and_the_bare_app_in_turn_and_checks_every_answer() -> None:
    """`stress-http` drives the daemon's door and the bare ASGI app with the same ramp, each step
    on each side in turn (the other side's sessions idle, then resumed): every session keeps
    calling after its pause, every call is answered, and each step carries both sides' figures."""
    import asyncio

    from bench.scenarios import Settings, stress_http

    result = asyncio.run(stress_http(Settings(quick=True, warmup=0.0, duration=0.3, ramp=(2, 4))))
    assert "error" not in result and "skipped" not in result, result
    paths = [(p["path"], p["concurrency"]) for p in result["points"]]
    door, bare = "stress ramp (HTTP /mcp/echo sessions)", "stress ramp (bare ASGI on uvicorn)"
    assert paths == [(door, 2), (door, 4), (bare, 2), (bare, 4)]
    for point in result["points"]:
        assert point["calls"] > 0 and point["errors"] == {}, point
    for side in (result, result["bare"]):
        assert side["sent"] == side["answered"] > 0 and side["lost"] == 0 and side["misrouted"] == 0, side
    assert [s["sessions"] for s in result["steps"]] == [2, 4]
    for step in result["steps"]:
        assert step["p95_ratio"] is not None and step["door_floor_ms"] and step["bare_floor_ms"], step
        assert step["door_cpu_us_per_call"] is not None and step["bare_cpu_us_per_call"] is not None


def test_the_loop_probe_reports_on_the_daemon_alone(tmp_path: Path) -> None:
    """`bench --probe` gives each HTTP point the daemon's collector and loop record, and only the
    daemon is probed (its echo child inherits no probe): one record file, the daemon's."""
    out = tmp_path / "results"
    points = _bench(tmp_path, 120, "--probe", "http", "--http-levels", "2", "--duration", "0.5")[
        "scenarios"]["http"]["points"]
    assert len(points) == 2
    for point in points:
        probe = point["daemon_probe"]
        assert {"gc", "gc_longest_ms", "gc_pauses_over_10ms", "loop_max_lag_ms", "stalls"} <= probe.keys()
    [records] = (out / "probes").iterdir()
    [record] = records.glob("*.json")
    assert json.loads(record.read_text())["pid"] == int(record.stem)
