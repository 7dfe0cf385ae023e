"""`python -m bench [--quick | --full] [SCENARIO ...]`: run the benchmark, write JSON + Markdown + PNG.

Scenarios: loadgen, core (direct stdio / mcpctl connect / control socket session), http, cache,
everything, fleet, peers; --full adds load (the report's load protocol), stress (0→1000 ramp over
the control socket) and stress-http (the same ramp as HTTP sessions, every answer checked, beside the
same ramp against the bare ASGI app of the same run; goal: nothing lost or misrouted, p95 ≤ 2× the
bare app's at every step).
Results go to bench/results/<timestamp>.{json,md,png} (gitignored); --publish also copies the plot to
bench/latest.png and the table to bench/latest.md for BENCHMARKS.md. `autoscale` (20 ms calls, one
instance vs autoscaled to four) runs only when named.

Regression gate (bench/gate.py): `--gate bench/baseline.json` runs the quick gate scenarios (core,
http, cache, everything), prints what passed and failed, and exits 1 on a regression;
`--write-baseline [PATH]` records a new baseline from the same run.

`python -m bench chaos [--minutes N]` is separate (bench/chaos.py): the long Hypothesis fuzz profile
on every door plus the chaos soak (27 echo children, good and hostile clients and children).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import time
import traceback
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson
import psutil

from . import gate, loop_probe, report
from .gate import GATE_SCENARIOS
from .scenarios import DEFAULT, FULL_ONLY, QUICK, SCENARIOS, Settings, install_peers
from .targets import REPO

RESULTS = REPO / "bench" / "results"


def _version(argv: list[str]) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout or out.stderr).strip().splitlines()[0] if out.returncode == 0 else None


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "hostname": platform.node(),
        "load_average": os.getloadavg(),
    }


def versions() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version
    out: dict[str, Any] = {}
    for dist in ("mcp-supervisor", "anyio", "orjson", "uvicorn", "uvloop", "psutil"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    out["node"] = _version(["node", "--version"])
    git = _version(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "supervisor"],
                           capture_output=True, text=True).stdout.strip()
    out["git"] = f"{git}{'+dirty' if dirty else ''}" if git else None
    return out


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def run(names: list[str], settings: Settings, command: str, loop_name: str) -> dict[str, Any]:
    run_data: dict[str, Any] = {
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": command,
        "loop": loop_name,
        "machine": machine(),
        "versions": versions(),
        "settings": {"quick": settings.quick, "warmup_s": settings.warmup, "duration_s": settings.duration,
                     "levels": settings.levels, "http_levels": settings.http_levels},
        "scenarios": {},
    }
    for name in names:
        t0 = time.monotonic()
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        try:
            result = await SCENARIOS[name](settings)
        except Exception as exc:
            traceback.print_exc()
            result = {"error": f"{type(exc).__name__}: {exc}"}
        result["elapsed_s"] = round(time.monotonic() - t0, 1)
        run_data["scenarios"][name] = result
        for point in result.get("points") or []:
            print(f"  {point['path']:<44} c={point['concurrency']:<4} {point['ops_per_s']:>10,.0f}/s "
                  f"p50 {point['p50_ms']} p99 {point['p99_ms']} ms  errors {sum(point['errors'].values())}",
                  file=sys.stderr, flush=True)
        if "skipped" in result:
            print(f"  {result['skipped']}", file=sys.stderr)
    return run_data


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["chaos"]:
        from .chaos import main as chaos
        return chaos(args_in[1:])
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                        help=f"any of: {', '.join(SCENARIOS)} (default: the mode's set)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="short windows, no fleet (under two minutes)")
    mode.add_argument("--full", action="store_true", help="longer windows, plus load, stress and stress-http")
    parser.add_argument("--duration", type=float, help="measured seconds per point")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per point")
    parser.add_argument("--levels", help="concurrency levels, e.g. 1,10,100")
    parser.add_argument("--http-levels", help="concurrency levels (connections) of the HTTP paths, "
                        "default 1,10,100,500; e.g. 100,500,1000")
    parser.add_argument("--fleet-data", type=Path, default=os.environ.get("MCP_SUPERVISOR_BENCH_FLEET_DATA"),
                        help="MCP_SUPERVISOR_DATA where `mcpctl install` put the shipped fleet")
    parser.add_argument("--install-peers", action="store_true",
                        help="install mcp-proxy and supergateway into bench/.peers first")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop",
                        help="the generator's event loop (uvloop when installed)")
    parser.add_argument("--probe", action="store_true",
                        help="probe each daemon's event loop and collector (bench/loop_probe.py): gc pauses, "
                        "loop lag, stalls over MCP_SUPERVISOR_BENCH_PROBE_MS (50) with the loop's stack; "
                        "in each point's `daemon_probe`")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results go")
    parser.add_argument("--publish", action="store_true", help="also write bench/latest.{md,png}")
    parser.add_argument("--gate", type=Path, metavar="BASELINE",
                        help="run the quick gate scenarios and fail on a regression against BASELINE")
    parser.add_argument("--write-baseline", type=Path, nargs="?", const=REPO / "bench" / "baseline.json",
                        metavar="PATH", help="record the gate metrics of this run (default "
                                             "bench/baseline.json)")
    args = parser.parse_args(argv)
    gating = args.gate is not None or args.write_baseline is not None
    if gating:
        args.quick = True
        if not args.scenarios:
            args.scenarios = list(GATE_SCENARIOS)
    baseline = None
    if args.gate is not None:
        try:
            baseline = orjson.loads(args.gate.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            parser.error(f"cannot read the baseline {args.gate}: {exc} (record one with --write-baseline)")

    unknown = [n for n in args.scenarios if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {list(SCENARIOS)}")
    if args.scenarios:
        names = args.scenarios
    elif args.quick:
        names = list(QUICK)
    else:
        names = list(DEFAULT) + (list(FULL_ONLY) if args.full else [])
    warmup = args.warmup if args.warmup is not None else (0.3 if args.quick else 1.0)
    duration = args.duration if args.duration is not None else (1.5 if args.quick else 5.0 if not args.full
                                                                 else 10.0)
    settings = Settings(quick=args.quick, warmup=warmup, duration=duration, fleet_data=args.fleet_data)
    if args.levels:
        settings.levels = tuple(int(x) for x in args.levels.split(","))
    if args.http_levels:
        settings.http_levels = tuple(int(x) for x in args.http_levels.split(","))
    if args.install_peers:
        print(install_peers(), file=sys.stderr)
    _raise_fd_limit()
    if args.probe:
        probes = args.out / "probes" / datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        probes.mkdir(parents=True, exist_ok=True)
        os.environ[loop_probe.ENV] = str(probes)  # read by targets.Daemon for each daemon it starts

    loop_name = "asyncio"
    runner: Any = asyncio.run
    if args.loop == "uvloop":
        try:
            import uvloop
            runner, loop_name = uvloop.run, f"uvloop {version('uvloop')}"
        except ImportError:
            pass
    command = "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    data = runner(run(names, settings, command.strip(), loop_name))

    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = args.out / stamp
    base.with_suffix(".json").write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    text = report.markdown(data)
    base.with_suffix(".md").write_text(text)
    plotted = report.plot(data, base.with_suffix(".png"))
    print(text)
    print(f"\nwrote {base}.json, {base}.md" + (f", {base}.png" if plotted else " (no plot: pip install "
                                                                       "'.[bench]' for matplotlib)"),
          file=sys.stderr)
    if args.publish:
        shutil.copy(base.with_suffix(".md"), REPO / "bench" / "latest.md")
        if plotted:
            shutil.copy(base.with_suffix(".png"), REPO / "bench" / "latest.png")
    status = 0
    if baseline is not None:
        checks = gate.compare(baseline["metrics"], gate.extract(data), baseline.get("thresholds"))
        print(f"\n## Regression gate against {args.gate} (recorded {baseline.get('recorded')})\n")
        print(gate.table(checks, baseline.get("thresholds")))
        status = 1 if not checks or any(not c.ok for c in checks) else 0
    if args.write_baseline is not None:
        document = gate.baseline_document(data)
        options = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
        args.write_baseline.write_bytes(orjson.dumps(document, option=options) + b"\n")
        print(f"wrote the baseline {args.write_baseline} ({len(document['metrics'])} paths)", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
