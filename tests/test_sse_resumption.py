"""Resumable SSE streams on legacy HTTP sessions: event ids, a replay buffer per stream, and
`GET` + `Last-Event-ID` after a dropped connection (2025-11-25 Streamable HTTP, "Resumability and
Redelivery"). Raw httpx against a real daemon and the conformance child."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, MutableMapping
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import anyio
import httpx
import orjson
import pytest

from supervisor.doors.http.legacy import resume_call
from supervisor.doors.http.sse_replay import ReplayStream

from .conftest import SERVERS, MakeDaemon, free_port, server_toml

if TYPE_CHECKING:
    from supervisor.doors.http.calls import HttpSession

pytestmark = pytest.mark.anyio

CHILD = SERVERS / "conformance_server.py"
LEGACY = "2025-11-25"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def events(text: str) -> list[dict[str, str]]:
    parsed = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            key, _, value = line.partition(":")
            if key in ("id", "data", "retry", "event"):
                fields[key] = value.strip()
        if fields:
            parsed.append(fields)
    return parsed


def data_events(parsed: list[dict[str, str]]) -> list[dict[str, str]]:
    return [e for e in parsed if e.get("data")]


async def read_events(chunks: AsyncIterator[str], enough: Callable[[list[dict[str, str]]], bool]
                      ) -> list[dict[str, str]]:
    """The events of a stream read until `enough` holds for them; the stream stays open (a
    caller may read on from `chunks`)."""
    buffer = ""
    async for chunk in chunks:
        buffer += chunk
        parsed = events(buffer)
        if enough(parsed):
            return parsed
    return events(buffer)


async def data_until(chunks: AsyncIterator[str], count: int) -> list[dict[str, str]]:
    """The events with data (notifications, answers) of a stream, once it has carried `count`."""
    return data_events(await read_events(chunks, lambda got: len(data_events(got)) >= count))


@pytest.fixture
def url(make_daemon: MakeDaemon) -> str:
    """`/mcp/conf` of a daemon serving the conformance child over HTTP, once the child is ready."""
    port = free_port()
    daemon = make_daemon(f'[http]\nlisten = "127.0.0.1:{port}"\n' + server_toml("conf", CHILD))
    daemon.wait_state("conf", "ready")
    return f"http://127.0.0.1:{port}/mcp/conf"


async def list_changes(http: httpx.AsyncClient, url: str, headers: dict[str, str],
                       chunks: AsyncIterator[str]) -> list[dict[str, str]]:
    """Two list_changed notifications caused while the session's GET stream (read as `chunks`)
    is open, as that stream carries them (numbered events)."""
    for n in range(2):
        await http.post(url, headers=headers, json={
            "jsonrpc": "2.0", "id": 10 + n, "method": "tools/call",
            "params": {"name": "test_trigger_tool_change", "arguments": {}}})
    return await data_until(chunks, 2)


async def session(http: httpx.AsyncClient, url: str) -> dict[str, str]:
    reply = await http.post(url, headers={"Accept": "application/json, text/event-stream"}, json={
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": LEGACY, "capabilities": {},
                   "clientInfo": {"name": "raw", "version": "1"}}})
    headers = {"Mcp-Session-Id": reply.headers["mcp-session-id"], "MCP-Protocol-Version": LEGACY,
               "Accept": "application/json, text/event-stream"}
    await http.post(url, headers=headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    return headers


async def test_a_dropped_call_stream_resumes_with_last_event_id(url: str) -> None:
    """A POST answer stream starts with a priming event (id, retry, no data); the client reads the
    first progress event and drops the connection; the call is not cancelled, and a GET with the
    last id it saw gets the call's answer (only what came after that id, nothing of other streams)."""
    with anyio.fail_after(30):
        async with httpx.AsyncClient(timeout=20) as http:
            headers = await session(http, url)
            call = {"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                    "params": {"name": "test_reconnection", "arguments": {"seconds": 0.6},
                               "_meta": {"progressToken": "p1"}}}
            async with http.stream("POST", url, headers=headers, json=call) as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                # Read to the first progress event, then drop the connection mid-call.
                seen = await read_events(stream.aiter_text(),
                                         lambda got: any("progress" in e.get("data", "") for e in got))
            assert seen[0]["data"] == "" and seen[0]["retry"] and seen[0]["id"]
            last = seen[-1]["id"]
            assert last != seen[0]["id"]
            resumed = await http.get(url, headers={**headers, "Last-Event-ID": last,
                                                   "Accept": "text/event-stream"})
            assert resumed.status_code == 200
            again = events(resumed.text)
            answers = [orjson.loads(e["data"]) for e in again if e.get("data")]
            assert [a.get("id") for a in answers] == [5], "only the answer, nothing replayed twice"
            assert answers[0]["result"]["content"][0]["text"] == "Reconnection test completed"
            assert all(int(e["id"].rsplit("_", 1)[1]) > int(last.rsplit("_", 1)[1]) for e in again)
            # Once collected, the same id replays the answer again (the stream is kept, bounded).
            twice = await http.get(url, headers={**headers, "Last-Event-ID": last,
                                                 "Accept": "text/event-stream"})
            assert twice.status_code == 200, twice.text
            assert [orjson.loads(e["data"])["id"] for e in events(twice.text) if e.get("data")] == [5]


