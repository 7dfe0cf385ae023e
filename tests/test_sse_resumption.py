"""Resumable SSE streams on legacy HTTP sessions: event ids, a replay buffer per stream, and
`GET` + `Last-Event-ID` after a dropped connection (2025-11-25 Streamable HTTP, "Resumability and
Redelivery"). Raw httpx against a real daemon and the conformance child."""

from __future__ import annotations

import socket

import anyio
import httpx
import orjson
import pytest

from .conftest import SERVERS, MakeDaemon, server_toml

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


async def session(http: httpx.AsyncClient, url: str) -> dict[str, str]:
    reply = await http.post(url, headers={"Accept": "application/json, text/event-stream"}, json={
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": LEGACY, "capabilities": {},
                   "clientInfo": {"name": "raw", "version": "1"}}})
    headers = {"Mcp-Session-Id": reply.headers["mcp-session-id"], "MCP-Protocol-Version": LEGACY,
               "Accept": "application/json, text/event-stream"}
    await http.post(url, headers=headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    return headers


async def test_a_dropped_call_stream_resumes_with_last_event_id(make_daemon: MakeDaemon) -> None:
    """A POST answer stream starts with a priming event (id, retry, no data); the client reads the
    first progress event and drops the connection; the call is not cancelled, and a GET with the
    last id it saw gets the call's answer (only what came after that id, nothing of other streams)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    daemon = make_daemon(f'[http]\nlisten = "127.0.0.1:{port}"\n' + server_toml("conf", CHILD))
    daemon.wait_state("conf", "ready")
    url = f"http://127.0.0.1:{port}/mcp/conf"
    with anyio.fail_after(30):
        async with httpx.AsyncClient(timeout=20) as http:
            headers = await session(http, url)
            seen: list[dict[str, str]] = []
            call = {"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                    "params": {"name": "test_reconnection", "arguments": {"seconds": 0.6},
                               "_meta": {"progressToken": "p1"}}}
            async with http.stream("POST", url, headers=headers, json=call) as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                buffer = ""
                async for chunk in stream.aiter_text():
                    buffer += chunk
                    seen = events(buffer)
                    if any("progress" in e.get("data", "") for e in seen):
                        break  # drop the connection mid-call
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
            assert [orjson.loads(e["data"])["id"] for e in events(twice.text) if e.get("data")] == [5]


async def test_the_session_get_stream_resumes_after_the_last_event_id(make_daemon: MakeDaemon) -> None:
    """Notifications sent on the session's GET stream are numbered; reconnecting with the id of
    the first one replays the later ones only."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    daemon = make_daemon(f'[http]\nlisten = "127.0.0.1:{port}"\n' + server_toml("conf", CHILD))
    daemon.wait_state("conf", "ready")
    url = f"http://127.0.0.1:{port}/mcp/conf"
    with anyio.fail_after(30):
        async with httpx.AsyncClient(timeout=20) as http:
            headers = await session(http, url)
            get_headers = {**headers, "Accept": "text/event-stream"}
            seen: list[dict[str, str]] = []
            async with http.stream("GET", url, headers=get_headers) as stream:
                for n in range(2):  # two list_changed notifications while the stream is open
                    await http.post(url, headers=headers, json={
                        "jsonrpc": "2.0", "id": 10 + n, "method": "tools/call",
                        "params": {"name": "test_trigger_tool_change", "arguments": {}}})
                buffer = ""
                async for chunk in stream.aiter_text():
                    buffer += chunk
                    seen = [e for e in events(buffer) if e.get("data")]
                    if len(seen) >= 2:
                        break
            assert [orjson.loads(e["data"])["method"] for e in seen[:2]] == [
                "notifications/tools/list_changed"] * 2
            async with http.stream("GET", url, headers={**get_headers, "Last-Event-ID": seen[0]["id"]}
                                   ) as again:
                buffer = ""
                async for chunk in again.aiter_text():
                    buffer += chunk
                    replayed = [e for e in events(buffer) if e.get("data")]
                    if replayed:
                        break
            assert [e["id"] for e in replayed] == [seen[1]["id"]]


async def test_a_resuming_get_takes_over_a_stream_whose_loss_the_daemon_has_not_seen(
        make_daemon: MakeDaemon) -> None:
    """Regression (flaky resumption test, session 3): a client that lost its GET stream
    reconnects with Last-Event-ID before the daemon has noticed the old connection is gone. The
    resumption takes the stream over (replay, then live) instead of a 409; here the first stream
    is still open on the client side, so the takeover is what must end it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    daemon = make_daemon(f'[http]\nlisten = "127.0.0.1:{port}"\n' + server_toml("conf", CHILD))
    daemon.wait_state("conf", "ready")
    url = f"http://127.0.0.1:{port}/mcp/conf"
    with anyio.fail_after(30):
        async with httpx.AsyncClient(timeout=20) as http, httpx.AsyncClient(timeout=20) as other:
            headers = await session(http, url)
            get_headers = {**headers, "Accept": "text/event-stream"}
            async with http.stream("GET", url, headers=get_headers) as first:
                for n in range(2):
                    await http.post(url, headers=headers, json={
                        "jsonrpc": "2.0", "id": 10 + n, "method": "tools/call",
                        "params": {"name": "test_trigger_tool_change", "arguments": {}}})
                buffer, seen = "", []
                chunks = first.aiter_text()
                async for chunk in chunks:
                    buffer += chunk
                    seen = [e for e in events(buffer) if e.get("data")]
                    if len(seen) >= 2:
                        break
                # The first stream stays open here while a second connection resumes it.
                async with other.stream("GET", url, headers={**get_headers, "Last-Event-ID": seen[0]["id"]}
                                        ) as again:
                    assert again.status_code == 200
                    buffer = ""
                    replayed: list[dict[str, str]] = []
                    async for chunk in again.aiter_text():
                        buffer += chunk
                        replayed = [e for e in events(buffer) if e.get("data")]
                        if replayed:
                            break
                    assert [e["id"] for e in replayed] == [seen[1]["id"]]
                rest = "".join([chunk async for chunk in chunks])  # the old stream was ended
                assert not [e for e in events(rest) if e.get("data")]
