"""`python -m bench chaos [--minutes N]`: the long fuzz profile and the chaos soak, together.

One real daemon (tests/fuzzing.py's `FuzzFleet`) with 27 echo children besides the fuzz fleet's
bystander, target and hostile child, plus two misbehaving children (`crashy` crashes every few
calls, `junky` writes junk and answers out of order). For N minutes (default 10):

- **good clients** keep calls going and check every answer against its request (same id, the
  text they sent): control-socket sessions, `mcpctl connect` bridges, legacy and 2026-07-28 HTTP
  clients, each on a random echo child. A call unanswered within `LOST_AFTER` is lost; an answer
  with another call's text is misrouted; an error answer is counted as refused (with its code);
- **hostile clients**: a control client that asks and never reads, and HTTP connections that send
  half a request head and wait;
- **the fuzzer**: Hypothesis, random (the "chaos" profile), door after door in rounds of
  `--round` examples (control socket, control attach, mcpctl connect, both HTTP eras, the child's
  stdout, session sequences), the invariant after each example;
- a sampler records the daemon's RSS and notices exits (the fuzzer restarts a dead daemon, so one
  death does not end the soak: it is counted).

Writes bench/results/chaos-<stamp>.{json,md} and prints the Markdown: examples per door, failures
with their shrunk examples, good-client figures, daemon exits, RSS trend and drift.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import itertools
import os
import random
import socket
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from .targets import REPO

if TYPE_CHECKING:
    from tests.fuzzing import FuzzFleet

RESULTS = REPO / "bench" / "results"
ECHO_CHILDREN = 27
LOST_AFTER = 30.0
SOCKET_RATE = 100.0  # calls/s per control-socket client (6 of them)
SLOW_RATE = 25.0  # calls/s per bridge and per HTTP client
PV = "io.modelcontextprotocol/protocolVersion"
CAPS = "io.modelcontextprotocol/clientCapabilities"


@dataclass
class Tally:
    """One kind of good client's figures."""

    sent: int = 0
    ok: int = 0
    lost: int = 0
    misrouted: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    reconnects: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def refuse(self, code: Any) -> None:
        with self.lock:
            self.refused[str(code)] = self.refused.get(str(code), 0) + 1

    def add(self, **counts: int) -> None:
        with self.lock:
            for key, value in counts.items():
                setattr(self, key, getattr(self, key) + value)

    def summary(self) -> dict[str, Any]:
        return {"sent": self.sent, "ok": self.ok, "lost": self.lost, "misrouted": self.misrouted,
                "refused": dict(self.refused), "reconnects": self.reconnects}


