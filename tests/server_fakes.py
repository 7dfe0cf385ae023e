"""A fake clock and fake children for in-process `Server` tests (no subprocess, no sleeping).

`FakeClock` is the `Clock` a test moves by hand (trio's `MockClock` idea). `FakeInstance` is the
real `Instance` with only its transport replaced, the way httpx's `MockTransport` replaces only
the network: `run` spawns nothing, the child's stdin is a stream the test reads (`received`), and
answers go back through the instance's own reader (`_on_line`), so id remapping, the pending
table, deadlines and `request_done` are the real code. A test drives the server's synchronous
decisions (`submit`, `expire`, `idle_check`, `autoscale`, `memory_sample`) at the instant it
chooses.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import orjson

from supervisor.config import parse_config
from supervisor.core.clock import Clock
from supervisor.core.instance import ExitInfo, Instance
from supervisor.core.server import FleetContext, Server
from supervisor.policy.states import State

_PIDS = itertools.count(900_000)
TOOLS = [{"name": "echo", "description": "echo", "inputSchema": {"type": "object"}}]


class FakeClock:
    """Monotonic and wall time that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.epoch = 1_700_000_000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.epoch + self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Sink:
    """A client: collects what it is told."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def deliver(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [m["error"] for m in self.messages if "error" in m]


class _ChildStdin(anyio.abc.ByteSendStream):
    """What the fake child reads: each line is parsed and handed to the instance's `on_stdin`."""

    def __init__(self, child: FakeInstance) -> None:
        self.child = child
        self.partial = b""

    async def send(self, item: bytes) -> None:
        *lines, self.partial = (self.partial + item).split(b"\n")
        for line in lines:
            if line:
                self.child.on_stdin(orjson.loads(line))

    async def aclose(self) -> None:
        pass


class FakeInstance(Instance):
    """An `Instance` whose child is the test: it "starts" at once (or when `hold_start` is set,
    when the test lets it), answers pings unless `hung`, and leaves every other request to the
    test (`answer`). `crash` ends it as a crashed child would."""

    hold_start = False
    hung = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.received: list[dict[str, Any]] = []
        self.exit_code: int | None = None
        self.may_start = anyio.Event()

    def on_stdin(self, message: dict[str, Any]) -> None:
        self.received.append(message)
        if message.get("method") == "ping" and not self.hung:
            self.reply(message["id"], {})

    def requests(self, method: str = "tools/call") -> list[dict[str, Any]]:
        return [m for m in self.received if m.get("method") == method and "id" in m]

    def reply(self, child_id: int, result: dict[str, Any] | None = None,
              error: dict[str, Any] | None = None) -> None:
        body: dict[str, Any] = {"error": error} if error is not None else {"result": result or {}}
        self._on_line(orjson.dumps({"jsonrpc": "2.0", "id": child_id, **body}))

    def answer(self, index: int = 0, **kwargs: Any) -> None:
        """Answer the `index`-th tools/call the child received."""
        self.reply(self.requests()[index]["id"], **kwargs)

    def crash(self, code: int = 1) -> None:
        self.exit_code = code
        self._gone.set()

    async def run(self, on_ready: Callable[[Instance], None]) -> ExitInfo:
        self.pid = next(_PIDS)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._stdin.pump, _ChildStdin(self))
                if self.hold_start:
                    await self.may_start.wait()
                if not self._gone.is_set():
                    self.tools = list(TOOLS)
                    self.capabilities = {"tools": {}}
                    self.protocol_version = "2025-06-18"
                    self.ready = True
                    self.started_at = self.clock.time()
                    on_ready(self)
                    await self._gone.wait()
                tg.cancel_scope.cancel()
        finally:
            self.ready = False
            self._fail_pending()
        return ExitInfo(self.exit_code, self.started_at is None, [], 0)


class Children:
    """The instance factory: makes `FakeInstance`s and keeps every one it made."""

    def __init__(self) -> None:
        self.made: list[FakeInstance] = []
        self.hold_start = False
        self.hung = False

    def __call__(self, **kwargs: Any) -> FakeInstance:
        inst = FakeInstance(**kwargs)
        inst.hold_start = self.hold_start
        inst.hung = self.hung
        self.made.append(inst)
        return inst


def make_server(tmp: Path, clock: Clock, children: Children, **settings: Any) -> Server:
    """A server of the given `[servers.fake]` settings, with the fake clock and children."""
    lines = "".join(f"{key} = {_toml(value)}\n" for key, value in settings.items())
    text = f'[servers.fake]\ncommand = "/bin/true"\n{lines}'
    config = parse_config(text, environ={"PATH": "/usr/bin:/bin"}).servers["fake"]
    ctx = FleetContext(environ={"PATH": "/usr/bin:/bin"}, state_dir=tmp / "state", data_dir=tmp / "data",
                       clock=clock, new_instance=children)
    return Server(config, ctx)


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key} = {_toml(item)}" for key, item in value.items()) + "}"
    return orjson.dumps(value).decode()


async def until(predicate: Callable[[], object], what: str, timeout: float = 5.0) -> None:
    """Let the event loop run until `predicate` holds (a deadline, never a bare sleep)."""
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.001)


@asynccontextmanager
async def running(server: Server) -> AsyncIterator[Server]:
    """The server's `run` in a task group, cancelled (and its children ended) on the way out."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.run)
        try:
            yield server
        finally:
            tg.cancel_scope.cancel()


def call(server: Server, sink: Sink, request_id: int, tool: str = "echo") -> None:
    server.submit(sink, {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                         "params": {"name": tool, "arguments": {}}}, False)


def ready(server: Server, count: int = 1) -> Callable[[], bool]:
    return lambda: server.state == State.READY and len(server.ready_instances) >= count