async def test_the_session_get_stream_resumes_after_the_last_event_id(url: str) -> None:
    """Notifications sent on the session's GET stream are numbered; reconnecting with the id of
    the first one replays the later ones only."""
    with anyio.fail_after(30):
        async with httpx.AsyncClient(timeout=20) as http:
            headers = await session(http, url)
            get_headers = {**headers, "Accept": "text/event-stream"}
            async with http.stream("GET", url, headers=get_headers) as stream:
                seen = await list_changes(http, url, headers, stream.aiter_text())
            assert [orjson.loads(e["data"])["method"] for e in seen[:2]] == [
                "notifications/tools/list_changed"] * 2
            async with http.stream("GET", url, headers={**get_headers, "Last-Event-ID": seen[0]["id"]}
                                   ) as again:
                replayed = await data_until(again.aiter_text(), 1)
            assert [e["id"] for e in replayed] == [seen[1]["id"]]


async def test_a_resuming_get_takes_over_a_stream_whose_loss_the_daemon_has_not_seen(url: str) -> None:
    """Regression (flaky resumption test, session 3): a client that lost its GET stream
    reconnects with Last-Event-ID before the daemon has noticed the old connection is gone. The
    resumption takes the stream over (replay, then live) instead of a 409; here the first stream
    is still open on the client side, so the takeover is what must end it."""
    with anyio.fail_after(30):
        async with httpx.AsyncClient(timeout=20) as http, httpx.AsyncClient(timeout=20) as other:
            headers = await session(http, url)
            get_headers = {**headers, "Accept": "text/event-stream"}
            async with http.stream("GET", url, headers=get_headers) as first:
                chunks = first.aiter_text()
                seen = await list_changes(http, url, headers, chunks)
                # The first stream stays open here while a second connection resumes it.
                async with other.stream("GET", url, headers={**get_headers, "Last-Event-ID": seen[0]["id"]}
                                        ) as again:
                    assert again.status_code == 200
                    replayed = await data_until(again.aiter_text(), 1)
                    assert [e["id"] for e in replayed] == [seen[1]["id"]]
                rest = "".join([chunk async for chunk in chunks])  # the old stream was ended
                assert not data_events(events(rest))


class _Sent:
    """The ASGI messages a handler sent, in order."""

    def __init__(self) -> None:
        self.messages: list[MutableMapping[str, Any]] = []

    async def __call__(self, message: MutableMapping[str, Any]) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])


async def _never_disconnects() -> MutableMapping[str, Any]:
    await anyio.sleep_forever()
    raise AssertionError("unreachable")


def _answered_stream() -> tuple[ReplayStream, Any]:
    call = SimpleNamespace(client_id=5)
    stream = ReplayStream(call)
    stream.prime()
    stream.frame({"jsonrpc": "2.0", "id": 5, "result": {}})
    stream.finished = True
    return stream, SimpleNamespace(calls={5: call})


async def test_a_finished_stream_replays_while_the_reader_that_collected_it_is_still_unwinding() -> None:
    """Regression (CI, 2026-12-02): the client has the whole answer and asks for the same id
    again on its keep-alive connection before the first reader's handler has let go of the
    stream; that second GET got 409 and an empty body. A finished stream is a fixed replay."""
    stream, session = _answered_stream()
    stream.taken = True  # the first reader has not yet unwound
    sent = _Sent()
    with anyio.fail_after(5):
        await resume_call(cast("HttpSession", session), stream, 1, _never_disconnects, sent)
    assert sent.status == 200
    assert [orjson.loads(e["data"])["id"] for e in events(sent.body.decode()) if e.get("data")] == [5]
    assert session.calls == {}, "a collected call leaves the session's table"


async def test_a_running_call_stream_has_one_reader_at_a_time() -> None:
    stream, session = _answered_stream()
    stream.finished = False
    stream.taken = True
    sent = _Sent()
    with anyio.fail_after(5):
        await resume_call(cast("HttpSession", session), stream, 1, _never_disconnects, sent)
    assert sent.status == 409
    assert 5 in session.calls