class Pace:
    """At most `rate` calls a second: the soak is a steady mixed load, not a saturation test, and
    the fuzzer in the same run needs the daemon to have time for its examples."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next = time.monotonic()

    def ready(self) -> bool:
        now = time.monotonic()
        if now < self.next:
            return False
        self.next = max(self.next + self.interval, now - 1.0)
        return True

    def wait(self) -> None:
        delay = self.next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self.next = max(self.next + self.interval, time.monotonic() - 1.0)


def _echo_servers() -> str:
    from tests.conftest import CHAOS, ECHO, server_toml

    text = "".join(server_toml(f"echo{n:02d}", ECHO) for n in range(ECHO_CHILDREN))
    text += server_toml("crashy", CHAOS, "--crash-after", "7", max_restarts=100000, backoff_initial=0.1,
                        backoff_max=1, breaker_errors=100000)
    text += server_toml("junky", CHAOS, "--junk", "--out-of-order")
    return text


def _judge(tally: Tally, answer: dict[str, Any], text: str) -> None:
    if "error" in answer:
        tally.refuse(answer["error"].get("code") if isinstance(answer["error"], dict) else "?")
        return
    got = (((answer.get("result") or {}).get("content") or [{}])[0]).get("text")
    if got == text:
        tally.add(ok=1)
    else:
        tally.add(misrouted=1)


# ---- good clients --------------------------------------------------------------------------------

def socket_client(fleet: FuzzFleet, stop: threading.Event, tally: Tally, number: int, depth: int = 4) -> None:
    """An attached control-socket session, `depth` calls in flight, each answer checked."""
    from tests.fuzzing import LineReader

    rng = random.Random(number)
    serial = itertools.count()
    pace = Pace(SOCKET_RATE)
    while not stop.is_set():
        server = f"echo{rng.randrange(ECHO_CHILDREN):02d}"
        outstanding: dict[str, tuple[str, float]] = {}
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.connect(str(fleet.daemon.socket))
                reader = LineReader(sock.fileno(), functools.partial(sock.recv, 1 << 20))
                sock.sendall(orjson.dumps({"jsonrpc": "2.0", "id": "attach", "method": "supervisor/attach",
                                           "params": {"server": server, "client": f"good-{number}"}}) + b"\n")
                if reader.next(time.monotonic() + 10) is None:
                    raise OSError("no attach answer")
                calls_left = rng.randrange(50, 400)  # then a new session (attach churn)
                while not stop.is_set() and (calls_left > 0 or outstanding):
                    while calls_left > 0 and len(outstanding) < depth and pace.ready():
                        rid = f"g{number}-{next(serial)}"
                        text = f"{server}:{rid}:{rng.random()}"
                        sock.sendall(orjson.dumps({"jsonrpc": "2.0", "id": rid, "method": "tools/call",
                                                   "params": {"name": "echo", "arguments": {"text": text}}})
                                     + b"\n")
                        outstanding[rid] = (text, time.monotonic())
                        tally.add(sent=1)
                        calls_left -= 1
                    line = reader.next(time.monotonic() + (1.0 if len(outstanding) >= depth or not calls_left
                                                           else pace.interval))
                    if line is None:
                        if reader.eof:
                            raise OSError("the daemon closed the session")
                        now = time.monotonic()
                        for rid, (_, at) in list(outstanding.items()):
                            if now - at > LOST_AFTER:
                                del outstanding[rid]
                                tally.add(lost=1)
                        continue
                    answer = orjson.loads(line)
                    if "method" in answer:
                        continue
                    entry = outstanding.pop(answer.get("id"), None)
                    if entry is None:
                        tally.add(misrouted=1)
                        continue
                    _judge(tally, answer, entry[0])
        except OSError:
            tally.add(lost=len(outstanding), reconnects=1)
            stop.wait(0.5)


def bridge_client(fleet: FuzzFleet, stop: threading.Event, tally: Tally, number: int) -> None:
    """`mcpctl connect` started like a client starts it; one call at a time, each checked."""
    from mcp.client.stdio import get_default_environment

    from tests.conftest import MCPCTL
    from tests.fuzzing import LineReader

    rng = random.Random(1000 + number)
    pace = Pace(SLOW_RATE)
    while not stop.is_set():
        server = f"echo{rng.randrange(ECHO_CHILDREN):02d}"
        proc = subprocess.Popen([MCPCTL, "--socket", str(fleet.daemon.socket), "connect", server],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                env=get_default_environment())
        assert proc.stdin is not None and proc.stdout is not None
        out = proc.stdout.fileno()
        reader = LineReader(out, functools.partial(os.read, out, 1 << 20))
        try:
            for n in range(rng.randrange(20, 200)):
                if stop.is_set():
                    break
                pace.wait()
                rid = f"b{number}-{n}"
                text = f"{server}:{rid}:{rng.random()}"
                request = {"jsonrpc": "2.0", "id": rid, "method": "tools/call",
                           "params": {"name": "echo", "arguments": {"text": text}}}
                proc.stdin.write(orjson.dumps(request) + b"\n")
                proc.stdin.flush()
                tally.add(sent=1)
                deadline = time.monotonic() + LOST_AFTER
                while True:
                    line = reader.next(deadline)
                    if line is None:
                        tally.add(lost=1)
                        raise OSError("no answer")
                    answer = orjson.loads(line)
                    if "method" in answer:
                        continue
                    if answer.get("id") != rid:
                        tally.add(misrouted=1)
                        continue
                    _judge(tally, answer, text)
                    break
        except OSError:
            tally.add(reconnects=1)
        finally:
            with contextlib.suppress(OSError):
                proc.stdin.close()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            proc.stdout.close()


def http_client(fleet: FuzzFleet, stop: threading.Event, tally: Tally, number: int, modern: bool) -> None:
    from tests.fuzzing import TOKEN

    rng = random.Random(2000 + number)
    pace = Pace(SLOW_RATE)
    base = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream"}
    with httpx.Client(base_url=f"http://127.0.0.1:{fleet.port}", timeout=LOST_AFTER) as client:
        while not stop.is_set():
            server = f"echo{rng.randrange(ECHO_CHILDREN):02d}"
            path = f"/mcp/{server}"
            headers = dict(base)
            try:
                if modern:
                    headers.update({"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call",
                                    "Mcp-Name": "echo"})
                else:
                    init = client.post(path, headers=headers, json={
                        "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                            "protocolVersion": "2025-06-18", "capabilities": {},
                            "clientInfo": {"name": "good", "version": "1"}}})
                    sid = init.headers.get("mcp-session-id")
                    if init.status_code != 200 or not sid:
                        tally.refuse(f"http {init.status_code}")
                        stop.wait(0.5)
                        continue
                    headers["Mcp-Session-Id"] = sid
                for n in range(rng.randrange(20, 100)):
                    if stop.is_set():
                        break
                    pace.wait()
                    rid = f"h{number}-{n}-{rng.random()}"
                    text = f"{server}:{rid}"
                    params: dict[str, Any] = {"name": "echo", "arguments": {"text": text}}
                    if modern:
                        params["_meta"] = {PV: "2026-07-28", CAPS: {}}
                    tally.add(sent=1)
                    response = client.post(path, headers=headers, json={
                        "jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params})
                    if response.status_code == 404 and not modern:  # session gone (a restart): anew
                        tally.refuse("http 404")
                        break
                    if response.headers.get("content-type", "").startswith("text/event-stream"):
                        frames = [orjson.loads(r[5:]) for r in response.text.splitlines()
                                  if r.startswith("data:")]
                        answer = frames[-1] if frames else {}
                    else:
                        answer = response.json()
                    if answer.get("id") != rid:
                        tally.add(misrouted=1)
                        continue
                    _judge(tally, answer, text)
                if not modern:
                    client.delete(path, headers=headers)
            except (httpx.HTTPError, ValueError, OSError):
                tally.add(lost=1, reconnects=1)
                stop.wait(0.5)


# ---- hostile clients -------------------------------------------------------------------------------

def never_reader(fleet: FuzzFleet, stop: threading.Event, counts: dict[str, int]) -> None:
    """Attach, ask for big answers, never read; give up after a while and start over."""
    while not stop.is_set():
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(fleet.daemon.socket))
            sock.settimeout(2)
            sock.sendall(orjson.dumps({"jsonrpc": "2.0", "id": "a", "method": "supervisor/attach",
                                       "params": {"server": "echo00", "client": "never-reads"}}) + b"\n")
            request = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
                "name": "echo", "arguments": {"text": "y" * 65536}}}) + b"\n"
            until = time.monotonic() + 15
            while time.monotonic() < until and not stop.is_set():
                try:
                    sock.sendall(request * 16)
                except TimeoutError:
                    stop.wait(0.2)  # the daemon stopped reading us: fine, hold on a little
            counts["never-reading clients"] = counts.get("never-reading clients", 0) + 1
        stop.wait(1)


def half_sent_http(fleet: FuzzFleet, stop: threading.Event, counts: dict[str, int],
                   connections: int = 50) -> None:
    """Connections that send half a request head, hold it, then leave."""
    while not stop.is_set():
        opened = []
        for _ in range(connections):
            with contextlib.suppress(OSError):
                sock = socket.create_connection(("127.0.0.1", fleet.port), timeout=2)
                sock.sendall(b"POST /mcp/echo00 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Len")
                opened.append(sock)
        counts["half-sent HTTP connections"] = counts.get("half-sent HTTP connections", 0) + len(opened)
        stop.wait(8)
        for sock in opened:
            sock.close()
        stop.wait(1)


# ---- the fuzzer ------------------------------------------------------------------------------------

def fuzz_round(fleet: FuzzFleet, door: str, examples: int) -> str | None:
    """`examples` random examples on one door; the failure's text (with the shrunk example) or None."""
    from hypothesis import given, settings

    from tests.fuzz_strategies import DOOR_EXAMPLES
    from tests.fuzzing import DOORS

    chaos = settings.get_profile("chaos")
    try:
        if door == "session sequences":
            from hypothesis.stateful import run_state_machine_as_test

            from tests.test_fuzz import SessionMachine
            SessionMachine.fleet = fleet
            run_state_machine_as_test(SessionMachine, settings=settings(
                chaos, max_examples=max(1, examples // 4), stateful_step_count=10))
        else:
            @settings(chaos, max_examples=examples)
            @given(example=DOOR_EXAMPLES[door])
            def play(example: Any) -> None:
                DOORS[door](fleet, example)
            play()
    except Exception as exc:
        return _describe(exc)
    return None


def _describe(exc: BaseException) -> str:
    parts = []
    leaves = exc.exceptions if isinstance(exc, BaseExceptionGroup) else (exc,)
    for leaf in leaves:
        notes = "\n".join(getattr(leaf, "__notes__", []) or [])
        head = "".join(traceback.format_exception_only(type(leaf), leaf)).strip()
        if len(head) > 1200:  # a daemon death carries its log tail: keep the start and the end
            head = head[:400] + "\n[...]\n" + head[-800:]
        parts.append(f"{notes[:4000]}\n{head}")
    return "\n---\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench chaos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long (default 10)")
    parser.add_argument("--round", type=int, default=10, metavar="N",
                        help="Hypothesis examples per door per round (default 10)")
    parser.add_argument("--no-fuzz", action="store_true", help="the soak's load only")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    os.environ.setdefault("MCP_SUPERVISOR_HYPOTHESIS_PROFILE", "chaos")
    sys.path.insert(0, str(REPO))
    from tests.fuzzing import FuzzFleet

    command = "python -m bench chaos " + " ".join(sys.argv[2:] if argv is None else argv)
    fleet = FuzzFleet(extra_servers=_echo_servers())
    fleet.start()
    for n in range(ECHO_CHILDREN):
        fleet.daemon.wait_state(f"echo{n:02d}", "ready", timeout=120)
    started = time.monotonic()
    rss_start = fleet.daemon_rss()
    stop = threading.Event()
    tallies = {kind: Tally() for kind in ("control socket sessions", "mcpctl connect", "http legacy",
                                          "http 2026-07-28")}
    hostile: dict[str, int] = {}
    samples: list[tuple[float, int]] = []
    exits = 0
    sessions = tallies["control socket sessions"]
    threads = [threading.Thread(target=socket_client, args=(fleet, stop, sessions, n), daemon=True)
               for n in range(6)]
    threads += [threading.Thread(target=bridge_client, args=(fleet, stop, tallies["mcpctl connect"], n),
                                 daemon=True) for n in range(2)]
    threads += [threading.Thread(target=http_client, args=(fleet, stop, tallies["http legacy"], n, False),
                                 daemon=True) for n in range(2)]
    threads += [threading.Thread(target=http_client, args=(fleet, stop, tallies["http 2026-07-28"], n, True),
                                 daemon=True) for n in range(2)]
    threads += [threading.Thread(target=never_reader, args=(fleet, stop, hostile), daemon=True),
                threading.Thread(target=half_sent_http, args=(fleet, stop, hostile), daemon=True)]

    def sample() -> None:
        nonlocal exits
        pid = fleet.daemon.proc.pid if fleet.daemon.proc else None
        while not stop.wait(5):
            proc = fleet.daemon.proc
            if proc is None:
                continue
            if proc.pid != pid:
                exits += 1
                pid = proc.pid
            with contextlib.suppress(Exception):
                samples.append((round(time.monotonic() - started, 1), fleet.daemon_rss()))

    threads.append(threading.Thread(target=sample, daemon=True))
    for thread in threads:
        thread.start()
    deadline = started + args.minutes * 60
    doors = ["control socket", "control attach", "mcpctl connect", "http legacy", "http 2026-07-28",
             "child stdout", "session sequences"]
    failures: list[dict[str, Any]] = []
    try:
        for door in itertools.cycle(doors):
            if time.monotonic() >= deadline:
                break
            if args.no_fuzz:
                stop.wait(min(5.0, max(0.0, deadline - time.monotonic())))
                continue
            before = fleet.examples.get(door, 0)
            failure = fuzz_round(fleet, door, args.round)
            print(f"chaos: {door}: {fleet.examples.get(door, 0) - before} examples"
                  + (" FAILED" if failure else ""), file=sys.stderr, flush=True)
            if failure:
                failures.append({"door": door, "at_s": round(time.monotonic() - started, 1),
                                 "failure": failure})
    finally:
        stop.set()
        for thread in threads:
            thread.join(LOST_AFTER + 15)
        alive_at_end = fleet.daemon_alive()
        rss_end = fleet.daemon_rss() if alive_at_end else 0
        fleet.stop()
    data = {
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": command.strip(), "minutes": args.minutes,
        "elapsed_s": round(time.monotonic() - started, 1),
        "examples": dict(fleet.examples), "failures": failures,
        "daemon_exits": max(exits, len(fleet.exits)),
        "good_clients": {k: t.summary() for k, t in tallies.items()},
        "hostile": hostile,
        "rss": {"start_mib": round(rss_start / 2**20, 1), "end_mib": round(rss_end / 2**20, 1),
                "max_mib": round(max([r for _, r in samples] or [0]) / 2**20, 1),
                "drift_mib": round((rss_end - rss_start) / 2**20, 1),
                "samples": [(t, round(r / 2**20, 1)) for t, r in samples]},
        "children": ECHO_CHILDREN,
        "daemon_deaths": [tail[-1500:] for tail in fleet.exits],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / f"chaos-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    base.with_suffix(".json").write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    text = markdown(data)
    base.with_suffix(".md").write_text(text)
    print(text)
    print(f"\nwrote {base}.json, {base}.md", file=sys.stderr)
    good = data["good_clients"].values()
    clean = (not failures and data["daemon_exits"] == 0
             and all(g["lost"] == 0 and g["misrouted"] == 0 for g in good))
    return 0 if clean else 1


def markdown(data: dict[str, Any]) -> str:
    lines = [f"# chaos: {data['minutes']:g} minutes, {data['children']} echo children + hostile ones", "",
             f"Command: `{data['command']}` ({data['elapsed_s']} s)", "",
             f"**Daemon exits: {data['daemon_exits']}**", "", "## Fuzzing (random, chaos profile)", "",
             "| door | examples |", "|---|---|"]
    lines += [f"| {door} | {n} |" for door, n in sorted(data["examples"].items())]
    lines += ["", f"Failures: {len(data['failures'])}", ""]
    for failure in data["failures"]:
        lines += [f"### {failure['door']} (at {failure['at_s']} s)", "", "```", failure["failure"], "```", ""]
    lines += ["## Good clients (every answer checked against its request)", "",
              "| client | sent | ok | lost | misrouted | refused | reconnects |",
              "|---|---|---|---|---|---|---|"]
    for kind, g in data["good_clients"].items():
        refused = ", ".join(f"{code}: {n}" for code, n in g["refused"].items()) or "0"
        lines.append(f"| {kind} | {g['sent']} | {g['ok']} | {g['lost']} | {g['misrouted']} | {refused} | "
                     f"{g['reconnects']} |")
    rss = data["rss"]
    trend = ", ".join(f"{t:g}s {m}" for t, m in rss["samples"][:: max(1, len(rss["samples"]) // 12)])
    lines += ["", "## Hostile clients", ""] + [f"- {k}: {v}" for k, v in data["hostile"].items()]
    for n, tail in enumerate(data["daemon_deaths"], 1):
        lines += ["", f"### daemon death {n}: the end of its log", "", "```", tail[-700:], "```"]
    lines += ["", "## Daemon RSS (MiB)", "",
              f"start {rss['start_mib']}, end {rss['end_mib']}, max {rss['max_mib']}, "
              f"drift {rss['drift_mib']:+}", "", f"trend: {trend}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
