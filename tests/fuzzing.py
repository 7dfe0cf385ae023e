"""The fuzzing harness: one real daemon, hostile peers on every door, and the invariant after each.

`FuzzFleet` runs a real `mcpctl serve` with four servers: `bystander` (an echo child nobody fuzzes,
the witness), `target` (a legacy echo child the client doors are pointed at, so sampling requests
reach the client), `hostile` (tests/servers/hostile_server.py, whose stdout the child door writes)
and the HTTP door on a free port with a token. The door drivers (`control`, `attach`, `connect`,
`http_legacy`, `http_modern`, `child`) each play one generated example and check what came back
(`Replies.check`: well-formed JSON-RPC, every owed answer with its own id, nothing foreign); after
every example `check` asserts the invariant:

- the daemon process is alive and answers `supervisor/status`;
- the bystander answers an echo call with exactly its text, over a session attached for the whole
  run and over `supervisor/call`;
- the daemon's RSS stays under `baseline + headroom` (psutil);
- no process is left behind: every descendant of the daemon is a child that status reports, and
  every bridge the driver started has exited.

A daemon that died is started again before the next example (`ensure_up`), so a shrinking
Hypothesis sees each example against a healthy daemon, and the exits are counted.
Used by tests/test_fuzz.py (short, derandomized CI profile) and bench/chaos.py (the long run).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import itertools
import os
import select
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import orjson
import psutil

from .conftest import (
    ECHO,
    MCPCTL,
    PY,
    SERVERS,
    Daemon,
    alive_pids,
    daemon_env,
    free_port,
    server_toml,
    wait_for,
)
from .fuzz_strategies import Line

HOSTILE = SERVERS / "hostile_server.py"
TOKEN = "fuzz-token-0123456789"
RSS_HEADROOM = 256 << 20
ANSWER_TIMEOUT = 15.0
STANDARD_CODES = {-32700, -32600, -32601, -32602, -32603}
Message = dict[str, Any]


class DaemonDown(AssertionError):
    """The invariant's first clause failed: the daemon died or stopped answering."""


class LineReader:
    """Newline-delimited JSON from a socket or pipe fd, with deadlines."""

    def __init__(self, fd: int, recv: Callable[[], bytes]) -> None:
        self.fd = fd
        self.recv = recv
        self.buffer = bytearray()
        self.eof = False

    def next(self, deadline: float) -> bytes | None:
        """The next line, or None at end of stream or deadline."""
        while True:
            index = self.buffer.find(b"\n")
            if index >= 0:
                line = bytes(self.buffer[:index])
                del self.buffer[: index + 1]
                return line
            if self.eof:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                return None
            try:
                chunk = self.recv()
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                chunk = b""
            if not chunk:
                self.eof = True
            self.buffer += chunk


@dataclass
class Replies:
    """What came back for one example, checked against what was sent."""

    sent: list[Line]
    sentinel: Any
    lines: list[bytes] = field(default_factory=list)
    closed_by_daemon: bool = False

    def messages(self) -> list[Any]:
        return [orjson.loads(line) for line in self.lines if line.strip()]

    def collect(self, reader: LineReader, timeout: float = ANSWER_TIMEOUT) -> None:
        owed = {_key(line.expects) for line in self.sent if line.expects is not None}
        owed.add(_key(self.sentinel))
        deadline = time.monotonic() + timeout
        while owed:
            line = reader.next(deadline)
            if line is None:
                self.closed_by_daemon = reader.eof
                return
            self.lines.append(line)
            with contextlib.suppress(orjson.JSONDecodeError, TypeError, AttributeError):
                message = orjson.loads(line)
                if "method" not in message and "id" in message:
                    owed.discard(_key(message["id"]))

    def check(self, *, control: bool = False) -> None:
        """Every line is a JSON-RPC object; every response well formed, for an id we sent (or null);
        every owed id answered (unless the daemon ended the connection, which must then say why);
        on the control socket no -32603 (a handler crashed instead of refusing the input)."""
        sent_ids = {_key(line.expects) for line in self.sent if line.expects is not None}
        sent_ids.add(_key(self.sentinel))
        loose = {_key(_id_of(line.data)) for line in self.sent}
        answered = set()
        for raw in self.lines:
            try:
                message = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise AssertionError(f"the daemon wrote a line that is not JSON: {raw[:200]!r}") from None
            assert isinstance(message, dict), f"the daemon wrote a non-object: {raw[:200]!r}"
            assert message.get("jsonrpc") == "2.0", f"no jsonrpc 2.0 in {raw[:200]!r}"
            if "method" in message:
                continue  # a notification or a server-to-client request
            assert "id" in message, f"a response without an id: {raw[:200]!r}"
            assert ("result" in message) != ("error" in message), (
                f"not exactly one of result/error: {raw[:200]!r}")
            key = _key(message["id"])
            assert message["id"] is None or key in sent_ids or key in loose, (
                f"an answer for an id never sent: {raw[:200]!r}")
            answered.add(key)
            if "error" in message:
                error = message["error"]
                assert isinstance(error, dict) and type(error.get("code")) is int and isinstance(
                    error.get("message"), str), f"a malformed error: {raw[:200]!r}"
                if control:
                    assert error["code"] != -32603, f"internal error instead of a refusal: {raw[:300]!r}"
        missing = sent_ids - answered
        if missing and not self.closed_by_daemon:
            raise AssertionError(f"no answer for ids {sorted(map(repr, missing))[:5]} "
                                 f"within {ANSWER_TIMEOUT:g}s")
        if missing and self.closed_by_daemon:
            assert any("error" in m and "method" not in m for m in self.messages()), (
                "the daemon closed the connection without an error saying why")


