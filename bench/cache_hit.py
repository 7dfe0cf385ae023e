"""In-process microbenchmark of a memory cache hit: `python -m bench.cache_hit [--hits N]`.

The daemon's figure for a hit (`python -m bench cache`, daemon µs/call) includes the socket, the
line splitting, JSON parsing and the session's checks, and moves by more than the cache's own cost
between two runs on a shared box. This times only what the cache does for a hit, in this process,
with nothing else running:

    intercept   `CacheFront.intercept` on a stored request: the key, the flight check, the memory
                lookup, and the answer's bytes with the caller's id spliced in, pushed to a real
                `Session`'s outbox (what `Entry.submit`'s cache step costs)
    line        `Session.on_line` on the request's bytes, through a target whose `submit` is that
                cache step: parse, the session's checks, and the hit (a hit's in-process total)

Requests are the benchmark's own (`bench/load.py`'s echo call, ids counting up) over 64 stored
arguments; `--id str` sends string ids that need escaping instead. Prints ns per hit over --rounds
rounds: the best and the median. `--base DIR` (a tree from `git archive COMMIT supervisor |
tar -x -C DIR`) alternates runs of that tree's code and this one's, each in a fresh process, and
prints both and their ratio: the same-run before/after of a change.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import orjson

from supervisor.config import CacheSettings, ServerCache, ServerConfig
from supervisor.core.cache.front import CacheFront, CacheHub, Flight
from supervisor.core.sessions import Session
from supervisor.policy.states import State
from supervisor.wire.jsonrpc import Message, Sink
from supervisor.wire.outbox import Outbox

from .load import ECHO_CALL
from .targets import REPO

KEYS = 64
TOOLS = [{"name": "echo", "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": True}}]


class _Timeouts:
    init_timeout = 30.0


class CachedTarget:
    """Stands in for a `Server`: its `submit` is the entry's cache step, and a miss is an error."""

    name = "cached"
    state = State.READY
    reason = ""
    config = _Timeouts()
    handshake = None
    transitional = False

    def __init__(self, front: CacheFront) -> None:
        self.front = front
        self.sessions: set[Any] = set()

    def submit(self, sink: Sink, message: Message, client_modern: bool) -> None:
        front = self.front
        if message["method"] in front.methods and front.intercept(sink, message, client_modern) is None:
            return
        raise AssertionError(f"not a hit: {message}")

    def cancel(self, sink: Sink, client_id: Any, reason: str = "") -> bool:
        return False

    def drop_sink(self, sink: Sink) -> int:
        return 0

    async def wait_settled(self, timeout: float) -> None:
        return None


def line(mid: int | str, key: int) -> bytes:
    if isinstance(mid, int):
        return ECHO_CALL % (mid, b"text", 0, key)
    return (b'{"jsonrpc":"2.0","id":%s,"method":"tools/call","params":{"name":"echo","arguments":'
            b'{"text":"c0-%d"}}}\n') % (orjson.dumps(mid), key)


def ids(kind: str, count: int) -> list[int | str]:
    if kind == "int":
        return list(range(count))
    return [f'q"{n}\\\u00e9' for n in range(count)]  # a quote, a backslash, a non-ASCII letter


def store_all(front: CacheFront, session: Session) -> None:
    """One miss per argument, answered the way the child answers: each is then stored."""
    for key in range(KEYS):
        message = orjson.loads(line(key, key))
        flight = front.intercept(session, message, False)
        assert isinstance(flight, Flight), "expected a miss while storing"
        text = f"c0-{key}"
        flight.deliver({"jsonrpc": "2.0", "id": key, "result": {
            "content": [{"type": "text", "text": text}], "structuredContent": {"text": text},
            "isError": False}})


def traced(run: Any, count: int) -> tuple[float, float]:
    """(Python calls, bytecodes) per hit: the interpreter's work, counted, not timed, so the
    figure is the same on a busy box (C functions such as orjson's count as the call to them)."""
    tally = {"call": 0, "opcode": 0}

    def trace(frame: Any, event: str, arg: Any) -> Any:
        if event in tally:
            tally[event] += 1
        frame.f_trace_opcodes = True
        return trace

    sys.settrace(trace)
    try:
        run(count)
    finally:
        sys.settrace(None)
    return tally["call"] / count, tally["opcode"] / count


def rounds(run: Any, count: int, rounds_n: int) -> list[float]:
    """CPU ns per hit of each round: the thread's CPU time, not the wall clock, so the time this
    process waits for a core on a shared box is not counted. Collected between rounds, so a round
    does not pay for the garbage of the last."""
    results = []
    for _ in range(rounds_n):
        gc.collect()
        start = time.thread_time_ns()
        run(count)
        results.append((time.thread_time_ns() - start) / count)
    return results


