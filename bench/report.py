"""Turning a run's JSON into what people read: a Markdown report with ratios and goals, and a plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

DIRECT = "direct stdio"
BRIDGE = "mcpctl connect"
SOCKET = "control socket session"
HTTP_CEILING = "loadgen HTTP ceiling (bare ASGI on uvicorn)"
HTTP_DOOR = "HTTP /mcp/echo"


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _errors(point: dict[str, Any]) -> str:
    errors = point.get("errors") or {}
    return ", ".join(f"{k}: {v}" for k, v in errors.items()) if errors else "0"


def _index(points: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(p["path"], p["concurrency"]): p for p in points}


def points_table(points: list[dict[str, Any]], baseline: str | None) -> list[str]:
    index = _index(points)
    rows = ["| path | conc. | ops/s | × " + (baseline or "–") + " | p50 ms | p95 ms | p99 ms | max ms "
            "| daemon µs/call | errors |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for p in points:
        base = index.get((baseline, p["concurrency"])) if baseline else None
        ratio = (p["ops_per_s"] / base["ops_per_s"]) if base and base["ops_per_s"] else None
        cpu = (p.get("cpu_us_per_call") or {}).get("daemon")
        rows.append(f"| {p['path']} | {p['concurrency']} | {_fmt(p['ops_per_s'], 0)} | "
                    f"{_fmt(ratio, 2) if ratio is not None else '–'} | {_fmt(p['p50_ms'])} | "
                    f"{_fmt(p['p95_ms'])} | {_fmt(p['p99_ms'])} | {_fmt(p['max_ms'], 2)} | "
                    f"{_fmt(cpu, 1)} | {_errors(p)} |")
    return rows


RAMP_COLUMNS = (  # (title, key of a step, digits)
    ("sessions", "sessions", 0),
    ("door calls/s", "door_calls_per_s", 0), ("bare calls/s", "bare_calls_per_s", 0),
    ("door p50 ms", "door_p50_ms", 1), ("door p95 ms", "door_p95_ms", 1), ("door max ms", "door_max_ms", 1),
    ("bare p95 ms", "bare_p95_ms", 1), ("p95 × bare", "p95_ratio", 2), ("door floor ms", "door_floor_ms", 1),
    ("bare floor ms", "bare_floor_ms", 1), ("door µs/call", "door_cpu_us_per_call", 0),
    ("bare µs/call", "bare_cpu_us_per_call", 0), ("errors", "door_errors", 0),
)


def ramp_table(steps: list[dict[str, Any]]) -> list[str]:
    """The HTTP stress ramp step by step, the door beside the bare app of the same run; the floor
    is Little's law (sessions ÷ calls/s), the mean latency of any closed loop that fast."""
    rows = ["| " + " | ".join(title for title, _, _ in RAMP_COLUMNS) + " |",
            "|" + "---:|" * len(RAMP_COLUMNS)]
    rows += ["| " + " | ".join(_fmt(step.get(key), digits) for _, key, digits in RAMP_COLUMNS) + " |"
             for step in steps]
    return rows


def goals(run: dict[str, Any]) -> list[str]:
    core = run["scenarios"].get("core") or {}
    index = _index(core.get("points") or [])
    lines = []
    direct100, bridge100 = index.get((DIRECT, 100)), index.get((BRIDGE, 100))
    if direct100 and bridge100 and direct100["ops_per_s"]:
        ratio = bridge100["ops_per_s"] / direct100["ops_per_s"]
        lines.append(f"| `mcpctl connect` ≥ 0.3× direct calls/s at concurrency 100 | {ratio:.2f}× "
                     f"| {'met' if ratio >= 0.3 else 'missed'} |")
    direct1, bridge1, socket1 = index.get((DIRECT, 1)), index.get((BRIDGE, 1)), index.get((SOCKET, 1))
    if direct1 and bridge1 and direct1["p50_ms"] is not None and bridge1["p50_ms"] is not None:
        added = bridge1["p50_ms"] - direct1["p50_ms"]
        lines.append(f"| added p50 at concurrency 1 ≤ 0.15 ms (via `mcpctl connect`) | {added:.3f} ms "
                     f"| {'met' if added <= 0.15 else 'missed'} |")
    if direct1 and socket1 and direct1["p50_ms"] is not None and socket1["p50_ms"] is not None:
        added = socket1["p50_ms"] - direct1["p50_ms"]
        lines.append(f"| (for reference) added p50 at concurrency 1, socket session | {added:.3f} ms | |")
    for path in (BRIDGE, SOCKET):
        for level in (100, 1):
            point = index.get((path, level))
            cpu: float | None = (point.get("cpu_us_per_call") or {}).get("daemon") if point else None
            if cpu is not None:
                lines.append(f"| daemon CPU ≤ 20 µs/call ({path}, concurrency {level}) | {cpu:.1f} µs "
                             f"| {'met' if cpu <= 20 else 'missed'} |")
    ceiling = _index((run["scenarios"].get("loadgen") or {}).get("points") or [])
    door = _index((run["scenarios"].get("http") or {}).get("points") or [])
    top, mine = ceiling.get((HTTP_CEILING, 100)), door.get((HTTP_DOOR, 100))
    if top and mine and top["ops_per_s"]:
        ratio = mine["ops_per_s"] / top["ops_per_s"]
        lines.append(f"| HTTP `/mcp/echo` ≥ 0.5× the do-nothing uvicorn ceiling at concurrency 100 "
                     f"| {ratio:.2f}× | {'met' if ratio >= 0.5 else 'missed'} |")
    p500 = door.get((HTTP_DOOR, 500))
    if p500 and p500["p99_ms"] is not None:
        lines.append(f"| HTTP p99 < 10 ms at 500 concurrent | {p500['p99_ms']:.1f} ms "
                     f"| {'met' if p500['p99_ms'] < 10 else 'missed'} |")
    for level in (1, 100):
        point = door.get((HTTP_DOOR, level))
        cpu = (point.get("cpu_us_per_call") or {}).get("daemon") if point else None
        if cpu is not None:
            lines.append(f"| daemon CPU ≤ 20 µs/call (HTTP, concurrency {level}) | {cpu:.1f} µs "
                         f"| {'met' if cpu <= 20 else 'missed'} |")
    idle = core.get("daemon_idle")
    if idle:
        mb = idle["rss_bytes"] / 2**20
        lines.append(f"| daemon RSS < 55 MB idle (one echo server) | {mb:.1f} MB "
                     f"| {'met' if mb < 55 else 'missed'} |")
        lines.append(f"| daemon idle CPU < 1% of a core | {idle['cpu_percent']:.2f}% "
                     f"| {'met' if idle['cpu_percent'] < 1 else 'missed'} |")
    fleet = run["scenarios"].get("fleet") or {}
    if "daemon_rss_bytes" in fleet:
        mb = fleet["daemon_rss_bytes"] / 2**20
        lines.append(f"| daemon RSS < 80 MB with the fleet | {mb:.1f} MB "
                     f"| {'met' if mb < 80 else 'missed'} |")
        cpu = fleet["daemon_idle_cpu_percent"]
        lines.append(f"| daemon idle CPU < 1% with the fleet | {cpu:.2f}% "
                     f"| {'met' if cpu < 1 else 'missed'} |")
    scaled = run["scenarios"].get("autoscale") or {}
    if scaled.get("speedup") is not None:
        lines.append(f"| autoscaled (max 4) ≥ 3.5× one instance, 20 ms calls, concurrency 100 "
                     f"| {scaled['speedup']:.2f}× | {'met' if scaled['speedup'] >= 3.5 else 'missed'} |")
        first = (scaled.get("spike_to_instance_serving_s") or {}).get("2")
        if first is not None:
            lines.append(f"| (for reference) load spike → 2nd instance serving | {first:.2f} s | |")
    if not lines:
        return []
    return ["| goal | measured | |", "|---|---|---|", *lines]