def _key(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # nested deeper than orjson encodes
        return f"<unencodable {type(value).__name__}>"


def _id_of(data: bytes) -> Any:
    with contextlib.suppress(Exception):
        message = orjson.loads(data)
        if isinstance(message, dict):
            return message.get("id")
    return None


class FuzzFleet:
    """A real daemon for many examples, its witnesses, and the invariant."""

    def __init__(self, workdir: Path | None = None, *, extra_servers: str = "",
                 headroom: int = RSS_HEADROOM) -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="mcps-fuzz-", dir="/tmp"))
        self._own_workdir = workdir is None
        self.inject_path = self.workdir / "hostile.sock"
        self.port = free_port()
        self.headroom = headroom
        config = (f'[http]\nlisten = "127.0.0.1:{self.port}"\ntoken = "{TOKEN}"\n'
                  + server_toml("bystander", ECHO)
                  + server_toml("target", ECHO, "--era", "legacy", request_timeout=10)
                  + server_toml("hostile", HOSTILE, "--inject", str(self.inject_path), request_timeout=4,
                                max_restarts=100000, max_start_failures=100000, backoff_initial=0.05,
                                backoff_max=0.5, breaker_errors=100000, health_interval=1,
                                ping_timeout=1)
                  + extra_servers)
        self.daemon = Daemon(self.workdir, config, daemon_env(self.workdir))
        self.exits: list[str] = []  # how each daemon death looked (log tail)
        self.rss: list[tuple[float, int]] = []
        self.baseline = 0
        self.examples: dict[str, int] = {}
        self._witness: socket.socket | None = None
        self._witness_reader: LineReader | None = None
        self._ids = itertools.count(1)
        self._bridges: set[int] = set()
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=ANSWER_TIMEOUT)
        self._driver: socket.socket | None = None
        self._driver_reader: LineReader | None = None

    # ---- life ------------------------------------------------------------------------------------

    def start(self) -> FuzzFleet:
        self.daemon.start()
        self._wait_fleet()
        self.baseline = self.daemon_rss()
        return self

    def _wait_fleet(self) -> None:
        for name in ("bystander", "target", "hostile"):
            self.daemon.wait_state(name, "ready", timeout=30)

    def stop(self) -> None:
        self.http.close()
        self._close_witness()
        self._close_driver()
        with contextlib.suppress(Exception):
            self.daemon.status()
        self.daemon.seen_pids |= self.daemon.descendants()
        self.daemon.stop()
        try:
            wait_for(lambda: not alive_pids(self.daemon.seen_pids | self._bridges), 10,
                     what="children to exit")
        except AssertionError:
            left = self.daemon.kill_leftovers()
            raise AssertionError(f"processes left behind: {sorted(left)}") from None
        finally:
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def daemon_alive(self) -> bool:
        return self.daemon.proc is not None and self.daemon.proc.poll() is None

    def daemon_rss(self) -> int:
        assert self.daemon.proc is not None
        return int(psutil.Process(self.daemon.proc.pid).memory_info().rss)

    def ensure_up(self) -> None:
        """Before an example: a live daemon with its three servers ready (restart what died)."""
        if self.daemon_alive():
            try:
                self.daemon.rpc("supervisor/status", timeout=10)
            except Exception:  # dying, or wedged: give it time to exit, then replace it
                assert self.daemon.proc is not None
                try:
                    self.daemon.proc.wait(30)
                except subprocess.TimeoutExpired:
                    self.exits.append("wedged: alive but not answering status; killed\n"
                                      + self.daemon.log_text()[-3000:])
                    self.daemon.proc.kill()
                    self.daemon.proc.wait(10)
        if not self.daemon_alive():
            self._close_witness()
            self._close_driver()
            self.daemon.stop()
            self.daemon.kill_leftovers()
            self.daemon.start()
            self.baseline = max(self.baseline, self.daemon_rss())
        try:
            self._wait_fleet()
        except AssertionError:
            with contextlib.suppress(Exception):
                self.daemon.rpc("supervisor/restart", {"servers": ["hostile", "target"], "wait": 20})
            self._wait_fleet()

    # ---- the invariant ---------------------------------------------------------------------------

    def check(self, door: str) -> None:
        self.examples[door] = self.examples.get(door, 0) + 1
        status, failure = None, None
        if self.daemon_alive():
            try:
                status = self.daemon.rpc("supervisor/status", timeout=10)
            except Exception as exc:
                failure = f"supervisor/status failed ({type(exc).__name__}: {exc})"
        if status is None:
            self._daemon_down(failure)
        assert status is not None
        failed: BaseException | None = None
        try:
            self._check_serving(status)
        except Exception as exc:
            failed = exc
        if failed is not None:
            if not self._answers():
                self._daemon_down(f"{type(failed).__name__} while checking: {failed}")
            raise failed

    @contextlib.contextmanager
    def example(self, door: str) -> Iterator[None]:
        """Play one example: a healthy daemon before, the invariant after. An error while playing
        it that comes from the daemon dying is reported as the death (one kind of failure)."""
        self.ensure_up()
        failed: BaseException | None = None
        try:
            yield
        except Exception as exc:
            failed = exc
        if failed is not None:
            self.examples[door] = self.examples.get(door, 0) + 1
            if not self._answers():
                self._daemon_down(f"{type(failed).__name__} during the example: {failed}")
            raise failed
        self.check(door)

    def _answers(self) -> bool:
        if not self.daemon_alive():
            return False
        try:
            self.daemon.rpc("supervisor/status", timeout=10)
        except Exception:
            return False
        return True

    def _check_serving(self, status: dict[str, Any]) -> None:
        assert {s["name"] for s in status["servers"]} >= {"bystander", "target", "hostile"}
        self._check_witness()
        nonce = f"control-{next(self._ids)}"
        result = self.daemon.rpc("supervisor/call", {"server": "bystander", "tool": "echo",
                                                     "arguments": {"text": nonce}}, timeout=15)
        assert result["content"][0]["text"] == nonce, f"bystander answered {result!r} to {nonce}"
        rss = self.daemon_rss()
        self.rss.append((time.monotonic(), rss))
        assert rss <= self.baseline + self.headroom, (
            f"daemon RSS {rss >> 20} MiB over its budget {(self.baseline + self.headroom) >> 20} MiB")
        self._check_no_orphans()

    def _daemon_down(self, failure: str | None) -> None:
        """One place, one exception type, whatever the timing of the death looked like (Hypothesis
        tells failures apart by where they are raised: two would read as a flaky test)."""
        assert self.daemon.proc is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.daemon.proc.wait(5)
        tail = self.daemon.log_text()[-3000:]
        code = self.daemon.proc.poll()
        if code is not None:
            self.exits.append(tail)
        raise DaemonDown(f"the daemon is down ({failure or 'exited'}; exit code {code}):\n{tail}")

    def _check_witness(self) -> None:
        if self._witness is None:
            self._witness = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._witness.connect(str(self.daemon.socket))
            sock = self._witness
            self._witness_reader = LineReader(sock.fileno(), lambda: sock.recv(1 << 20))
            self._witness_call({"jsonrpc": "2.0", "id": "attach", "method": "supervisor/attach",
                                "params": {"server": "bystander", "client": "witness"}})
            self._witness_call({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "witness", "version": "1"}}})
            assert self._witness is not None
            self._witness.sendall(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
        nonce = f"witness-{next(self._ids)}"
        answer = self._witness_call({"jsonrpc": "2.0", "id": nonce, "method": "tools/call",
                                     "params": {"name": "echo", "arguments": {"text": nonce}}})
        text = ((answer.get("result") or {}).get("content") or [{}])[0].get("text")
        assert text == nonce, f"the bystander session got {answer!r} for {nonce}"

    def _witness_call(self, message: Message) -> Message:
        assert self._witness is not None and self._witness_reader is not None
        self._witness.sendall(orjson.dumps(message) + b"\n")
        deadline = time.monotonic() + 15
        while True:
            line = self._witness_reader.next(deadline)
            if line is None:
                self._close_witness()
                raise AssertionError(f"the bystander session lost its answer to {message['id']!r}")
            reply: Message = orjson.loads(line)
            if reply.get("id") == message["id"] and "method" not in reply:
                return reply
            assert "method" in reply, f"the bystander session got someone else's answer: {line[:200]!r}"

    def _close_witness(self) -> None:
        if self._witness is not None:
            self._witness.close()
        self._witness = self._witness_reader = None

    def _check_no_orphans(self) -> None:
        def clean() -> bool:
            status = self.daemon.status()
            known = {pid for s in status["servers"] for pid in s.get("pids") or []}
            extra = self.daemon.descendants() - known
            # A restarting child may be between spawn and report for a moment: poll.
            return not extra and not alive_pids(self._bridges)
        wait_for(clean, 15, what="no process beyond the children status reports")
        self._bridges.clear()

    # ---- doors -----------------------------------------------------------------------------------

    def control(self, lines: Iterable[Line], *, prefix: Line | None = None) -> Replies:
        """Raw lines on a fresh control connection (after `prefix`, e.g. an attach)."""
        sent = ([prefix] if prefix else []) + list(lines)
        sentinel = f"sentinel-{next(self._ids)}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(self.daemon.socket))
            sock.settimeout(ANSWER_TIMEOUT)
            reader = LineReader(sock.fileno(), lambda: sock.recv(1 << 20))
            replies = Replies(sent, sentinel)
            payload = b"".join(line.data + b"\n" for line in sent)
            payload += orjson.dumps({"jsonrpc": "2.0", "id": sentinel, "method": "ping"}) + b"\n"
            _send_while_reading(sock, payload, reader)
            replies.collect(reader)
        return replies

    def connect(self, lines: Iterable[Line], server: str = "target") -> tuple[Replies, int | None]:
        """`mcpctl connect SERVER` started as a client starts it (pipes, the SDK's default
        environment), fed the lines; returns what it printed and its exit code."""
        from mcp.client.stdio import get_default_environment

        sent = list(lines)
        sentinel = f"sentinel-{next(self._ids)}"
        proc = subprocess.Popen([MCPCTL, "--socket", str(self.daemon.socket), "connect", server],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                env=get_default_environment(), cwd=self.workdir)
        self._bridges.add(proc.pid)
        assert proc.stdin is not None and proc.stdout is not None
        out = proc.stdout.fileno()
        reader = LineReader(out, lambda: os.read(out, 1 << 20))
        replies = Replies(sent, sentinel)
        payload = b"".join(line.data + b"\n" for line in sent)
        payload += orjson.dumps({"jsonrpc": "2.0", "id": sentinel, "method": "ping"}) + b"\n"
        writer = threading.Thread(target=_write_all, args=(proc.stdin, payload), daemon=True)
        writer.start()
        try:
            replies.collect(reader)
        finally:
            writer.join(ANSWER_TIMEOUT)
            with contextlib.suppress(OSError):
                proc.stdin.close()
            try:
                code: int | None = proc.wait(ANSWER_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
                code = None
            proc.stdout.close()
        return replies, code

    def http_post(self, path: str, headers: dict[str, str], body: bytes) -> httpx.Response:
        """One POST. A `subscriptions/listen` stream never ends by itself: read its first event
        (the acknowledgement, or the refusal), then hang up as a client does."""
        if b"subscriptions/listen" not in body:
            return self.http.post(path, headers=headers, content=body)
        with self.http.stream("POST", path, headers=headers, content=body) as response:
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                response.read()
                return response
            first = b""
            for chunk in response.iter_raw():
                first += chunk
                if b"\n\n" in first:
                    break
        return httpx.Response(response.status_code, headers=response.headers, content=first)

    def http_delete(self, path: str, headers: dict[str, str]) -> httpx.Response:
        return self.http.delete(path, headers=headers)

    # ---- the hostile child ----------------------------------------------------------------------

    def inject(self, command: Message) -> Message:
        """One command to the hostile child (reconnecting to whichever instance runs now)."""
        for attempt in range(2):
            try:
                if self._driver is None:
                    self._driver = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    self._driver.settimeout(10)
                    self._driver.connect(str(self.inject_path))
                    driver = self._driver
                    self._driver_reader = LineReader(driver.fileno(), functools.partial(driver.recv, 1 << 16))
                assert self._driver_reader is not None
                self._driver.sendall(orjson.dumps(command) + b"\n")
                line = self._driver_reader.next(time.monotonic() + 10)
                if line is None:
                    raise OSError("the hostile child closed its driver socket")
                acknowledged: dict[str, Any] = orjson.loads(line)
                return acknowledged
            except OSError:
                self._close_driver()
                if attempt:
                    raise
                self.daemon.wait_state("hostile", "ready", timeout=30)
        raise AssertionError("unreachable")

    def _close_driver(self) -> None:
        if self._driver is not None:
            self._driver.close()
        self._driver = self._driver_reader = None


def _write_all(pipe: IO[bytes], data: bytes) -> None:
    with contextlib.suppress(OSError, ValueError):
        pipe.write(data)
        pipe.flush()


def _send_while_reading(sock: socket.socket, payload: bytes, reader: LineReader) -> None:
    """Send everything without deadlocking on a daemon that answers before we finished writing."""
    view = memoryview(payload)
    sock.setblocking(False)
    deadline = time.monotonic() + ANSWER_TIMEOUT
    try:
        while view and time.monotonic() < deadline:
            _, writable, _ = select.select([], [sock], [], 0.05)
            if writable:
                try:
                    view = view[sock.send(view[:1 << 20]):]
                except BlockingIOError:
                    continue
                except OSError:
                    return
            else:  # the daemon is writing back: keep its answers flowing
                try:
                    chunk = sock.recv(1 << 20)
                except BlockingIOError:
                    continue
                except OSError:
                    return
                if not chunk:
                    reader.eof = True
                    return
                reader.buffer += chunk
    finally:
        sock.setblocking(True)
        sock.settimeout(ANSWER_TIMEOUT)


def b64_name(value: str) -> str:
    return "=?base64?" + base64.b64encode(value.encode()).decode() + "?="


# ---- one example per door: play it, check what came back, then the invariant ----------------------

def run_control(fleet: FuzzFleet, lines: list[Line]) -> None:
    with fleet.example("control socket"):
        fleet.control(lines).check(control=True)


def run_attach(fleet: FuzzFleet, example: tuple[Line, list[Line]]) -> None:
    attach, rest = example
    with fleet.example("control attach"):
        fleet.control(rest, prefix=attach).check()


def run_connect(fleet: FuzzFleet, lines: list[Line]) -> None:
    with fleet.example("mcpctl connect"):
        replies, code = fleet.connect(lines)
        replies.check()
        assert code is not None, "mcpctl connect did not exit after its client closed stdin"


def _header_safe(value: str) -> str:
    """What an HTTP client can send at all: printable ASCII, no whitespace at either end."""
    return "".join(c if " " <= c <= "~" else "?" for c in value).strip(" ")


def _check_http(fleet: FuzzFleet, response: httpx.Response, line: Line) -> None:
    if response.status_code == 500:  # uvicorn's answer to an exception in the app: show it
        raise AssertionError(f"500 from the HTTP door for {line!r}; the daemon's log ends with:\n"
                             f"{fleet.daemon.log_text()[-2500:]}")
    assert response.status_code < 500 or response.status_code in (503, 504), (
        f"{response.status_code} for {line!r}: {response.text[:300]}")
    ctype = response.headers.get("content-type", "")
    messages: list[Any] = []
    if ctype.startswith("application/json"):
        messages = [response.json()]
    elif ctype.startswith("text/event-stream"):
        messages = [orjson.loads(row[5:]) for row in response.text.splitlines() if row.startswith("data:")]
    for message in messages:
        assert isinstance(message, dict) and message.get("jsonrpc") == "2.0", f"not JSON-RPC: {message!r}"
    answers = [m for m in messages if "method" not in m]
    if line.expects is not None and response.status_code == 200:
        assert answers, f"no answer in a 200 for {line!r}"
        assert answers[-1].get("id") == line.expects, f"answer {answers[-1]!r} for {line!r}"
    for answer in answers:
        assert ("result" in answer) != ("error" in answer), f"malformed answer {answer!r}"
        assert answer.get("id") is None or answer.get("id") == _id_of(line.data), (
            f"answer {answer!r} for {line!r}")


def run_http_legacy(fleet: FuzzFleet, example: Any) -> None:
    with fleet.example("http legacy"):
        _http_legacy(fleet, *example)


def _http_legacy(fleet: FuzzFleet, path: str, auth: str, init_params: Any,
                 steps: list[tuple[str, str, Line]], delete: bool) -> None:
    from .fuzz_strategies import auth_header

    base = [("Content-Type", "application/json"), ("Accept", "application/json, text/event-stream"),
            *auth_header(auth, TOKEN)]
    init = orjson.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init_params}) \
        if _encodable(init_params) else b"{}"
    response = fleet.http_post(path, dict(base), init)
    _check_http(fleet, response, Line(init, None))
    sid = response.headers.get("mcp-session-id")
    for kind, accept, line in steps:
        headers = [h for h in base if h[0] != "Accept"] + ([("Accept", accept)] if accept else [])
        if kind == "real" and sid:
            headers.append(("Mcp-Session-Id", sid))
        elif kind == "random":
            headers.append(("Mcp-Session-Id", "not-a-session"))
        step_path = "/mcp/hostile" if kind == "other-path" else path
        if kind == "other-path" and sid:
            headers.append(("Mcp-Session-Id", sid))
        _check_http(fleet, fleet.http_post(step_path, dict(headers), line.data), line)
    if delete and sid:
        fleet.http_delete(path, dict([*base, ("Mcp-Session-Id", sid)]))


