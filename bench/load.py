"""The load generator: closed-loop, pipelined JSON-RPC over newline-delimited streams and HTTP/1.1.

Speed matters more than elegance here: a slow generator would measure itself. So no MCP SDK and no
asyncio streams; `asyncio.Protocol` callbacks, requests formatted with `bytes %`, orjson to parse,
and every batch of answers that arrives in one read is answered with one write (which is what a real
pipelining client does too).

A "connection" keeps `depth` requests in flight: each answer is timed, checked (the echoed text must
be the one this connection sent under this id, else it counts as `misrouted`) and replaced by a new
request until the stop time. Only answers that complete inside the measured window count.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

_loads = orjson.loads
_now = time.perf_counter

ECHO_CALL = (b'{"jsonrpc":"2.0","id":%d,"method":"tools/call",'
             b'"params":{"name":"echo","arguments":{"%s":"c%d-%d"}}}\n')
INITIALIZE = {"jsonrpc": "2.0", "id": "init", "method": "initialize",
              "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                         "clientInfo": {"name": "mcp-supervisor-bench", "version": "1"}}}
INITIALIZED = b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n'


@dataclass
class Window:
    """The measured interval; answers outside it are not counted (warm-up, drain)."""

    start: float = float("inf")
    end: float = float("inf")
    stopping: bool = False


@dataclass
class Tally:
    """What one connection (or a whole run, after `merge`) saw inside the window."""

    latencies: list[float] = field(default_factory=list)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    sent: int = 0
    answered: int = 0  # every answer, inside the window or not

    def merge(self, other: Tally) -> None:
        self.latencies.extend(other.latencies)
        self.errors.update(other.errors)
        self.sent += other.sent
        self.answered += other.answered


def _classify(msg: Any) -> str:
    error = msg.get("error") if isinstance(msg, dict) else None
    if isinstance(error, dict):
        return f"jsonrpc {error.get('code')}: {str(error.get('message'))[:60]}"
    return "malformed answer"


def _echoed(msg: Any) -> str | None:
    """The text an echo tool sent back (our echo server or server-everything's `Echo: ...`)."""
    try:
        text = msg["result"]["content"][0]["text"]
    except (KeyError, IndexError, TypeError):
        return None
    return text if isinstance(text, str) else None


class LineClient(asyncio.Protocol):
    """One newline-delimited JSON-RPC connection (socket or a pair of pipes), driven closed-loop."""

    def __init__(self, number: int, window: Window, arg_name: str = "text", keys: int = 0) -> None:
        self.number = number
        self.window = window
        self.arg = arg_name.encode()
        # 0: every request's arguments are its own; N: they cycle through N per connection, so a
        # cache in between answers all but the first N (the echoed text is checked against the key)
        self.keys = keys
        self.tally = Tally()
        self.writer: Any = None  # the transport we write to (differs from the reader for pipes)
        self.transports: list[Any] = []
        self._buffer = b""
        self._sent_at: dict[int, float] = {}
        self._next = 1
        self._waiters: dict[Any, asyncio.Future[Any]] = {}
        self._lost = asyncio.get_running_loop().create_future()
        self.drained = asyncio.Event()

    # ---- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transports.append(transport)
        if self.writer is None and hasattr(transport, "write"):  # uvloop's are not WriteTransport
            self.writer = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._lost.done():
            self._lost.set_result(None)
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(ConnectionError("connection closed"))
        if self._sent_at:
            self.tally.errors["connection lost"] += len(self._sent_at)
            self._sent_at.clear()
        self.drained.set()

    def data_received(self, data: bytes) -> None:
        if self._buffer:
            data = self._buffer + data
        lines = data.split(b"\n")
        self._buffer = lines.pop()
        now = _now()
        window = self.window
        sent_at = self._sent_at
        tally = self.tally
        out = []
        for line in lines:
            if not line:
                continue
            msg = _loads(line)
            mid = msg.get("id")
            t0 = sent_at.pop(mid, None) if mid.__class__ is int else None
            if t0 is None:
                waiter = self._waiters.pop(mid, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(msg)
                continue  # a notification, or an answer nobody waits for
            tally.answered += 1
            if window.start <= now <= window.end:
                text = _echoed(msg)
                if text is None:
                    tally.errors[_classify(msg)] += 1
                elif not text.endswith(f"c{self.number}-{mid % self.keys if self.keys else mid}"):
                    tally.errors["misrouted"] += 1
                else:
                    tally.latencies.append(now - t0)
            if not window.stopping:
                out.append(self._request())
        if out:
            self.writer.write(b"".join(out))
        if window.stopping and not sent_at:
            self.drained.set()

    # ---- requests ---------------------------------------------------------------------------------

    def _request(self) -> bytes:
        mid = self._next
        self._next = mid + 1
        self._sent_at[mid] = _now()
        self.tally.sent += 1
        return ECHO_CALL % (mid, self.arg, self.number, mid % self.keys if self.keys else mid)

    def start(self, depth: int) -> None:
        self.writer.write(b"".join(self._request() for _ in range(depth)))

    async def call(self, message: dict[str, Any], timeout: float = 30.0) -> Any:
        """One request outside the load (handshake): wait for its answer."""
        future = asyncio.get_running_loop().create_future()
        self._waiters[message["id"]] = future
        self.writer.write(orjson.dumps(message) + b"\n")
        return await asyncio.wait_for(future, timeout)

    async def initialize(self) -> Any:
        reply = await self.call(INITIALIZE)
        self.writer.write(INITIALIZED)
        return reply

    def give_up(self) -> None:
        """Drain timed out: whatever is still in flight is lost."""
        if self._sent_at:
            self.tally.errors["no answer (lost)"] += len(self._sent_at)
            self._sent_at.clear()
        self.drained.set()

    @property
    def in_flight(self) -> int:
        return len(self._sent_at)

    def close(self) -> None:
        for transport in {id(t): t for t in [*self.transports, self.writer] if t is not None}.values():
            transport.close()


@dataclass
class RunResult:
    concurrency: int
    connections: int
    duration_s: float
    tally: Tally
    cpu: dict[str, float] = field(default_factory=dict)  # process label -> CPU seconds in window
    wall: tuple[float, float] = (0.0, 0.0)  # the window in wall-clock time (to match a daemon's probe)

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.tally.latencies)
        n = len(lat)

        def pct(p: float) -> float | None:
            return round(lat[min(n - 1, int(p * n))] * 1000, 4) if n else None

        errors = sum(self.tally.errors.values())
        return {
            "concurrency": self.concurrency,
            "connections": self.connections,
            "duration_s": round(self.duration_s, 3),
            "calls": n,
            "ops_per_s": round(n / self.duration_s, 1) if self.duration_s > 0 else 0.0,
            "p50_ms": pct(0.50),
            "p95_ms": pct(0.95),
            "p99_ms": pct(0.99),
            "max_ms": round(lat[-1] * 1000, 4) if n else None,
            "mean_ms": round(sum(lat) / n * 1000, 4) if n else None,
            "errors": dict(self.tally.errors),
            "error_rate": round(errors / (n + errors), 6) if n + errors else 0.0,
            "sent": self.tally.sent,
            "answered": self.tally.answered,
            "cpu_s": {k: round(v, 4) for k, v in self.cpu.items()},
            "cpu_us_per_call": {k: round(v / n * 1e6, 2) for k, v in self.cpu.items()} if n else {},
        }


CpuProbe = Callable[[], dict[str, float]]


async def drive(clients: Sequence[LineClient | HttpClient], depth: int, warmup: float, duration: float,
                cpu: CpuProbe | None = None, drain_timeout: float = 10.0) -> RunResult:
    """Run the closed loop: warm up, measure `duration` seconds, stop issuing, drain."""
    window = Window()
    for client in clients:
        client.window = window
    for client in clients:
        client.start(depth)
    await asyncio.sleep(warmup)
    before = cpu() if cpu else {}
    window.start = _now()
    wall_start = time.time()
    await asyncio.sleep(duration)
    window.end = _now()
    wall_end = time.time()
    after = cpu() if cpu else {}
    window.stopping = True
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(drain_timeout):
            for client in clients:
                if client.in_flight:
                    await client.drained.wait()
    total = Tally()
    for client in clients:
        client.give_up()
        total.merge(client.tally)
    used = {k: after[k] - before[k] for k in after if k in before}
    return RunResult(depth * len(clients), len(clients), window.end - window.start, total, used,
                     (wall_start, wall_end))


# ---- HTTP/1.1 ------------------------------------------------------------------------------------


class HttpClient(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection posting JSON-RPC to a Streamable HTTP endpoint.

    HTTP/1.1 has no usable pipelining, so one request is in flight per connection: concurrency is
    the number of connections. Answers may come as JSON or as an SSE stream (chunked or not).
    """

    def __init__(self, number: int, window: Window, host: str, port: int, path: str,
                 arg_name: str = "text") -> None:
        self.number = number
        self.window = window
        self.arg = arg_name.encode()
        self.tally = Tally()
        self.session: str | None = None
        self._head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                      "Content-Type: application/json\r\n"
                      "Accept: application/json, text/event-stream\r\n"
                      "MCP-Protocol-Version: 2025-06-18\r\n").encode()
        self.transport: asyncio.Transport | None = None
        self._buffer = b""
        self._sent_at: float | None = None
        self._current = 0
        self._next = 1
        self._waiter: asyncio.Future[Any] | None = None
        self._waiting_id: Any = None
        self.drained = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream connection's is one

    def connection_lost(self, exc: Exception | None) -> None:
        if self._sent_at is not None:
            self.tally.errors["connection lost"] += 1
            self._sent_at = None
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError("connection closed"))
        self.drained.set()

    def _post(self, body: bytes, extra: bytes = b"") -> None:
        assert self.transport is not None
        session = b"Mcp-Session-Id: %s\r\n" % self.session.encode() if self.session else b""
        self.transport.write(b"%s%s%sContent-Length: %d\r\n\r\n%s" % (
            self._head, session, extra, len(body), body))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            parsed = _parse_response(self._buffer)
            if parsed is None:
                return
            used, status, headers, body = parsed
            self._buffer = self._buffer[used:]
            self._on_response(status, headers, body)

    def _on_response(self, status: int, headers: dict[bytes, bytes], body: bytes) -> None:
        session = headers.get(b"mcp-session-id")
        if session:
            self.session = session.decode()
        messages = _bodies(headers, body)
        if self._waiter is not None:
            waiter, self._waiter = self._waiter, None
            if not waiter.done():
                waiter.set_result((status, messages))
            return
        t0 = self._sent_at
        if t0 is None:
            return
        self._sent_at = None
        now = _now()
        tally = self.tally
        tally.answered += 1
        window = self.window
        if window.start <= now <= window.end:
            msg = next((m for m in messages if isinstance(m, dict) and m.get("id") == self._current), None)
            if status >= 400 and msg is None:
                tally.errors[f"http {status}"] += 1
            elif msg is None:
                tally.errors["no answer in body"] += 1
            else:
                text = _echoed(msg)
                if text is None:
                    tally.errors[_classify(msg)] += 1
                elif not text.endswith(f"c{self.number}-{self._current}"):
                    tally.errors["misrouted"] += 1
                else:
                    tally.latencies.append(now - t0)
        if window.stopping:
            self.drained.set()
        else:
            self._send_next()

    def _send_next(self) -> None:
        mid = self._next
        self._next = mid + 1
        self._current = mid
        self._sent_at = _now()
        self.tally.sent += 1
        self._post(ECHO_CALL[:-1] % (mid, self.arg, self.number, mid))

    def start(self, depth: int) -> None:
        self._send_next()  # HTTP/1.1: one in flight per connection, whatever `depth` says

    async def call(self, message: dict[str, Any], timeout: float = 30.0) -> tuple[int, list[Any]]:
        self._waiter = asyncio.get_running_loop().create_future()
        self._post(orjson.dumps(message))
        result: tuple[int, list[Any]] = await asyncio.wait_for(self._waiter, timeout)
        return result

    async def initialize(self) -> Any:
        status, messages = await self.call(INITIALIZE)
        if status >= 400:
            raise ConnectionError(f"initialize: HTTP {status} {messages!r}")
        self._waiter = asyncio.get_running_loop().create_future()
        self._post(INITIALIZED[:-1])
        await asyncio.wait_for(self._waiter, 30)
        return messages

    def give_up(self) -> None:
        if self._sent_at is not None:
            self.tally.errors["no answer (lost)"] += 1
            self._sent_at = None
        self.drained.set()

    @property
    def in_flight(self) -> int:
        return 1 if self._sent_at is not None else 0

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _parse_response(buf: bytes) -> tuple[int, int, dict[bytes, bytes], bytes] | None:
    """(bytes used, status, headers, body) for one complete response at the start of buf."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = buf[:end].split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    start = end + 4
    length = headers.get(b"content-length")
    if length is not None:
        stop = start + int(length)
        return (stop, status, headers, buf[start:stop]) if len(buf) >= stop else None
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body: list[bytes] = []
        pos = start
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            size = int(buf[pos:eol].split(b";")[0], 16)
            if size == 0:
                trailer = buf.find(b"\r\n", eol + 2)
                if trailer < 0:
                    return None
                return trailer + 2, status, headers, b"".join(body)
            if len(buf) < eol + 2 + size + 2:
                return None
            body.append(buf[eol + 2: eol + 2 + size])
            pos = eol + 2 + size + 2
    if status in (202, 204) or status < 200:
        return start, status, headers, b""
    return None  # body until close: not something a keep-alive benchmark expects


def _bodies(headers: dict[bytes, bytes], body: bytes) -> list[Any]:
    if not body:
        return []
    if headers.get(b"content-type", b"").startswith(b"text/event-stream"):
        out = []
        for line in body.split(b"\n"):
            if line.startswith(b"data:"):
                with contextlib.suppress(orjson.JSONDecodeError):
                    out.append(_loads(line[5:]))
        return out
    try:
        value = _loads(body)
    except orjson.JSONDecodeError:
        return []
    return value if isinstance(value, list) else [value]


def percentile(values: Sequence[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]
