"""mcpctl status [NAME...] [--json] [--cluster]: the state of every server, and why.

Columns: name, state, pid, uptime, restarts, memory (whole process tree), in-flight/queued, tools,
and the reason for the state. `--json` prints the daemon's answer unchanged for scripts.
`--cluster` lists the nodes of this daemon's cluster instead (`[cluster]` in fleet.toml): each
node that said it is alive in the shared Redis within three heartbeats, with its servers' states.
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
    parser.add_argument("--cluster", action="store_true", help="the nodes of this daemon's cluster")


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
    return head + "\n" + table(rows)


def render_cluster(result: dict[str, Any]) -> str:
    import time

    rows = [["NODE", "STATE", "READY", "IN-FLIGHT", "PID", "VERSION", "SEEN", "NOT READY"]]
    for node in result["nodes"]:
        servers = node.get("servers") if isinstance(node.get("servers"), dict) else {}
        others = sorted(f"{name} {state}" for name, state in servers.items()
                        if state not in ("ready", "degraded"))
        seen = time.time() - float(node.get("at") or 0)
        name = str(node["node"]) + (" *" if node["node"] == result["node"] else "")
        rows.append([name, "draining" if node.get("draining") else "serving",
                     f"{node.get('ready', '?')}/{node.get('total', '?')}", str(node.get("in_flight", "-")),
                     str(node.get("pid", "-")), str(node.get("version", "-")), f"{max(0.0, seen):.0f}s ago",
                     ", ".join(others)])
    return f"{len(result['nodes'])} nodes (* this one)\n" + table(rows)


def _run(args: argparse.Namespace) -> int:
    if args.cluster:
        result = daemon_call(args, "supervisor/cluster", {})
        if args.json:
            print_json(result)
        else:
            out(render_cluster(result))
        return 0
    status = daemon_call(args, "supervisor/status", {"servers": args.names} if args.names else {})
    if args.json:
        print_json(status)
    else:
        out(render(status))
    return 0


def run(args: argparse.Namespace) -> int:
    return run_guarded(_run, args)
