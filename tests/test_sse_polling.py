"""SSE polling (2025-11-25 Streamable HTTP, SEP-1699): with `[http] sse_poll_after`, the POST
connection of a slow call of a 2025-11-25 session is let go after a priming event with `retry`,
and the client collects the answer with GET + Last-Event-ID; on the per-server door and the
aggregate. Raw httpx against a real daemon and the conformance child."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import orjson
import pytest

from .conftest import SERVERS, free_port, server_toml
from .test_sse_resumption import events, session

pytestmark = pytest.mark.anyio

CHILD = SERVERS / "conformance_server.py"
DOORS = [pytest.param("/mcp/conf", id="per-server"), pytest.param("/mcp", id="aggregate")]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def start(make_daemon: Any, door: str, poll: str = "100ms") -> str:
    port = free_port()
    daemon = make_daemon(f'[http]\nlisten = "127.0.0.1:{port}"\nsse_poll_after = "{poll}"\n'
                         '[aggregate]\nprefix = "on-collision"\n' + server_toml("conf", CHILD))
    daemon.wait_state("conf", "ready")
    return f"http://127.0.0.1:{port}{door}"


def slow_call(seconds: float, token: str | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"name": "test_reconnection", "arguments": {"seconds": seconds}}
    if token is not None:
        params["_meta"] = {"progressToken": token}
    return {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": params}


@pytest.mark.parametrize("door", DOORS)
async def test_a_slow_calls_post_stream_is_let_go_and_the_answer_collected_by_get(
        make_daemon: Any, door: str) -> None:
    """The POST answers SSE: the priming event (id, retry, empty data), then the stream ends
    without the answer; a GET with that id carries the call's progress and answer."""
    url = start(make_daemon, door)
    with anyio.fail_after(30):
        async with httpx.AsyncClient(timeout=20) as http:
            headers = await session(http, url)
            posted = await http.post(url, headers=headers, json=slow_call(1.5))
            assert posted.status_code == 200
            assert posted.headers["content-type"].startswith("text/event-stream")
            seen = events(posted.text)
            assert seen[0]["id"] and seen[0]["retry"] and seen[0]["data"] == "", seen
            assert not [e for e in seen if e.get("data")], "the answer came on the POST stream"
            assert seen[-1].get("retry"), "a retry hint right before letting the connection go"
            resumed = await http.get(url, headers={**headers, "Last-Event-ID": seen[0]["id"],
                                                   "Accept": "text/event-stream"})
            answers = [orjson.loads(e["data"]) for e in events(resumed.text) if e.get("data")]
            assert [a.get("id") for a in answers] == [9]
            assert answers[0]["result"]["content"][0]["text"] == "Reconnection test completed"


async def test_events_before_the_deadline_stream_and_the_rest_is_resumed(make_daemon: Any) -> None:
    """A call that streams (progress) before the deadline gets SSE at once; at the deadline the
    stream is let go after what was sent, and the GET replays only what came later."""
    url = start(make_daemon, "/mcp/conf", poll="300ms")
    with anyio.fail_after(30):
        async with httpx.AsyncClient(timeout=20) as http:
            headers = await session(http, url)
            posted = await http.post(url, headers=headers, json=slow_call(1.5, token="p"))
            seen = events(posted.text)
            kinds = [orjson.loads(e["data"]).get("method") for e in seen if e.get("data")]
            assert kinds == ["notifications/progress"], seen
            last = next(e["id"] for e in reversed(seen) if e.get("id"))
            resumed = await http.get(url, headers={**headers, "Last-Event-ID": last,
                                                   "Accept": "text/event-stream"})
            answers = [orjson.loads(e["data"]) for e in events(resumed.text) if e.get("data")]
            assert [a.get("id") for a in answers] == [9], "only the answer: progress was already seen"


async def test_sessions_older_than_2025_11_25_are_not_polled(make_daemon: Any) -> None:
    """A 2025-06-18 client has no reconnection to a stream the server closes: its POST stays
    open until the answer (JSON here, nothing streamed)."""
    url = start(make_daemon, "/mcp/conf")
    with anyio.fail_after(30):
        async with httpx.AsyncClient(timeout=20) as http:
            opened = await http.post(url, headers={"Accept": "application/json, text/event-stream"}, json={
                "jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                           "clientInfo": {"name": "raw", "version": "1"}}})
            headers = {"Mcp-Session-Id": opened.headers["mcp-session-id"],
                       "MCP-Protocol-Version": "2025-06-18",
                       "Accept": "application/json, text/event-stream"}
            posted = await http.post(url, headers=headers, json=slow_call(0.5))
            assert posted.headers["content-type"].startswith("application/json")
            assert posted.json()["result"]["content"][0]["text"] == "Reconnection test completed"


async def test_a_json_only_client_whose_call_streams_progress_does_not_stall_the_daemon(
        make_daemon: Any) -> None:
    """Regression: a legacy client that accepts only application/json and asks for progress. The
    door kept the progress event it could not send, so its wait returned at once and the door spun
    without yielding: the daemon stopped answering anyone. Now the event is dropped (a JSON answer
    cannot carry it) and the call is answered."""
    url = start(make_daemon, "/mcp/conf", poll="0s")
    with anyio.fail_after(30):
        async with httpx.AsyncClient(timeout=10) as http:
            headers = await session(http, url)
            headers["Accept"] = "application/json"
            posted = await http.post(url, headers=headers, json=slow_call(0.5, token="p"))
            assert posted.json()["result"]["content"][0]["text"] == "Reconnection test completed"
            health = await http.get(url.rsplit("/mcp", 1)[0] + "/healthz")
            assert health.status_code == 200