BASELINES = {
    "loadgen": None,
    "core": DIRECT,
    "everything": "everything direct",
    "http": None,
    "cache": "uncached (socket session)",
    "peers": None,
    "load": None,
    "stress": None,
    "stress-http": None,
    "autoscale": "one instance (socket session)",
}


def markdown(run: dict[str, Any]) -> str:
    machine = run["machine"]
    out = [f"# mcp-supervisor benchmark: {run['started']}", "",
           f"`{run['command']}` on {machine['cpu']} ({machine['cores']} cores), {machine['memory_gib']} GiB, "
           f"{machine['os']}, Python {machine['python']}, generator loop: {run['loop']}.", ""]
    goal_rows = goals(run)
    if goal_rows:
        out += ["## Goals", "", *goal_rows, ""]
    for name, result in run["scenarios"].items():
        out.append(f"## {name}")
        out.append("")
        if "skipped" in result:
            out += [result["skipped"], ""]
            continue
        if "error" in result:
            out += [f"failed: {result['error']}", ""]
            continue
        if result.get("points"):
            out += points_table(result["points"], BASELINES.get(name))
            out.append("")
        if result.get("steps"):
            out += ramp_table(result["steps"])
            out.append("")
        extra = {k: v for k, v in result.items() if k not in ("points", "ready_times_s", "steps")}
        for key, value in extra.items():
            if key.endswith("_bytes") and isinstance(value, int):
                value = f"{value / 2**20:.1f} MiB"
            out.append(f"- {key}: {value}")
        out.append("")
    return "\n".join(out)


def plot(run: dict[str, Any], path: Path) -> bool:
    """Latency (p50, p99) and throughput against concurrency, one line per path."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    series: dict[str, list[dict[str, Any]]] = {}
    for name, result in run["scenarios"].items():
        if name in ("load", "stress", "stress-http"):
            continue
        for p in result.get("points") or []:
            series.setdefault(p["path"], []).append(p)
    if not series:
        return False
    fig, (ax_t, ax_l) = plt.subplots(1, 2, figsize=(14, 5.5))
    for label, points in series.items():
        points = sorted(points, key=lambda p: p["concurrency"])
        xs = [p["concurrency"] for p in points]
        line = ax_t.plot(xs, [p["ops_per_s"] for p in points], marker="o", label=label)[0]
        ax_l.plot(xs, [p["p50_ms"] for p in points], marker="o", color=line.get_color(), label=label)
        ax_l.plot(xs, [p["p99_ms"] for p in points], linestyle=":", color=line.get_color())
    for ax in (ax_t, ax_l):
        ax.set_xscale("log")
        ax.set_xlabel("concurrency (requests in flight)")
        ax.grid(True, which="both", alpha=0.3)
    ax_t.set_yscale("log")
    ax_t.set_ylabel("calls/s")
    ax_t.set_title("throughput")
    ax_l.set_yscale("log")
    ax_l.set_ylabel("ms (solid p50, dotted p99)")
    ax_l.set_title("latency")
    ax_t.legend(fontsize=7, loc="lower right")
    box = run["machine"]
    fig.suptitle(f"mcp-supervisor bench, {run['started']}, {box['cpu']} × {box['cores']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True
