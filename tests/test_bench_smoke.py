"""The benchmark harness runs end to end and writes the JSON it promises (no timing assertions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .conftest import REPO


def test_quick_core_writes_the_expected_json(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "core", "--levels", "1,10", "--duration", "0.4",
         "--warmup", "0.1", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [result] = out.glob("*.json")
    run = json.loads(result.read_text())
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
    assert (out / result.name.replace(".json", ".md")).read_text().startswith("# mcp-supervisor benchmark")
