"""mcpctl status [NAME...] [--json]: the state of every server, and why.

Columns: name, state, pid, uptime, restarts, memory (whole process tree), in-flight/queued, tools,
and the reason for the state; below the table, the variables each server uses, by name only (set or
unset: values are never shown). `--json` prints the daemon's answer unchanged for scripts.
"""

from __future__ import annotations

import argparse
from typing import Any

from supervisor.units import format_uptime

from ._client import daemon_call, out, print_json, run_guarded

NAME = "status"
HELP = "show the state of every server"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", metavar="NAME")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def format_bytes(value: int | None) -> str:
    from supervisor.units import format_size

    return "-" if value is None else format_size(value)


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def render(status: dict[str, Any]) -> str:
    rows = [["NAME", "STATE", "PID", "UPTIME", "RESTARTS", "MEMORY", "INFLIGHT/Q", "TOOLS", "REASON"]]
    for s in status["servers"]:
        memory = format_bytes(s.get("memory_bytes"))
        if s.get("memory_limit"):
            memory += f"/{format_bytes(s['memory_limit'])}"
        rows.append([
            s["name"], s["state"], str(s["pid"] or "-"), format_uptime(s.get("uptime_s")),
            str(s["restarts"]), memory, f"{s['in_flight']}/{s['queued']}", str(s["tools"]),
            s.get("reason") or "",
        ])
    daemon = status["daemon"]
    ready = sum(1 for s in status["servers"] if s["state"] in ("ready", "degraded"))
    head = (f"mcp-supervisor {daemon['version']}  pid {daemon['pid']}  up "
            f"{format_uptime(daemon['uptime_s'])}  {ready}/{len(status['servers'])} ready")
    text = head + "\n" + table(rows)
    uses = [s for s in status["servers"] if (s.get("variables") or {}).get("set")
            or (s.get("variables") or {}).get("unset")]
    if uses:
        width = max(len(s["name"]) for s in uses)
        text += "\nvariables (names only):"
        for s in uses:
            names = s["variables"]
            line = f"  {s['name']:<{width}}  set: {', '.join(names['set']) or '-'}"
            if names["unset"]:
                line += f"  unset: {', '.join(names['unset'])}"
            text += "\n" + line
    return text


def _run(args: argparse.Namespace) -> int:
    status = daemon_call(args, "supervisor/status", {"servers": args.names} if args.names else {})
    if args.json:
        print_json(status)
    else:
        out(render(status))
    return 0


def run(args: argparse.Namespace) -> int:
    return run_guarded(_run, args)
