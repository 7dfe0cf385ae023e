"""A hand-written control-socket peer for the client tests: any behaviour, over a real Unix socket.

The dashboard's and the verbs' clients are tested against the daemon's wire format and against
peers that misbehave on purpose (hang up, stay mute, answer garbage or a malformed error); each
test passes the handler that is its failure mode.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from anyio.abc import SocketStream


@asynccontextmanager
async def raw_server(sock: Path, handle: Callable[[SocketStream], Awaitable[None]]) -> AsyncIterator[None]:
    """`handle` serves every connection to `sock` until the block ends."""
    async def owned(stream: SocketStream) -> None:
        async with stream:  # closed even when the handler is cancelled
            await handle(stream)

    listener = await anyio.create_unix_listener(sock)
    async with anyio.create_task_group() as tg, listener:
        tg.start_soon(listener.serve, owned)
        yield
        tg.cancel_scope.cancel()
