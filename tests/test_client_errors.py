"""The `mcpctl` verbs (supervisor.client.control) and the dashboard (tui.client) report the daemon's
failures with the same two exceptions, over a real Unix socket."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from anyio.abc import SocketStream

from supervisor.client.control import call
from supervisor.client.errors import DaemonUnavailable, RemoteError
from supervisor.errors import INTERNAL_ERROR, UNKNOWN_SERVER
from tui.client import SocketDaemonClient

from .raw_socket import raw_server

pytestmark = pytest.mark.anyio


def answering(sock: Path, error: Any) -> AbstractAsyncContextManager[None]:
    """A control socket that answers every request with `error` as its JSON-RPC error member."""
    async def handle(stream: SocketStream) -> None:
        request = orjson.loads(await stream.receive())
        await stream.send(orjson.dumps({"jsonrpc": "2.0", "id": request["id"], "error": error}) + b"\n")

    return raw_server(sock, handle)


async def both(sock: Path) -> list[BaseException]:
    """What each client raises for one `supervisor/status` request."""
    caught: list[BaseException] = []
    try:
        await anyio.to_thread.run_sync(call, sock, "supervisor/status", None, 5.0)
    except Exception as exc:
        caught.append(exc)
    try:
        await SocketDaemonClient(sock).status()
    except Exception as exc:
        caught.append(exc)
    return caught


async def test_no_daemon_is_daemon_unavailable_for_verbs_and_dashboard(sock: Path) -> None:
    """Nothing listening: both clients raise DaemonUnavailable, with the same short reason."""
    with anyio.fail_after(10):
        caught = await both(sock)
    assert [type(exc) for exc in caught] == [DaemonUnavailable, DaemonUnavailable]
    assert {exc.reason for exc in caught if isinstance(exc, DaemonUnavailable)} == {"no socket"}
    assert "is not running" in str(caught[0])  # the verbs keep their own sentence


async def test_an_error_answer_is_remote_error_for_verbs_and_dashboard(sock: Path) -> None:
    """An error answer: both clients raise RemoteError with its code, message and data."""
    with anyio.fail_after(10):
        async with answering(sock, {"code": UNKNOWN_SERVER, "message": "no server named 'x'", "data": [1]}):
            caught = await both(sock)
    assert [type(exc) for exc in caught] == [RemoteError, RemoteError]
    assert {(exc.code, exc.message, str(exc.data)) for exc in caught if isinstance(exc, RemoteError)} == {
        (UNKNOWN_SERVER, "no server named 'x'", "[1]")}


@pytest.mark.parametrize("error", [None, "boom", [], {"code": "5"}, {"code": True, "message": 7}])
async def test_a_misshapen_error_answer_is_still_a_remote_error(sock: Path, error: Any) -> None:
    """An error member of the wrong shape (an older or buggy daemon) is a RemoteError with the
    internal-error code, never a TypeError or ValueError in the caller (the verbs used to call
    int() on the code)."""
    with anyio.fail_after(10):
        async with answering(sock, error):
            caught = await both(sock)
    assert [type(exc) for exc in caught] == [RemoteError, RemoteError]
    assert all(isinstance(exc, RemoteError) and exc.code == INTERNAL_ERROR for exc in caught)
