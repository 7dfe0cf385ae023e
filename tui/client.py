"""The dashboard's view of the daemon: a small interface and its control-socket implementation.

The app depends on `DaemonClient` only, so snapshot tests feed it `tui.fake.FakeDaemonClient` and
`mcpctl top` feeds it `SocketDaemonClient`. Every failure to reach the daemon (no socket, refused,
closed mid-stream, silent for too long) surfaces as one exception, `DaemonUnavailable`, which the
app turns into its "daemon not running — retrying" state. An error *answer* from a live daemon
(unknown server, bad params) is a `RemoteError` instead: the daemon is fine, the request was not.
Both are `supervisor.client.errors`'s, the same the `mcpctl` verbs raise.

Wire format: newline-delimited JSON-RPC 2.0 over a Unix stream socket. Requests use a fresh
connection each (they are rare: a key press, a selection change), so replies never interleave with
the pushed notifications of a subscription, which keeps its own connection for its lifetime.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import anyio
import orjson
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from supervisor.client.errors import DaemonUnavailable, RemoteError
from tui.levels import known_level

# A status reply for 27 servers is a few kB; a log line can be long. Anything past this is a bug.
MAX_LINE_BYTES = 16 * 1024 * 1024


__all__ = ["DaemonClient", "DaemonUnavailable", "Fleet", "LogLine", "RemoteError", "SocketDaemonClient",
           "Targets", "log_lines", "targets_params"]


@dataclass(frozen=True)
class LogLine:
    """One stderr line of one server, as the log views show it."""

    server: str
    line: str
    at: float | None = None
    """When the daemon read it (None from a daemon that does not say)."""
    level: str = "info"
    """The daemon's level for it, or the one `tui.levels.level_of` reads from the line."""

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> LogLine:
        """From a pushed `log` event: `{server, line, at?, level?}`."""
        line = str(event.get("line", ""))
        at = event.get("at")
        return cls(str(event.get("server", "?")), line, float(at) if isinstance(at, int | float) else None,
                   known_level(event.get("level"), line))  # fmt: skip


class Fleet(enum.Enum):
    """Target every server (`{"all": true}`), spelled out so `None` can never mean "all"."""

    ALL = "all"


Targets = Sequence[str] | Literal[Fleet.ALL]


class DaemonClient(Protocol):
    """What the dashboard needs from the daemon. Implementations raise `DaemonUnavailable` when
    the daemon cannot be reached and `RemoteError` when it refuses a request."""

    @property
    def socket_path(self) -> Path:
        """Shown to the user when the daemon is not running."""
        ...

    async def status(self) -> dict[str, Any]:
        """`supervisor/status`: `{"daemon": {...}, "servers": [...], "cache": {...}}`."""
        ...

    def events(self, logs: Sequence[str] = ()) -> AsyncGenerator[dict[str, Any], None]:
        """Subscribe to `supervisor/events` and yield each event's params, forever. Log lines are
        sent only for the servers named in `logs`. Close it with `contextlib.aclosing`."""
        ...

    async def restart(self, targets: Targets) -> None: ...

    async def stop(self, targets: Targets) -> None: ...

    async def start(self, targets: Targets) -> None: ...

    async def reload(self) -> dict[str, Any]:
        """`supervisor/reload`: re-read fleet.toml; what changed."""
        ...

    async def clear_cache(self, name: str | None) -> int:
        """`supervisor/cache/clear` for one server or (None) the fleet; entries removed."""
        ...

    async def logs(self, name: str, lines: int) -> list[LogLine]:
        """The last `lines` stderr lines of one server, with their times and levels."""
        ...

    async def tools(self, name: str) -> list[dict[str, Any]]:
        """The tools one server advertises (objects with at least `name` and `description`)."""
        ...

    async def tool_changes(self, name: str) -> list[dict[str, Any]]:
        """The tools of one server whose definition differs from its pin: objects with `tool`,
        `since`, `blocked`, `pinned`, `current` (definitions) and `diff` (unified, as text)."""
        ...

    async def detail(self, name: str) -> dict[str, Any]:
        """One server's status entry with `state_history`, `restart_history` and `config` (an
        older daemon leaves them out)."""
        ...


