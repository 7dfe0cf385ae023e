"""Legacy HTTP sessions that any node resumes (`[cluster] secret`): real daemons, real HTTP.

Two daemons with the same secret stand for two nodes behind a balancer; a third has another
secret. A session opened on one is used on the other as if nothing happened; a forged id, one of
another cluster, one used with another client's token, all answer 404 (the client re-initializes).
"""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from .conftest import ECHO, MakeDaemon, free_port, server_toml
from .sdk import text_of
from .test_http import ACCEPT, http_toml, legacy_session

pytestmark = pytest.mark.anyio

SECRET = "a-cluster-secret-of-32-characters"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def node(make_daemon: MakeDaemon, name: str, secret: str = SECRET, **http: str) -> str:
    port = free_port()
    cluster = f'[cluster]\nnode = "{name}"\nsecret = "{secret}"\n'
    daemon = make_daemon(cluster + http_toml(port, **http) + server_toml("echo", ECHO), subdir=name)
    daemon.wait_state("echo", "ready")
    return f"http://127.0.0.1:{port}/mcp/echo"


def echo(text: str, msg_id: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": text}}}


async def test_a_session_opened_on_one_node_is_resumed_by_another(make_daemon: MakeDaemon) -> None:
    a, b = node(make_daemon, "a"), node(make_daemon, "b")
    async with httpx.AsyncClient(timeout=30) as http:
        headers = await legacy_session(http, a)
        assert headers["mcp-session-id"].startswith("v1.")
        reply = await http.post(b, headers=headers, json=echo("on b"))
        assert reply.status_code == 200, reply.text
        assert reply.json()["result"]["content"][0]["text"] == "on b"
        # and back: a still knows it, b now does too
        again = await http.post(a, headers=headers, json=echo("on a", 2))
        assert again.json()["result"]["content"][0]["text"] == "on a"
        # DELETE on b ends it there; a's own copy is a's to forget
        assert (await http.delete(b, headers=headers)).status_code == 200


async def test_forged_and_foreign_ids_are_404(make_daemon: MakeDaemon) -> None:
    a, b = node(make_daemon, "a"), node(make_daemon, "b", secret="another-secret-entirely-1234")
    async with httpx.AsyncClient(timeout=30) as http:
        headers = await legacy_session(http, a)
        foreign = await http.post(b, headers=headers, json=echo("x"))
        assert foreign.status_code == 404, foreign.text
        sid = headers["mcp-session-id"]
        forged = {**headers, "mcp-session-id": sid[:-3] + ("AAA" if not sid.endswith("AAA") else "BBB")}
        assert (await http.post(a, headers=forged, json=echo("x"))).status_code == 404
        other_path = await http.post(a.rsplit("/", 1)[0], headers=headers, json=echo("x"))
        assert other_path.status_code == 404


async def test_a_resumed_session_belongs_to_the_token_that_opened_it(make_daemon: MakeDaemon) -> None:
    """Alice opens a session on b; c (same secret, same clients) resumes it for alice and for
    nobody else; a, which needs no token, does not resume a session someone opened with one."""
    tokens = '[clients.alice]\ntoken = "alice-token-123456"\n[clients.bob]\ntoken = "bob-token-1234567"\n'
    a = node(make_daemon, "a")
    urls = []
    for name in ("b", "c"):
        port = free_port()
        daemon = make_daemon(f'[cluster]\nnode = "{name}"\nsecret = "{SECRET}"\n' + http_toml(port)
                             + tokens + server_toml("echo", ECHO), subdir=name)
        daemon.wait_state("echo", "ready")
        urls.append(f"http://127.0.0.1:{port}/mcp/echo")
    b, c = urls
    alice = {"accept": ACCEPT, "content-type": "application/json",
             "authorization": "Bearer alice-token-123456"}
    async with httpx.AsyncClient(timeout=30) as http:
        opened = await http.post(b, headers=alice, json={
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "alice", "version": "1"}}})
        session = {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
        as_bob = {**alice, **session, "authorization": "Bearer bob-token-1234567"}
        assert (await http.post(c, headers=as_bob, json=echo("theirs"))).status_code == 404
        anonymous = {k: v for k, v in {**alice, **session}.items() if k != "authorization"}
        assert (await http.post(a, headers=anonymous, json=echo("x"))).status_code == 404
        mine = await http.post(c, headers={**alice, **session}, json=echo("mine"))
        assert mine.status_code == 200 and mine.json()["result"]["content"][0]["text"] == "mine"


async def test_the_official_sdk_keeps_its_session_across_nodes(make_daemon: MakeDaemon) -> None:
    """The SDK in legacy mode opens a session on a; every request of it is then sent to b (as a
    balancer would after a dies): the SDK never notices."""
    a, b = node(make_daemon, "a"), node(make_daemon, "b")
    seen: list[str] = []

    # The SDK's own HTTP client library (httpx2), as streamable_http_client takes it.
    async def to_b(request: httpx2.Request) -> None:
        if request.headers.get("mcp-session-id"):
            request.url = httpx2.URL(b)
            seen.append(str(request.url))

    with anyio.fail_after(60):
        async with httpx2.AsyncClient(timeout=30, event_hooks={"request": [to_b]}) as http, \
                streamable_http_client(a, http_client=http) as (read, write), \
                ClientSession(read, write) as session:
            await session.initialize()
            result = await session.call_tool("echo", {"text": "still the same session"})
            assert text_of(result) == "still the same session"
    assert seen, "no request was sent to b"