def _encodable(value: Any) -> bool:
    try:
        orjson.dumps(value)
    except TypeError:
        return False
    return True


def run_http_modern(fleet: FuzzFleet, requests: list[Any]) -> None:
    with fleet.example("http 2026-07-28"):
        for request in requests:
            headers = [(k, _header_safe(v.replace("__TOKEN__", TOKEN))) for k, v in request.headers]
            _check_http(fleet, fleet.http_post(request.path, dict(headers), request.body.data),
                        request.body)


def run_child(fleet: FuzzFleet, actions: list[Any]) -> None:
    from .fuzz_strategies import ChildAnswer, ChildWrite

    with fleet.example("child stdout"):
        fleet.inject({"clear": True})
        for action in actions:
            if isinstance(action, ChildWrite):
                fleet.inject({"write": action.line.data.decode("latin-1") + "\n"})
            elif isinstance(action, ChildAnswer):
                fleet.inject({"answer_next": {"method": action.method,
                                              "line": action.line.decode("latin-1")}})
                _trigger(fleet, action)
        # The daemon has read everything written so far once an answer written after it arrives.
        with contextlib.suppress(Exception):
            fleet.daemon.rpc("supervisor/call", {"server": "hostile", "tool": "echo",
                                                 "arguments": {"text": "probe"}, "timeout": 8}, timeout=12)


