"""Answering one call: a JSON body, or an SSE stream ending with the answer; and the long-lived
SSE streams (a legacy session's GET stream, a 2026-07-28 `subscriptions/listen`).

A response is JSON unless the call streams (progress, or a server-to-client request on a legacy
session) or the client accepts only SSE; then it becomes an SSE stream ending with the answer.

Hot path (`respond`): wait on one future, write one JSON body. No extra task and no timer per
request: the connection itself tells a waiting call that its client went away
(`fastio.watch_hang_up`), which cancels the call in the child with `notifications/cancelled`.
Only a call that streams (SSE), is slow to answer where the connection cannot say, or is big gets
a second task watching for that (`respond_slow`). Each SSE write has `SEND_TIMEOUT`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
import orjson

from supervisor.wire import fastio

from .replies import _JSON, Receive, Send, _send_json
from .sse import _SSE_HEADERS, PING_INTERVAL, _Stream, sse_event
from .sse_polling import RETRY_FRAME, poll_deadline

if TYPE_CHECKING:
    from supervisor.core.sessions import Target

    from .calls import Call, HttpSession

SEND_TIMEOUT = 30.0  # one SSE write to a client that stopped reading


async def answer(call: Call, target: Target, route: Callable[[], None] | None, json_ok: bool,
                 sse_ok: bool, statuses: dict[int, int] | None, receive: Receive, send: Send,
                 poll_after: float, settle: Callable[[], None]) -> None:
    """One call's frame, the same on each way in (a legacy session, a 2026-07-28 request, a fast
    call carried on as ASGI): route it (`route`; None when it is routed already), answer it
    (`respond`), give its slot back if anything ends that early (`give_back`), and run `settle`,
    the caller's own cleanup, however it ends."""
    try:
        if route is not None:
            route()
        await respond(call, target, json_ok, sse_ok, 200, statuses, receive, send, poll_after)
    except BaseException:
        give_back(target, call)
        raise
    finally:
        settle()


async def respond(call: Call, target: Target, json_ok: bool, sse_ok: bool, status: int,
                  statuses: dict[int, int] | None, receive: Receive, send: Send,
                  poll_after: float) -> None:
    """Wait for `call`'s answer and write it (`statuses`: JSON-RPC error code -> HTTP status);
    cancel the call in the child if its client leaves first. `poll_after`: `[http]
    sse_poll_after`."""
    # Waiting for the answer costs nothing per call but a future: the connection says when
    # its client hangs up. (Where it cannot, the watcher task of the slow path below does.)
    # SSE polling: a 2025-11-25 session's call still unanswered at `poll_at` is let go.
    poll_at = poll_deadline(poll_after, call.session) if sse_ok and call.session is not None else None
    if call.response is None and not call.events and fastio.watch_hang_up(receive, call.hang_up):
        try:
            if poll_at is None:
                await call.wait()
            else:
                with anyio.move_on_after(poll_at - time.monotonic()):
                    await call.wait()
        finally:
            fastio.unwatch_hang_up(receive)
        if call.gone and call.response is None:
            target.cancel(call, call.client_id, "the HTTP client closed the connection")
            return
    if call.response is not None and not call.events and json_ok:
        response = call.response
        if statuses is not None and "error" in response:
            status = statuses.get(response["error"].get("code"), status)
        body = orjson.dumps(response)
        if len(body) < 65536:
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", _JSON),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
    # Slow, streaming or big: watch for the client leaving while we wait and write.
    async with anyio.create_task_group() as tg:
        tg.start_soon(watch_disconnect, receive, tg.cancel_scope)
        await respond_slow(call, json_ok, sse_ok, status, statuses, send, poll_at)
        tg.cancel_scope.cancel()
    if call.replay is not None and not call.replay.finished:
        return  # a legacy session's stream: the client may resume it (Last-Event-ID)
    if call.response is None:
        call.gone = True
        target.cancel(call, call.client_id, "the HTTP client closed the response stream")


