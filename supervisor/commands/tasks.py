"""mcpctl tasks: the tasks the daemon runs for clients (the io.modelcontextprotocol/tasks extension).

One line per task: its id, server, tool, status, and how long it is kept. Results are never
shown: they belong to the client holding the task id. `--json` adds the table's counters
(kept, bytes, refused, expired).
"""

from __future__ import annotations

import argparse
import time

from ._client import daemon_call, out, print_json, run_guarded

NAME = "tasks"
HELP = "list the tasks the daemon holds for clients"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _run(args: argparse.Namespace) -> int:
    result = daemon_call(args, "supervisor/tasks", {})
    if args.json:
        print_json(result)
        return 0
    rows = result.get("tasks") or []
    if not rows:
        out("no tasks")
        return 0
    now = time.time()
    header = ("TASK", "SERVER", "TOOL", "STATUS", "AGE", "KEPT FOR")
    lines = [header] + [(
        str(row["task_id"]), str(row["server"]), str(row["tool"]), str(row["status"]),
        f"{max(0.0, now - float(row['created_at'])):.0f}s", f"{float(row['expires_in']):.0f}s")
        for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        out("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    return 0


def run(args: argparse.Namespace) -> int:
    return run_guarded(_run, args)