def _trigger(fleet: FuzzFleet, action: Any) -> None:
    if action.via == "list_changed":
        fleet.inject({"write": '{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}\n'})
    elif action.via == "control":
        with contextlib.suppress(Exception):
            fleet.daemon.rpc("supervisor/call", {"server": "hostile", "tool": "echo", "arguments": {},
                                                 "timeout": 8}, timeout=12)
    else:
        params = {"name": "echo", "arguments": {}} if action.method == "tools/call" else {}
        request = Line(orjson.dumps({"jsonrpc": "2.0", "id": "asked", "method": action.method,
                                     "params": params}), "asked")
        attach = Line(orjson.dumps({"jsonrpc": "2.0", "id": "attach", "method": "supervisor/attach",
                                    "params": {"server": "hostile"}}), "attach")
        fleet.control([request], prefix=attach).check()


# Each door's runner takes the examples of its own strategy (fuzz_strategies.DOOR_EXAMPLES[door]).
DOORS: dict[str, Callable[[FuzzFleet, Any], None]] = {
    "control socket": run_control,
    "control attach": run_attach,
    "mcpctl connect": run_connect,
    "http legacy": run_http_legacy,
    "http 2026-07-28": run_http_modern,
    "child stdout": run_child,
}

__all__ = ["DOORS", "PY", "FuzzFleet", "Line", "Replies", "b64_name"]
