"""The control socket: JSON-RPC 2.0 lines over a Unix socket, owner-only.

Each connection reads newline-delimited requests (bounded in size and depth; a malformed one is
answered -32700 / -32600 / -32602 with its own id where it has one) and answers them in any
order through its outbox. Methods:

    supervisor/status  start  stop  restart  logs  tools  tools/approve  call  reload
    supervisor/cache/clear  events  metrics  prerequisites  drain  cluster  tasks

are one function each in `supervisor.doors.control.methods`, and each function's docstring is that
method's reference (params → result); `methods.HANDLERS` maps the names. One more method belongs
to the connection itself, because it changes what the connection is:

    supervisor/attach   {server, client?} | {all: true, client?}, pipes? → {server, state, pipes?};
                        from then on the connection carries one MCP session with that server, or
                        with the aggregate of all ready servers (tools named SERVER__tool;
                        `mcpctl connect [--all]`). With `pipes` and two file descriptors passed
                        along (SCM_RIGHTS), the session is served on the client's own stdin and
                        stdout instead, and this connection only says `supervisor/detached` when
                        it ends (see `ControlConnection._serve_pipes`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import logging
import os
import select
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel

from supervisor.core.sessions import Session, Target
from supervisor.core.views import check_server, view_target
from supervisor.domains import MessageFailed, domain
from supervisor.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    SupervisorError,
    to_jsonrpc_error,
)
from supervisor.wire.jsonrpc import (
    DEFAULT_MAX_MESSAGE,
    LineSplitter,
    Message,
    Oversized,
    TooDeep,
    encode,
    error_response,
    is_valid_id,
    loads,
    parse_error,
    too_deep,
    too_large,
)
from supervisor.wire.outbox import Outbox, OutboxOverflow, batch

from .methods import HANDLERS, DaemonView, _text
from .socketlock import check_socket_path

log = logging.getLogger("mcp_supervisor.control")

READ_CHUNK = 65536  # under glibc's mmap threshold: a bigger recv buffer costs mmap+mremap+munmap


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


HALF_CLOSE_DRAIN = 60.0  # longest wait for answers owed to a client that closed its input


def connection_buffer(max_message: int) -> int:
    """Bytes one connection's outbound buffer may hold before the connection is closed: two
    whole messages, so a client that reads slowly is not cut, and one that never reads costs the
    daemon a bounded amount."""
    return 2 * max_message + 1024 * 1024


def _still_reading(target: socket.socket | int | None) -> bool:
    """Is anyone still reading from this socket or pipe write end? POLLHUP/POLLERR say the peer
    is gone (both directions), as opposed to having only finished writing."""
    if target is None:
        return False
    poller = select.poll()
    poller.register(target, select.POLLOUT)
    events = poller.poll(0)
    return not any(mask & (select.POLLHUP | select.POLLERR) for _, mask in events)


def _socket_sender(stream: anyio.abc.SocketStream) -> Callable[[bytes], int] | None:
    """A non-blocking send on the connection's own socket, for `Outbox`'s direct path."""
    sock = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
    if sock is None or sock.gettimeout() != 0.0:
        return None
    return sock.send


class _FdSendStream(anyio.abc.ByteSendStream):
    """Writes to a non-blocking fd (a client's stdout pipe), waiting while it is full."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    async def send(self, item: bytes) -> None:
        view = memoryview(item)
        while view:
            try:
                view = view[os.write(self.fd, view):]
            except BlockingIOError:
                await anyio.wait_writable(self.fd)

    async def aclose(self) -> None:
        pass  # the owner closes the fd


async def _read_fd(fd: int, feed: Callable[[bytes], None],
                   read: Callable[[], bytes] | None = None) -> None:
    """Feed what arrives on `fd` to `feed` from a loop reader callback (in an outbox batch, so
    what the feed pushes is written as the callback returns), until end of stream. `read` takes
    one chunk (default: `os.read`)."""
    loop = asyncio.get_running_loop()
    flushing = batch()
    done = anyio.Event()
    failure: list[BaseException] = []
    take = read if read is not None else (lambda: os.read(fd, READ_CHUNK))

    def readable() -> None:
        try:
            chunk = take()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            loop.remove_reader(fd)
            done.set()
            return
        try:
            with flushing:
                feed(chunk)
        except BaseException as exc:  # surface it in the task, not the loop's handler
            loop.remove_reader(fd)
            failure.append(exc)
            done.set()

    loop.add_reader(fd, readable)
    try:
        await done.wait()
    finally:
        loop.remove_reader(fd)
    if failure:
        raise failure[0]


_OUT_OF_FDS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
ACCEPT_RETRY = 0.5


async def _accept(listener: anyio.abc.SocketListener) -> anyio.abc.SocketStream:
    """The next connection. Running out of descriptors is a pause, not the end: the connection
    waits in the backlog until some are free (asyncio's own servers do the same)."""
    warned = False
    while True:
        try:
            return await listener.accept()
        except (OSError, anyio.BrokenResourceError) as exc:
            cause = exc if isinstance(exc, OSError) else exc.__cause__
            if not isinstance(cause, OSError) or cause.errno not in _OUT_OF_FDS:
                raise
            if not warned:
                log.warning("control socket: out of file descriptors (%s); new connections wait "
                            "until some are free", cause.strerror)
                warned = True
            await anyio.sleep(ACCEPT_RETRY)


class ControlServer:
    def __init__(self, path: Path, daemon: DaemonView, max_message: int = DEFAULT_MAX_MESSAGE) -> None:
        self.path = path
        self.daemon = daemon
        self.max_message = max_message

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        check_socket_path(self.path)  # a socket left by a dead daemon is replaced; nothing else
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        old_umask = os.umask(0o177)  # the socket is born 0600: no window where others can connect
        try:
            listener = await anyio.create_unix_listener(self.path)
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        task_status.started()
        try:
            async with listener, anyio.create_task_group() as tg:
                while True:
                    stream = await _accept(listener)
                    tg.start_soon(self._handle, stream)
        finally:
            with contextlib.suppress(OSError):
                self.path.unlink()

    async def _handle(self, stream: anyio.abc.SocketStream) -> None:
        connection = ControlConnection(stream, self.daemon, self.max_message)
        await connection.run()


_CONNECTIONS = itertools.count(1)  # names the anonymous owners of per-client instances


class ControlConnection:
    def __init__(self, stream: anyio.abc.SocketStream, daemon: DaemonView, max_message: int) -> None:
        self.stream = stream
        self.daemon = daemon
        self.max_message = max_message
        self.outbox = Outbox(connection_buffer(max_message))
        self.session: Session | None = None
        self._fds: list[int] = []  # passed by `mcpctl connect` with its attach request
        self._pipes_scope: anyio.CancelScope | None = None
        self._unsubscribe: Callable[[], None] | None = None

    async def run(self) -> None:
        try:
            with domain("connection", "control socket", on_failure=self._failed):
                await self._run()
        finally:
            self._passed_fds([])
            if self.session is not None:
                self.session.close()
            if self._unsubscribe is not None:
                self._unsubscribe()
            with contextlib.suppress(Exception):
                await self.stream.aclose()

    def _failed(self, exc: Exception) -> None:
        """The connection's domain ended on an unexpected error: say so to the request that
        caused it (when it had an id) before the connection closes."""
        failed = exc.split(MessageFailed)[0] if isinstance(exc, ExceptionGroup) else exc
        while isinstance(failed, ExceptionGroup):
            failed = failed.exceptions[0]
        if not isinstance(failed, MessageFailed) or failed.msg_id is None:
            return
        sock = self.stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
        if sock is not None:
            with contextlib.suppress(OSError):  # best effort: the peer may be gone or full
                sock.send(encode(error_response(failed.msg_id, INTERNAL_ERROR,
                                                "internal error handling this request; the "
                                                "connection is closed (see the daemon log)")))

    async def _run(self) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._pump, tg)
            await self._read(tg)
            # Reader done. A peer that only shut its writing side still reads: answer what it
            # asked for first. A peer that is gone entirely gets its calls cancelled (finally).
            if self.session is not None and self._pipes_scope is None and _still_reading(
                    self.stream.extra(anyio.abc.SocketAttribute.raw_socket, None)):
                await self.session.drain(HALF_CLOSE_DRAIN)
            self.outbox.close()
            if self._pipes_scope is not None:  # the bridge is gone: so is its session
                self._pipes_scope.cancel()

    async def _pump(self, tg: anyio.abc.TaskGroup) -> None:
        try:
            await self.outbox.pump(self.stream, _socket_sender(self.stream))
        except (OutboxOverflow, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            log.info("control connection dropped: %s", exc)
            tg.cancel_scope.cancel()

    def _feed(self, splitter: LineSplitter, chunk: bytes, tg: anyio.abc.TaskGroup) -> None:
        session = self.session
        for line in splitter.feed(chunk):
            if session is None:
                session = self._control_line(line, tg)
            else:
                session.on_line(line)

    async def _read(self, tg: anyio.abc.TaskGroup) -> None:
        splitter = LineSplitter(self.max_message)
        sock = self.stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
        if sock is not None and sock.gettimeout() == 0.0 and _on_asyncio():
            await self._read_with_callback(sock, splitter, tg)
            return
        try:
            while True:
                self._feed(splitter, await self.stream.receive(READ_CHUNK), tg)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass

    async def _read_with_callback(self, sock: socket.socket, splitter: LineSplitter,
                                  tg: anyio.abc.TaskGroup) -> None:
        """Read from a callback the loop calls whenever the socket is readable.

        anyio's `receive` registers and unregisters the socket with epoll around every wait, tries a
        `recv` that fails with EAGAIN first, and costs a checkpoint and a task wake-up per chunk;
        one reader registered for the connection's life does a single `recv` per readiness and
        routes the lines right there (routing never awaits). Measured in BENCHMARKS.md.
        """
        def read() -> bytes:
            if self.session is None:  # `mcpctl connect` may pass its stdin/stdout with attach
                chunk, fds, _flags, _addr = socket.recv_fds(sock, READ_CHUNK, 2)
                if fds:
                    self._passed_fds(fds)
                return chunk
            return sock.recv(READ_CHUNK)

        await _read_fd(sock.fileno(), lambda chunk: self._feed(splitter, chunk, tg), read)

    def _control_line(self, line: bytes | Oversized, tg: anyio.abc.TaskGroup) -> Session | None:
        if isinstance(line, Oversized):
            self.outbox.push(encode(too_large(line.size, self.max_message)))
            return None
        try:
            msg = loads(line)
        except TooDeep as exc:
            self.outbox.push(encode(too_deep(exc)))
            return None
        except ValueError as exc:
            self.outbox.push(encode(parse_error(str(exc))))
            return None
        if not isinstance(msg, dict) or not isinstance(msg.get("method"), str):
            # The id is the sender's way to match the error, so it is echoed whenever it is one.
            mid = msg.get("id") if isinstance(msg, dict) and is_valid_id(msg.get("id")) else None
            self.outbox.push(encode(error_response(mid, INVALID_REQUEST,
                                                   "Invalid Request: method must be a string")))
            return None
        if "id" in msg and not is_valid_id(msg["id"]):
            self.outbox.push(encode(error_response(
                None, INVALID_REQUEST, "Invalid Request: id must be a string or an integer")))
            return None
        params = msg.get("params")
        if params is not None and not isinstance(params, dict):
            self._error(msg, INVALID_PARAMS, "Invalid params: must be an object")
            return None
        if msg["method"] == "supervisor/attach":
            self._attach(msg, tg)
            return self.session
        tg.start_soon(self._control_request, msg)
        return None

    def _reply(self, msg: Message, result: Any) -> None:
        if "id" in msg:
            self.outbox.push(encode({"jsonrpc": "2.0", "id": msg["id"], "result": result}))

    def _error(self, msg: Message, code: int, message: str, data: Any = None) -> None:
        if "id" in msg:
            self.outbox.push(encode(error_response(msg["id"], code, message, data)))

    def _attach(self, msg: Message, tg: anyio.abc.TaskGroup) -> None:
        params = msg.get("params") or {}
        server: Target
        try:
            all_servers = params.get("all") is True
            name = None if all_servers else _text(params, "server", required=True)
            client = _text(params, "client")
            server = self.daemon.aggregate if name is None else self.daemon.fleet.get(name)
        except SupervisorError as exc:
            self.outbox.push(encode({"jsonrpc": "2.0", "id": msg.get("id"),
                                     "error": to_jsonrpc_error(exc)}))
            return
        client = params.get("client")
        identity = str(client) if client else self._peer_identity()
        try:
            if not params.get("all"):
                check_server(self.daemon.aggregate, identity, server.name)
        except SupervisorError as exc:
            self.outbox.push(encode({"jsonrpc": "2.0", "id": msg.get("id"),
                                     "error": to_jsonrpc_error(exc)}))
            return
        server = view_target(self.daemon.aggregate, server, identity)
        pipes = self._fds if params.get("pipes") and len(self._fds) == 2 else None
        self._fds = []
        outbox = Outbox(connection_buffer(self.max_message)) if pipes is not None else self.outbox
        self.session = Session(server, outbox, max_message=self.max_message, task_group=tg,
                               client=identity, limits=self.daemon.fleet.ctx.client_limits,
                               clock=self.daemon.fleet.ctx.clock)
        # Whose per-client instance it uses: its identity (a local client is its user, uid:N, the
        # same identity rate limits use); only a peer without credentials is just a connection.
        self.session.owner = identity or f"anonymous:connection-{os.getpid()}-{next(_CONNECTIONS)}"
        if pipes is None:
            self._reply(msg, {"server": server.name, "state": str(server.state)})
            return
        self._reply(msg, {"server": server.name, "state": str(server.state), "pipes": True})
        tg.start_soon(self._serve_pipes, self.session, pipes[0], pipes[1])

    def _passed_fds(self, fds: list[int]) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = fds

    async def _serve_pipes(self, session: Session, rfd: int, wfd: int) -> None:
        """Serve the session on the client's own pipes, which `mcpctl connect` handed over.

        The bridge then only waits: the client's requests come straight from its pipe and answers
        go straight back, two process hops (and their wake-ups) fewer per call. The control
        connection stays open as the bridge's lifeline: when it closes, the session ends, and when
        the client closes its end, we say so on it (`supervisor/detached`) and close it."""
        reason = "the client stopped reading its stdout"
        try:
            with anyio.CancelScope() as self._pipes_scope:
                os.set_blocking(rfd, False)
                os.set_blocking(wfd, False)
                async with anyio.create_task_group() as inner:
                    inner.start_soon(self._pump_pipe, session.outbox, wfd, inner)
                    await _read_fd(rfd, session.feed)
                    reason = "eof"  # the client closed our stdin: a normal end
                    if _still_reading(wfd):
                        await session.drain(HALF_CLOSE_DRAIN)
                    session.outbox.close()
        except OSError as exc:
            reason = f"client pipe: {exc}"
        finally:
            for fd in (rfd, wfd):
                with contextlib.suppress(OSError):
                    os.close(fd)
            session.close()
        self.outbox.push(encode({"jsonrpc": "2.0", "method": "supervisor/detached",
                                 "params": {"reason": reason}}))
        self.outbox.close()

    async def _pump_pipe(self, outbox: Outbox, fd: int, inner: anyio.abc.TaskGroup) -> None:
        try:
            await outbox.pump(_FdSendStream(fd), lambda data: os.write(fd, data))
        except (OutboxOverflow, OSError) as exc:
            log.info("connect session dropped: %s", exc)
            inner.cancel_scope.cancel()

    def subscribe(self, forward: Callable[[dict[str, Any]], None]) -> None:
        """`supervisor/events`: this connection gets the daemon's events through `forward` (a
        second subscription replaces the first)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._unsubscribe = self.daemon.bus.subscribe(forward)

    def _peer_identity(self) -> str | None:
        """`uid:N` of the process on the other end, the identity of an unnamed local client."""
        try:
            raw = self.stream.extra(anyio.abc.SocketAttribute.raw_socket)
            creds = raw.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        except (OSError, anyio.TypedAttributeLookupError):
            return None
        _pid, uid, _gid = struct.unpack("3i", creds)
        return f"uid:{uid}"

    async def _control_request(self, msg: Message) -> None:
        method = msg["method"]
        params = msg.get("params") or {}
        handler = HANDLERS.get(method)
        if handler is None:
            self._error(msg, METHOD_NOT_FOUND, f"Method not found: {method}")
            return
        # One request is one domain: a bug in a handler answers -32603 and ends only this request.
        with domain("control request", method, on_failure=lambda exc: self._error(
                msg, INTERNAL_ERROR, f"internal error: {type(exc).__name__}: {exc}")):
            try:
                result = await handler(self, params)
            except SupervisorError as exc:
                err = to_jsonrpc_error(exc)
                self._error(msg, err["code"], err["message"], err.get("data"))
            else:
                self._reply(msg, result)