def targets_params(targets: Targets) -> dict[str, Any]:
    if targets is Fleet.ALL:
        return {"all": True}
    return {"servers": list(targets)}


class SocketDaemonClient:
    """`DaemonClient` over the daemon's Unix control socket.

    `timeout` bounds every request (connect, send, reply). `event_timeout` bounds the silence on a
    subscription: the daemon pushes stats once a second, so ten silent seconds means it is wedged
    or gone, and the caller hears `DaemonUnavailable` rather than waiting forever.
    """

    def __init__(self, socket_path: Path | str, *, timeout: float = 5.0, event_timeout: float = 10.0) -> None:
        self._path = Path(socket_path)
        self._timeout = timeout
        self._event_timeout = event_timeout
        self._ids = itertools.count(1)

    @property
    def socket_path(self) -> Path:
        return self._path

    # -- plumbing -----------------------------------------------------------------------------

    def _unavailable(self, reason: str) -> DaemonUnavailable:
        return DaemonUnavailable(self._path, reason)

    async def _connect(self) -> SocketStream:
        try:
            with anyio.fail_after(self._timeout):
                return await anyio.connect_unix(self._path)
        except FileNotFoundError:
            raise self._unavailable("no socket") from None
        except ConnectionRefusedError:
            raise self._unavailable("connection refused") from None
        except TimeoutError:
            raise self._unavailable(f"no answer within {self._timeout:g} s") from None
        except OSError as exc:
            raise self._unavailable(exc.strerror or str(exc)) from None

    async def _send(self, stream: SocketStream, method: str, params: dict[str, Any]) -> int:
        request_id = next(self._ids)
        payload = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        try:
            await stream.send(orjson.dumps(payload) + b"\n")
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            raise self._unavailable("connection lost") from None
        return request_id

    async def _read_message(self, reader: BufferedByteReceiveStream) -> dict[str, Any]:
        try:
            line = await reader.receive_until(b"\n", MAX_LINE_BYTES)
        except (anyio.IncompleteRead, anyio.EndOfStream):
            raise self._unavailable("the daemon closed the connection") from None
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            raise self._unavailable("connection lost") from None
        except anyio.DelimiterNotFound:
            raise self._unavailable(f"a message longer than {MAX_LINE_BYTES} bytes") from None
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise self._unavailable("the daemon sent something that is not JSON") from None
        if not isinstance(message, dict):
            raise self._unavailable("the daemon sent a JSON value that is not an object")
        return message

    async def _await_reply(self, reader: BufferedByteReceiveStream, request_id: int) -> Any:
        while True:
            message = await self._read_message(reader)
            if message.get("id") != request_id:
                continue  # a notification that raced the reply; the caller does not want it
            if "error" in message:
                raise RemoteError.from_reply(message["error"])
            return message.get("result")

    async def _call(self, method: str, params: dict[str, Any]) -> Any:
        stream = await self._connect()
        async with stream:
            try:
                with anyio.fail_after(self._timeout):
                    request_id = await self._send(stream, method, params)
                    return await self._await_reply(BufferedByteReceiveStream(stream), request_id)
            except TimeoutError:
                raise self._unavailable(f"no answer to {method} within {self._timeout:g} s") from None

    # -- the interface ------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        result = await self._call("supervisor/status", {})
        return result if isinstance(result, dict) else {}

    async def events(self, logs: Sequence[str] = ()) -> AsyncGenerator[dict[str, Any], None]:
        stream = await self._connect()
        async with stream:
            reader = BufferedByteReceiveStream(stream)
            params: dict[str, Any] = {"logs": list(logs)} if logs else {}
            try:
                with anyio.fail_after(self._timeout):
                    request_id = await self._send(stream, "supervisor/events", params)
                    await self._await_reply(reader, request_id)
            except TimeoutError:
                raise self._unavailable("no answer to supervisor/events") from None
            while True:
                # The cancel scope must not span the `yield`: only the read is bounded.
                try:
                    with anyio.fail_after(self._event_timeout):
                        message = await self._read_message(reader)
                except TimeoutError:
                    raise self._unavailable(f"no events for {self._event_timeout:g} s") from None
                if message.get("method") == "supervisor/event" and isinstance(message.get("params"), dict):
                    yield message["params"]

    async def restart(self, targets: Targets) -> None:
        await self._call("supervisor/restart", targets_params(targets))

    async def stop(self, targets: Targets) -> None:
        await self._call("supervisor/stop", targets_params(targets))

    async def start(self, targets: Targets) -> None:
        await self._call("supervisor/start", targets_params(targets))

    async def reload(self) -> dict[str, Any]:
        result = await self._call("supervisor/reload", {})
        return result if isinstance(result, dict) else {}

    async def clear_cache(self, name: str | None) -> int:
        result = await self._call("supervisor/cache/clear", {"server": name} if name else {})
        cleared = result.get("cleared") if isinstance(result, dict) else None
        return cleared if isinstance(cleared, int) else 0

    async def logs(self, name: str, lines: int) -> list[LogLine]:
        result = await self._call("supervisor/logs", {"server": name, "lines": lines})
        return log_lines(name, result)

    async def detail(self, name: str) -> dict[str, Any]:
        result = await self._call("supervisor/status", {"servers": [name], "detail": True})
        servers = result.get("servers") if isinstance(result, dict) else None
        found = servers[0] if isinstance(servers, list) and servers else None
        return found if isinstance(found, dict) else {}

    async def tool_changes(self, name: str) -> list[dict[str, Any]]:
        result = await self._call("supervisor/tools", {"server": name, "diff": True})
        return tool_change_entries(name, result)

    async def tools(self, name: str) -> list[dict[str, Any]]:
        result = await self._call("supervisor/tools", {"server": name})
        servers = result.get("servers", {}) if isinstance(result, dict) else {}
        found = servers.get(name, []) if isinstance(servers, dict) else []
        return [tool for tool in found if isinstance(tool, dict)]