async def respond_slow(call: Call, json_ok: bool, sse_ok: bool, status: int,
                       statuses: dict[int, int] | None, send: Send,
                       poll_at: float | None = None) -> None:
    while call.response is None and not (call.events and sse_ok):
        if not sse_ok:
            # A JSON-only client: what the child streams before the answer cannot reach it
            # (and a kept event would make `wait` return at once, spinning the loop).
            call.events.clear()
        if poll_at is None:
            await call.wait()
            continue
        with anyio.move_on_after(poll_at - time.monotonic()):
            await call.wait()
        if time.monotonic() >= poll_at:
            break  # SSE polling: prime the stream, then let the connection go
    if call.response is not None and (not call.events or not sse_ok) and json_ok:
        response = call.response
        if statuses is not None and "error" in response:
            status = statuses.get(response["error"].get("code"), status)
        with anyio.move_on_after(SEND_TIMEOUT):
            await _send_json(send, status, response)
        return
    await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
    first: list[bytes] = []
    if call.session is not None:
        call.replay = call.session.resumable(call)
        first.append(call.replay.prime())
    await pump_call(call, send, first, poll_at if call.replay is not None else None)


async def pump_call(call: Call, send: Send, first: list[bytes], poll_at: float | None = None) -> None:
    """Write a call's events and then its answer to an open SSE response (numbered and kept
    for a reconnect when the call has a replay stream). At `poll_at`, an unfinished stream
    is closed with a `retry` hint for the client to resume it (`sse_polling.py`)."""
    replay = call.replay
    render = replay.frame if replay is not None else sse_event
    frames = first
    while True:
        frames += [render(m) for m in call.events]
        call.events.clear()
        final = call.response
        if final is not None:
            frames.append(render(final))
            if replay is not None:
                replay.finished = True
        if frames:
            with anyio.move_on_after(SEND_TIMEOUT) as timed:
                await send({"type": "http.response.body", "body": b"".join(frames),
                            "more_body": final is None})
            if timed.cancelled_caught:
                return
        if final is not None:
            return
        frames = []
        if poll_at is not None and time.monotonic() >= poll_at:
            with anyio.move_on_after(SEND_TIMEOUT):
                await send({"type": "http.response.body", "body": RETRY_FRAME, "more_body": False})
            return
        wait = PING_INTERVAL if poll_at is None else min(PING_INTERVAL, poll_at - time.monotonic())
        with anyio.move_on_after(wait) as quiet:
            await call.wait()
        if quiet.cancelled_caught and (poll_at is None or time.monotonic() < poll_at):
            await send({"type": "http.response.body", "body": b": ping\n\n", "more_body": True})


async def watch_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    """Cancel `scope` when the request's client disconnects."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
    scope.cancel()


async def send_answer(call: Call, extra: list[tuple[bytes, bytes]] | None, send: Send) -> None:
    assert call.response is not None
    await _send_json(send, 200, call.response, extra)


async def stream(frames_of: _Stream, receive: Receive, send: Send, first: list[bytes] | None = None,
                 extra: list[tuple[bytes, bytes]] | None = None,
                 session: HttpSession | None = None) -> None:
    """Write a long-lived stream's frames as SSE until its client leaves, the stream ends (an
    empty frame) or overflows, or a write is late; a ping when it has been quiet a while.
    `session`: the GET stream's session, which gets the scope that ends this stream cleanly
    (a resuming GET takes the stream over through it)."""
    await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS + (extra or [])})

    async def pump(scope: anyio.CancelScope) -> None:
        frames = first or []
        while True:
            frames += frames_of.take()
            if frames_of.overflowed or b"" in frames:
                break
            if frames:
                with anyio.move_on_after(SEND_TIMEOUT) as timed:
                    await send({"type": "http.response.body", "body": b"".join(frames),
                                "more_body": True})
                if timed.cancelled_caught:
                    break
            frames = []
            with anyio.move_on_after(PING_INTERVAL) as quiet:
                await frames_of.wake.wait()
            if quiet.cancelled_caught:
                frames = [b": ping\n\n"]
        scope.cancel()

    async with anyio.create_task_group() as tg:
        if session is not None:
            session.stream_scope = tg.cancel_scope
        tg.start_soon(pump, tg.cancel_scope)
        while (await receive())["type"] != "http.disconnect":
            pass
        tg.cancel_scope.cancel()
    with anyio.move_on_after(1):
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def give_back(target: Target, call: Call) -> None:
    """The request's domain ended before its answer (an exception in the door, a cancelled task):
    whatever it holds in the server (a queue place, an in-flight slot) is released now, as a
    cancellation (which the breaker does not count), not at the request's timeout."""
    if call.response is None:
        call.gone = True
        target.drop_sink(call)