async def bench(hits: int, rounds_n: int, id_kind: str) -> dict[str, list[float]]:
    config = ServerConfig(name="cached", command="x", cache=ServerCache(tools=("echo",)))
    hub = CacheHub(CacheSettings())
    front = hub.front(config, lambda sink, message, modern: None)
    front.tools_changed(TOOLS)
    target = CachedTarget(front)
    outbox = Outbox()
    session = Session(target, outbox, max_message=1 << 20)
    session.initialized = True

    def drain() -> list[bytes]:
        """What the hits pushed: an outbox with no peer keeps it, so the bench takes it out."""
        out = outbox._chunks
        outbox._chunks = []
        outbox._size = 0
        return out

    store_all(front, session)
    drain()
    batch = 1024
    wanted = ids(id_kind, batch)
    lines = [line(mid, n % KEYS) for n, mid in enumerate(wanted)]
    messages = [orjson.loads(text) for text in lines]
    expected = [orjson.loads(text)["id"] for text in lines]
    intercept = front.intercept

    def check(out: list[bytes]) -> None:
        answers = [orjson.loads(chunk) for chunk in b"".join(out).splitlines()]
        assert [a["id"] for a in answers] == expected, "a hit must carry the caller's id"
        assert all(a["result"]["content"][0]["text"] == f"c0-{n % KEYS}" for n, a in enumerate(answers))

    def by_intercept(count: int) -> None:
        for _ in range(count // batch):
            for message in messages:
                intercept(session, message, False)
            drain()

    def by_line(count: int) -> None:
        on_line = session.on_line
        for _ in range(count // batch):
            for text in lines:
                on_line(text)
            drain()

    by_intercept(batch)
    by_line(batch)
    for message in messages:
        intercept(session, message, False)
    check(drain())
    for text in lines:
        session.on_line(text)
    check(drain())
    before = front.hits
    figures = {"intercept": rounds(by_intercept, hits, rounds_n), "line": rounds(by_line, hits, rounds_n)}
    assert front.hits - before == 2 * rounds_n * (hits // batch) * batch and front.misses == KEYS
    for part, run in (("intercept", by_intercept), ("line", by_line)):
        calls, opcodes = traced(run, batch)
        figures[f"{part} calls"] = [calls]
        figures[f"{part} bytecodes"] = [opcodes]
    return figures


def measure(hits: int, rounds_n: int, id_kind: str) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = anyio.run(bench, max(1024, hits), rounds_n, id_kind)
    return figures


def interleaved(base: Path, args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    """Alternate runs of the base tree's code and this tree's, each in its own process."""
    out: dict[str, dict[str, list[float]]] = {"base": {}, "new": {}}
    argv = ["--hits", str(args.hits), "--rounds", str(args.rounds), "--id", args.id_kind, "--json"]
    for run in range(args.runs):
        for name in (("base", "new") if run % 2 == 0 else ("new", "base")):
            env = {**os.environ, "PYTHONPATH": str(base)} if name == "base" else dict(os.environ)
            if name == "new":
                env.pop("PYTHONPATH", None)
            code = ("import sys; sys.path.insert(0, sys.argv.pop(1)); sys.argv[0] = 'cache_hit'; "
                    "from bench.cache_hit import main; sys.exit(main())")
            tree = str(base) if name == "base" else str(REPO)
            done = subprocess.run([sys.executable, "-c", code, tree, *argv], env=env, cwd=REPO,
                                  capture_output=True, check=True, timeout=600)
            for part, values in orjson.loads(done.stdout).items():
                out[name].setdefault(part, []).extend(values)
    return out


def show(title: str, figures: dict[str, list[float]]) -> None:
    print(title)
    print(f"  {'':<10} {'best':>6} {'median':>7} CPU ns/hit {'calls':>6} {'bytecodes':>10} per hit")
    for part, what in (("intercept", "key, lookup, the answer's bytes in the outbox"),
                       ("line", "Session.on_line: parse, checks, then the hit")):
        values = figures[part]
        print(f"  {part:<10} {min(values):6.0f} {statistics.median(values):7.0f} {'':10} "
              f"{figures[part + ' calls'][0]:6.1f} {figures[part + ' bytecodes'][0]:10.0f}   ({what})")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cache_hit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hits", type=int, default=20_480, help="hits per round")
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--id", choices=("int", "str"), default="int", dest="id_kind")
    parser.add_argument("--base", type=Path, help="a tree holding the 'before' supervisor/: "
                        "interleaved runs of both, each in its own process")
    parser.add_argument("--runs", type=int, default=4, help="with --base: runs per tree")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.base is not None:
        both = interleaved(args.base.resolve(), args)
        load = os.getloadavg()[0]
        for name in ("base", "new"):
            show(f"{name} ({args.id_kind} ids, {args.runs} runs of {args.rounds} rounds of "
                 f"{args.hits:,}; load {load:.1f}):", both[name])
        for part in ("intercept", "line"):
            ratio = statistics.median(both["new"][part]) / statistics.median(both["base"][part])
            print(f"new/base {part}: {ratio:.2f} (medians)")
        return 0
    figures = measure(args.hits, args.rounds, args.id_kind)
    if args.json:
        sys.stdout.write(orjson.dumps(figures).decode())
        return 0
    show(f"memory cache hit, in process ({args.id_kind} ids, {args.rounds} rounds of {args.hits:,}):",
         figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