def tool_change_entries(name: str, result: object) -> list[dict[str, Any]]:
    """A `supervisor/tools {diff: true}` reply: the change entries of `name` that have the shape the
    detail screen reads (a tool name; definitions as objects; a diff as text)."""
    servers = result.get("servers") if isinstance(result, dict) else None
    found = servers.get(name) if isinstance(servers, dict) else None
    return [
        entry
        for entry in (found if isinstance(found, list) else [])
        if isinstance(entry, dict)
        and isinstance(entry.get("tool"), str)
        and isinstance(entry.get("pinned", {}), dict)
        and isinstance(entry.get("current", {}), dict)
        and isinstance(entry.get("diff", ""), str)
    ]


def log_lines(name: str, result: object) -> list[LogLine]:
    """A `supervisor/logs` reply as LogLines: `lines`, with `times` and `levels` where the daemon
    sends them (lists aligned with `lines`; anything else is ignored)."""
    found = result.get("lines") if isinstance(result, dict) else None
    if not isinstance(found, list) or not isinstance(result, dict):
        return []
    times, levels = result.get("times"), result.get("levels")
    if not isinstance(times, list) or len(times) != len(found):
        times = [None] * len(found)
    if not isinstance(levels, list) or len(levels) != len(found):
        levels = [None] * len(found)
    entries = []
    for line, at, level in zip(found, times, levels, strict=True):
        text = str(line)
        when = float(at) if isinstance(at, int | float) else None
        entries.append(LogLine(name, text, when, known_level(level, text)))
    return entries
