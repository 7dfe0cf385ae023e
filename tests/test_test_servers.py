"""The test MCP servers in tests/servers/, driven as real subprocesses over pipes (with deadlines)."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket as socketlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import orjson
import psutil
import pytest

from .sdk import resource_text, text_of

SERVERS = Path(__file__).parent / "servers"
ECHO = SERVERS / "echo_server.py"
CHAOS = SERVERS / "chaos_server.py"
PV_KEY = "io.modelcontextprotocol/protocolVersion"
MODERN = "2026-07-28"
META = {PV_KEY: MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
TIMEOUT = 10.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Proc:
    """A server subprocess: JSON messages from stdout arrive on a queue, other lines are kept as junk."""

    def __init__(self, script: Path, *args: str, cwd: str | None = None) -> None:
        self.p = subprocess.Popen(
            [sys.executable, str(script), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
        )
        self.messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.junk: list[bytes] = []
        self.stderr = b""
        self._stderr_lines: list[bytes] = []
        self._stderr_cond = threading.Condition()
        self.next_id = 0
        self._t_out = threading.Thread(target=self._read_stdout, daemon=True)
        self._t_err = threading.Thread(target=self._read_stderr, daemon=True)
        self._t_out.start()
        self._t_err.start()

    def _read_stdout(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            try:
                msg = orjson.loads(line)
            except orjson.JSONDecodeError:
                self.junk.append(line)
                continue
            self.messages.put(msg)
        self.messages.put(None)

    def _read_stderr(self) -> None:
        assert self.p.stderr is not None
        for line in self.p.stderr:
            with self._stderr_cond:
                self._stderr_lines.append(line)
                self._stderr_cond.notify_all()
        self.stderr = b"".join(self._stderr_lines)

    def close_stdin(self) -> None:
        """EOF on the server's stdin."""
        assert self.p.stdin is not None
        self.p.stdin.close()

    def wait_stderr(self, needle: bytes, timeout: float = TIMEOUT) -> None:
        with self._stderr_cond:
            ok = self._stderr_cond.wait_for(
                lambda: any(needle in line for line in self._stderr_lines), timeout
            )
        assert ok, f"{needle!r} not on stderr within {timeout}s"

    def send_raw(self, data: bytes) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(data)
        self.p.stdin.flush()

    def send(self, msg: dict[str, Any]) -> None:
        self.send_raw(orjson.dumps(msg) + b"\n")

    def request(self, method: str, params: dict[str, Any] | None = None, rid: Any = None) -> Any:
        if rid is None:
            self.next_id += 1
            rid = self.next_id
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        return rid

    def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        try:
            msg = self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no message within {timeout}s") from None
        if msg is None:
            raise AssertionError(f"stdout closed; rc={self.p.poll()}")
        return msg

    def wait_for(self, rid: Any, timeout: float = TIMEOUT,
                 seen: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Messages until the response to `rid`; the ones before it go to `seen`."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.recv(max(0.01, deadline - time.monotonic()))
            if msg.get("id") == rid and "method" not in msg:
                return msg
            if seen is not None:
                seen.append(msg)

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.wait_for(self.request(method, params))

    def tool(self, name: str, args: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        return self.call("tools/call", {"name": name, "arguments": args or {}, **extra})

    def initialize(self, version: str = "2025-11-25") -> dict[str, Any]:
        resp = self.call(
            "initialize",
            {
                "protocolVersion": version,
                "capabilities": {"roots": {}},
                "clientInfo": {"name": "test", "version": "0"},
            },
        )
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return resp

    def wait_exit(self, timeout: float = TIMEOUT) -> int:
        rc = self.p.wait(timeout)
        self._t_err.join(timeout)
        return rc

    def close(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(TIMEOUT)
        for f in (self.p.stdin, self.p.stdout, self.p.stderr):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()


class Spawn(Protocol):
    """The `spawn` fixture: start a test server script; it is closed at teardown."""

    def __call__(self, script: Path, *args: str, cwd: str | None = None) -> Proc: ...


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    procs: list[Proc] = []

    def start(script: Path, *args: str, cwd: str | None = None) -> Proc:
        proc = Proc(script, *args, cwd=cwd)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.close()


# --------------------------------------------------------------------------- handshakes


def test_legacy_handshake(spawn: Spawn) -> None:
    s = spawn(ECHO, "--name", "alpha")
    r = s.initialize("2024-11-05")["result"]
    assert r["protocolVersion"] == "2024-11-05"
    assert r["serverInfo"] == {"name": "alpha", "version": "1.0.0"}
    assert r["capabilities"]["resources"] == {"listChanged": True, "subscribe": True}
    assert "resultType" not in r
    assert s.call("ping") == {"jsonrpc": "2.0", "id": 2, "result": {}}
    # an unknown version is answered with the latest legacy one
    s2 = spawn(ECHO)
    assert s2.initialize("1999-01-01")["result"]["protocolVersion"] == "2025-11-25"


def test_modern_discover(spawn: Spawn) -> None:
    s = spawn(ECHO, "--name", "beta")
    r = s.call("server/discover", {"_meta": META})["result"]
    assert r["supportedVersions"] == [MODERN]
    assert r["resultType"] == "complete"
    assert r["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "beta"
    assert r["capabilities"]["tools"] == {"listChanged": True}
    # now modern: the envelope is required
    err = s.call("tools/list")["error"]
    assert err["code"] == -32602
    assert PV_KEY in err["message"]
    err = s.call("tools/list", {"_meta": {"io.modelcontextprotocol/clientCapabilities": {}}})["error"]
    assert err["code"] == -32602
    assert "missing" in err["message"]
    err = s.call("tools/list", {"_meta": {PV_KEY: "2099-01-01"}})["error"]
    assert err["code"] == -32022
    assert err["data"] == {"supported": [MODERN], "requested": "2099-01-01"}
    r = s.call("tools/list", {"_meta": META})["result"]
    assert r["resultType"] == "complete"
    assert r["ttlMs"] == 0
    assert r["cacheScope"] == "private"
    r = s.tool("echo", {"text": "x"}, _meta=META)["result"]
    assert r["resultType"] == "complete"
    assert r["content"] == [{"type": "text", "text": "x"}]
    err = s.call("initialize", {"protocolVersion": "2025-11-25", "capabilities": {}})["error"]
    assert err["code"] == -32022
    assert err["data"] == {"supported": [MODERN], "requested": "2025-11-25"}


def test_requests_before_handshake_are_answered(spawn: Spawn) -> None:
    s = spawn(ECHO)
    assert s.call("ping")["result"] == {}
    assert s.tool("echo", {"text": "early"})["result"]["content"][0]["text"] == "early"


def test_era_flags(spawn: Spawn) -> None:
    legacy = spawn(ECHO, "--era", "legacy")
    assert legacy.call("server/discover", {"_meta": META})["error"]["code"] == -32601
    assert legacy.initialize()["result"]["protocolVersion"] == "2025-11-25"
    # an old server ignores the envelope rather than switching era
    assert "resultType" not in legacy.call("tools/list", {"_meta": META})["result"]
    modern = spawn(ECHO, "--era", "modern")
    err = modern.call("initialize", {"protocolVersion": "2025-06-18", "capabilities": {}})["error"]
    assert err["code"] == -32022
    assert err["data"]["supported"] == [MODERN]
    assert modern.call("server/discover", {"_meta": META})["result"]["supportedVersions"] == [MODERN]


def test_errors(spawn: Spawn) -> None:
    s = spawn(ECHO)
    s.initialize()
    s.send_raw(b"{not json\n")
    assert s.recv() == {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}}
    assert s.call("no/such/method")["error"]["code"] == -32601
    assert s.tool("no_such_tool")["error"]["code"] == -32602
    err = s.tool("error")["error"]
    assert err["code"] == -32603
    r = s.tool("fail")["result"]
    assert r["isError"] is True
    assert r["content"][0]["text"]


# --------------------------------------------------------------------------- lists


def test_pagination(spawn: Spawn) -> None:
    s = spawn(ECHO, "--tools", "10", "--page-size", "7")
    s.initialize()
    names: list[str] = []
    cursor = None
    pages = 0
    while True:
        r = s.call("tools/list", {"cursor": cursor} if cursor else {})["result"]
        pages += 1
        assert len(r["tools"]) <= 7
        names += [t["name"] for t in r["tools"]]
        cursor = r.get("nextCursor")
        if cursor is None:
            break
    assert len(names) == len(set(names))
    assert {"echo", "add", "delete_all", "t0", "t9"} <= set(names)
    assert pages == -(-len(names) // 7)
    assert s.call("tools/list", {"cursor": "bogus"})["error"]["code"] == -32602
    one_page = spawn(ECHO)
    one_page.initialize()
    r = one_page.call("tools/list")["result"]
    assert "nextCursor" not in r
    tools = {t["name"]: t for t in r["tools"]}
    assert tools["echo"]["annotations"] == {"readOnlyHint": True}
    assert tools["add"]["annotations"] == {"readOnlyHint": True}
    assert tools["delete_all"]["annotations"] == {"destructiveHint": True}
    assert tools["notify"]["annotations"]["readOnlyHint"] is False


def test_prompts_and_resources(spawn: Spawn) -> None:
    s = spawn(ECHO)
    s.initialize()
    assert [p["name"] for p in s.call("prompts/list")["result"]["prompts"]] == ["greet", "plain"]
    msg = s.call("prompts/get", {"name": "greet", "arguments": {"name": "Ada"}})["result"]["messages"][0]
    assert msg["content"]["text"] == "Hello, Ada!"
    assert s.call("prompts/get", {"name": "nope"})["error"]["code"] == -32602
    uris = [r["uri"] for r in s.call("resources/list")["result"]["resources"]]
    assert "test://hello" in uris
    tpl = s.call("resources/templates/list")["result"]["resourceTemplates"]
    assert tpl[0]["uriTemplate"] == "test://echo/{text}"
    assert s.call("resources/read", {"uri": "test://hello"})["result"]["contents"][0]["text"] == "hello world"
    assert s.call("resources/read", {"uri": "test://echo/abc"})["result"]["contents"][0]["text"] == "abc"
    assert s.call("resources/read", {"uri": "test://missing"})["error"]["code"] == -32002


# --------------------------------------------------------------------------- tools


def test_simple_tools(spawn: Spawn, tmp_path: Path) -> None:
    env_cwd = str(tmp_path)
    s = spawn(ECHO, cwd=env_cwd)
    s.initialize()
    r = s.tool("echo", {"text": "héllo", "extra": [1, 2]})["result"]
    assert r == {
        "content": [{"type": "text", "text": "héllo"}],
        "isError": False,
        "structuredContent": {"text": "héllo", "extra": [1, 2]},
    }
    r = s.tool("add", {"a": 2, "b": 3.5})["result"]
    assert r["content"][0]["text"] == "5.5"
    assert r["structuredContent"] == {"result": 5.5}
    assert s.tool("pid")["result"]["content"][0]["text"] == str(s.p.pid)
    assert s.tool("cwd")["result"]["content"][0]["text"] == os.path.realpath(env_cwd)
    assert s.tool("env", {"name": "PATH"})["result"]["content"][0]["text"] == os.environ["PATH"]
    assert s.tool("env", {"name": "NO_SUCH_VAR_XYZ"})["result"]["content"][0]["text"] == ""
    assert len(s.tool("big", {"bytes": 300_000})["result"]["content"][0]["text"]) == 300_000
    assert s.tool("delete_all")["result"]["content"][0]["text"] == "deleted"
    calls_so_far = 8
    assert s.tool("calls")["result"]["structuredContent"] == {"calls": calls_so_far}
    assert s.tool("calls", {"tool": "env"})["result"]["content"][0]["text"] == "2"


def test_notify_log_stderr(spawn: Spawn) -> None:
    s = spawn(ECHO)
    s.initialize()
    seen: list[dict[str, Any]] = []
    s.wait_for(s.request("tools/call", {"name": "notify", "arguments": {"kind": "prompts"}}), seen=seen)
    assert seen == [{"jsonrpc": "2.0", "method": "notifications/prompts/list_changed"}]
    seen.clear()
    s.wait_for(s.request("tools/call", {"name": "log", "arguments": {"text": "hello log"}}), seen=seen)
    assert seen[0]["method"] == "notifications/message"
    assert seen[0]["params"]["level"] == "info"
    assert seen[0]["params"]["data"] == "hello log"
    assert s.tool("stderr", {"text": "to-stderr", "lines": 3})["result"]["isError"] is False
    s.close_stdin()
    assert s.wait_exit() == 0
    assert s.stderr.count(b"to-stderr\n") == 3


def test_slow_call_does_not_block(spawn: Spawn) -> None:
    s = spawn(ECHO)
    s.initialize()
    slow = s.request("tools/call", {"name": "sleep", "arguments": {"seconds": 1.0}})
    fast = s.request("tools/call", {"name": "echo", "arguments": {"text": "fast"}})
    first = s.recv()
    assert first["id"] == fast
    assert s.recv(5)["id"] == slow


def test_cancel(spawn: Spawn) -> None:
    s = spawn(ECHO)
    s.initialize()
    doomed = s.request("tools/call", {"name": "sleep", "arguments": {"seconds": 0.5}}, rid="doomed")
    s.send(
        {
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": doomed, "reason": "test"},
        }
    )
    # a later, longer sleep: the cancelled one would have been answered before it
    later = s.request("tools/call", {"name": "sleep", "arguments": {"seconds": 1.0}})
    seen: list[dict[str, Any]] = []
    assert s.wait_for(later, seen=seen)["result"]["content"][0]["text"] == "slept"
    assert seen == []
    assert orjson.loads(s.tool("cancelled")["result"]["content"][0]["text"]) == ["doomed"]
    assert s.tool("calls", {"tool": "sleep"})["result"]["content"][0]["text"] == "1"


def test_progress(spawn: Spawn) -> None:
    s = spawn(ECHO)
    s.initialize()
    rid = s.request(
        "tools/call", {"name": "sleep", "arguments": {"seconds": 0.3}, "_meta": {"progressToken": "tok"}}
    )
    seen: list[dict[str, Any]] = []
    assert s.wait_for(rid, seen=seen)["result"]["content"][0]["text"] == "slept"
    assert len(seen) >= 2
    assert all(m["method"] == "notifications/progress" for m in seen)
    assert all(m["params"]["progressToken"] == "tok" for m in seen)
    progress = [m["params"]["progress"] for m in seen]
    assert progress == sorted(progress)
    assert progress[-1] == seen[-1]["params"]["total"]


def test_roots_and_sample_legacy(spawn: Spawn) -> None:
    s = spawn(ECHO)
    s.initialize()
    rid = s.request("tools/call", {"name": "roots", "arguments": {}})
    ask = s.recv()
    assert ask["method"] == "roots/list"
    roots = {"roots": [{"uri": "file:///tmp", "name": "tmp"}]}
    s.send({"jsonrpc": "2.0", "id": ask["id"], "result": roots})
    r = s.wait_for(rid)["result"]
    assert orjson.loads(r["content"][0]["text"]) == roots
    rid = s.request("tools/call", {"name": "sample", "arguments": {"prompt": "hi"}})
    ask = s.recv()
    assert ask["method"] == "sampling/createMessage"
    assert ask["params"]["messages"][0]["content"]["text"] == "hi"
    s.send({"jsonrpc": "2.0", "id": ask["id"], "error": {"code": -1, "message": "no sampling"}})
    assert s.wait_for(rid)["result"]["isError"] is True


def test_roots_modern_input_required(spawn: Spawn) -> None:
    s = spawn(ECHO)
    s.call("server/discover", {"_meta": META})
    r = s.tool("roots", _meta=META)["result"]
    assert r["resultType"] == "input_required"
    assert r["inputRequests"]["roots"]["method"] == "roots/list"
    answer = {"roots": [{"uri": "file:///w"}]}
    r = s.tool("roots", _meta=META, inputResponses={"roots": answer}, requestState=r["requestState"])[
        "result"
    ]
    assert r["resultType"] == "complete"
    assert orjson.loads(r["content"][0]["text"]) == answer


# --------------------------------------------------------------------------- chaos


def test_chaos_crash_after(spawn: Spawn) -> None:
    s = spawn(CHAOS, "--crash-after", "2")
    s.initialize()
    assert s.tool("echo", {"text": "1"})["result"]["content"][0]["text"] == "1"
    s.request("tools/call", {"name": "echo", "arguments": {"text": "2"}})
    assert s.wait_exit() == 3
    assert s.messages.get(timeout=TIMEOUT) is None  # stdout closed without an answer


def test_chaos_junk(spawn: Spawn) -> None:
    s = spawn(CHAOS, "--junk")
    assert s.initialize()["result"]["serverInfo"]["name"] == "chaos-server"
    assert s.tool("echo", {"text": "through junk"})["result"]["content"][0]["text"] == "through junk"
    assert any(line.strip() and not line.startswith(b"{") for line in s.junk)
    assert any(not line.strip() for line in s.junk)


def test_chaos_exit_before_handshake(spawn: Spawn) -> None:
    s = spawn(CHAOS, "--exit-before-handshake", "Error: API_KEY is not set")
    assert s.wait_exit() == 1
    assert b"Error: API_KEY is not set" in s.stderr


def test_chaos_out_of_order(spawn: Spawn) -> None:
    s = spawn(CHAOS, "--out-of-order")
    s.initialize()
    # one write (< PIPE_BUF, so atomic) -> one read -> one batch answered in reverse
    s.send_raw(
        b"".join(orjson.dumps({"jsonrpc": "2.0", "id": i, "method": "ping"}) + b"\n" for i in (10, 11, 12))
    )
    assert [s.recv()["id"] for _ in range(3)] == [12, 11, 10]


def test_chaos_exit_code_pidfile_and_crash_on_start(spawn: Spawn, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    s = spawn(CHAOS, "--exit-code", "1", "--pidfile", str(pidfile))
    s.initialize()
    assert pidfile.read_text().strip() == str(s.p.pid)
    s.close_stdin()
    assert s.wait_exit() == 1
    marker = tmp_path / "broken"
    marker.touch()
    s2 = spawn(CHAOS, "--crash-on-start-if-file", str(marker))
    assert s2.wait_exit() == 1


def test_chaos_hang_tools(spawn: Spawn) -> None:
    s = spawn(CHAOS, "--hang-tools")
    s.initialize()
    hung = s.request("tools/call", {"name": "echo", "arguments": {"text": "never"}})
    assert s.call("ping")["result"] == {}
    assert s.call("tools/list")["result"]["tools"]
    assert s.messages.empty()
    assert s.p.poll() is None
    del hung


def test_chaos_ignore_eof(spawn: Spawn) -> None:
    s = spawn(CHAOS, "--ignore-eof")
    s.initialize()
    s.close_stdin()
    s.wait_stderr(b"ignoring EOF")
    assert s.p.poll() is None
    s.p.send_signal(signal.SIGTERM)
    assert s.wait_exit() == -signal.SIGTERM


def test_chaos_ignore_sigterm(spawn: Spawn) -> None:
    s = spawn(CHAOS, "--ignore-sigterm")
    s.initialize()
    s.p.send_signal(signal.SIGTERM)
    assert s.call("ping")["result"] == {}  # the signal was delivered before the read; still alive
    assert s.p.poll() is None
    s.p.kill()
    assert s.wait_exit() == -signal.SIGKILL


def test_chaos_grandchild(spawn: Spawn) -> None:
    s = spawn(CHAOS, "--grandchild", "--grandchild-leak-mb", "20")
    s.initialize()
    pid = int(s.tool("grandchild")["result"]["content"][0]["text"])
    try:
        gc = psutil.Process(pid)
        assert gc.ppid() == s.p.pid
        assert os.getpgid(pid) == os.getpgid(s.p.pid)
        deadline = time.monotonic() + TIMEOUT
        while gc.memory_info().rss < 20 << 20:
            assert time.monotonic() < deadline, "grandchild never allocated its memory"
            time.sleep(0.02)
    finally:
        os.kill(pid, signal.SIGKILL)
    s2 = spawn(CHAOS, "--grandchild-setsid")
    s2.initialize()
    pid2 = int(s2.tool("grandchild")["result"]["content"][0]["text"])
    try:
        deadline = time.monotonic() + TIMEOUT
        while os.getpgid(pid2) == os.getpgid(s2.p.pid):
            assert time.monotonic() < deadline, "grandchild never called setsid"
            time.sleep(0.02)
    finally:
        os.kill(pid2, signal.SIGKILL)


# --------------------------------------------------------------------------- official SDK client


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_official_sdk_client(mode: str) -> None:
    import mcp_types as types
    from mcp import Client, StdioServerParameters
    from mcp.client import ClientRequestContext
    from pydantic import FileUrl

    async def list_roots(context: ClientRequestContext) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri=FileUrl("file:///tmp/x"), name="x")])

    reported: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reported.append(progress)

    params = StdioServerParameters(command=sys.executable, args=[str(ECHO), "--page-size", "5"])
    async with Client(params, mode=mode, list_roots_callback=list_roots) as c:
        if mode == "auto":
            assert c.session.discover_result is not None
        else:
            assert c.session.discover_result is None
        names: list[str] = []
        cursor = None
        while True:
            page = await c.list_tools(cursor=cursor)
            names += [t.name for t in page.tools]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert "echo" in names
        assert "delete_all" in names
        r = await c.call_tool("echo", {"text": "hi"})
        assert r.is_error is False
        assert text_of(r) == "hi"
        r = await c.call_tool("add", {"a": 1, "b": 2})
        assert r.structured_content == {"result": 3}
        r = await c.call_tool("fail", {})
        assert r.is_error is True
        prompts = await c.list_prompts()
        assert prompts.prompts[0].name == "greet"
        res = await c.read_resource("test://hello")
        assert resource_text(res) == "hello world"
        # legacy: a real server->client roots/list; modern: input_required, then a retry
        r = await c.call_tool("roots", {})
        assert orjson.loads(text_of(r)) == {"roots": [{"uri": "file:///tmp/x", "name": "x"}]}
        r = await c.call_tool("sleep", {"seconds": 0.1}, progress_callback=on_progress)
        assert text_of(r) == "slept"
        assert reported == [1, 2, 3]


def test_chaos_hang_after(spawn: Spawn) -> None:
    s = spawn(CHAOS, "--hang-after", "1")
    s.initialize()
    assert s.tool("echo", {"text": "last"})["result"]["content"][0]["text"] == "last"
    s.request("ping")
    s.close_stdin()  # it keeps reading stdin while hung: EOF still ends it, without an answer
    assert s.wait_exit() == 0
    assert s.messages.get(timeout=TIMEOUT) is None


def test_chaos_notify_before_reply_and_slow_start(spawn: Spawn) -> None:
    t0 = time.monotonic()
    s = spawn(CHAOS, "--notify-before-reply", "--slow-start", "0.3")
    seen: list[dict[str, Any]] = []
    r = s.wait_for(s.request("server/discover", {"_meta": META}), seen=seen)
    assert time.monotonic() - t0 >= 0.3
    assert r["result"]["supportedVersions"] == [MODERN]
    assert [m["method"] for m in seen] == ["notifications/message"]


def test_chaos_stderr_spam_and_leak(spawn: Spawn) -> None:
    s = spawn(CHAOS, "--stderr-spam", "--leak-mb-per-s", "100")
    s.initialize()
    proc = psutil.Process(s.p.pid)
    start = proc.memory_info().rss
    deadline = time.monotonic() + TIMEOUT
    while proc.memory_info().rss < start + (30 << 20):
        assert time.monotonic() < deadline, "memory did not grow"
        assert s.call("ping")["result"] == {}  # answers while stderr is drained by the test
    s.wait_stderr(b"stderr spam")


# --------------------------------------------------------------------------- hostile server

def _driver(path: str) -> tuple[socketlib.socket, BinaryIO]:
    deadline = time.monotonic() + TIMEOUT
    while True:
        sock = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
        try:
            sock.connect(path)
            break
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            assert time.monotonic() < deadline, "the hostile server never listened"
            time.sleep(0.02)
    sock.settimeout(TIMEOUT)
    return sock, sock.makefile("rb")


def test_hostile_server_writes_what_it_is_told_and_answers_as_told(spawn: Spawn, tmp_path: Path) -> None:
    """hostile_server.py: `write` lands on stdout verbatim, `answer_next` replaces the next answer
    of that method (id filled in), `seen` lists the ids received, and it still serves normally."""
    path = str(tmp_path / "inject.sock")
    p = spawn(SERVERS / "hostile_server.py", "--inject", path)
    p.initialize()
    sock, replies = _driver(path)

    def command(cmd: dict[str, Any]) -> dict[str, Any]:
        sock.sendall(orjson.dumps(cmd) + b"\n")
        reply: dict[str, Any] = orjson.loads(replies.readline())
        return reply

    assert command({"write": 'not json\n{"jsonrpc":"2.0","id":{"odd":1},"result":[1]}\n'}) == {"ok": True}
    assert p.recv() == {"jsonrpc": "2.0", "id": {"odd": 1}, "result": [1]}
    assert b"not json\n" in p.junk
    assert command({"answer_next": {"method": "tools/list",
                                    "line": '{"jsonrpc":"2.0","id":"__ID__","result":{"tools":[7]}}'}})["ok"]
    assert p.call("tools/list") == {"jsonrpc": "2.0", "id": p.next_id, "result": {"tools": [7]}}
    assert p.call("tools/list")["result"]["tools"][0]["name"] == "echo"  # used once, then normal
    assert p.next_id in command({"seen": True})["ids"]
    assert command({"answer_next": {"method": "ping", "line": "{}"}})["ok"]
    assert command({"clear": True})["ok"]
    assert p.call("ping")["result"] == {}
    assert command({"nonsense": 1})["ok"] is False
    sock.close()
