"""The HTTP door's trust checks (issue 16), as real requests to a real daemon: Host names (DNS
rebinding), duplicated security headers, the bearer scheme's case, sessions bound to their token."""

from __future__ import annotations

import anyio
import httpx
import pytest

from supervisor.config import HttpSettings
from supervisor.doors.http.policy import allowed_hosts, bearer_token, host_name, wildcard_warning

from .conftest import MakeDaemon, free_port, server_toml
from .test_http import ACCEPT, Door, anyio_backend, modern_call, modern_headers

__all__ = ["anyio_backend"]  # the fixture, re-exported for this module's tests

pytestmark = pytest.mark.anyio

CLIENTS = ('[clients.alice]\ntoken = "alice-token-0123456789"\n'
           '[clients.bob]\ntoken = "bob-token-0123456789"\n')
ALICE = {"authorization": "Bearer alice-token-0123456789"}
BOB = {"authorization": "Bearer bob-token-0123456789"}


async def _door(make_daemon: MakeDaemon, extra_http: str = "", servers: str = "") -> Door:
    """A door whose `[http]` table gets `extra_http` lines (start_door only takes strings)."""
    port = free_port()
    daemon = make_daemon(f'[http]\nlisten = "127.0.0.1:{port}"\n{extra_http}' + servers
                         + server_toml("echo"))
    await anyio.to_thread.run_sync(lambda: daemon.wait_state("echo", "ready", timeout=60))
    return Door(daemon, port)


def test_host_names_parse_and_the_allowed_set_holds_listen_loopback_and_config() -> None:
    assert host_name(b"Example.COM:8765") == "example.com"
    assert host_name(b"[::1]:8765") == "::1"
    assert host_name(b"localhost") == "localhost"
    assert host_name(b"a:b") is None and host_name(b"[::1]x") is None and host_name(b":80") is None
    settings = HttpSettings(listen="127.0.0.2:9000", allowed_hosts=("mcp.example.lan",))
    assert allowed_hosts(settings) == {"127.0.0.2", "localhost", "127.0.0.1", "::1", "mcp.example.lan"}
    # Listening on every address without allowed_hosts would answer remote clients 403: say so.
    assert "add the names clients use to http.allowed_hosts" in (
        wildcard_warning(HttpSettings(listen="0.0.0.0:9000", token="t")) or "")
    assert wildcard_warning(HttpSettings(listen="[::]:9000", token="t", allowed_hosts=("h",))) is None
    assert wildcard_warning(HttpSettings()) is None
    assert bearer_token(b"bearer abc") == b"abc" and bearer_token(b"BEARER  abc") == b"abc"
    assert bearer_token(b"Basic abc") is None and bearer_token(b"Bearer") is None


async def test_foreign_host_is_refused_on_every_path_healthz_and_metrics_included(
        make_daemon: MakeDaemon) -> None:
    """DNS rebinding: /metrics and /healthz skipped the Origin check and the Host was never read,
    so a page on a re-pointed name could read them. A foreign Host is 403 everywhere."""
    door = await _door(make_daemon, 'allowed_hosts = ["mcp.example.lan"]\n')
    async with httpx.AsyncClient(timeout=30) as http:
        for path in ("/healthz", "/metrics", "/mcp/echo", "/mcp", "/nowhere"):
            evil = await http.get(f"{door.base}{path}", headers={"host": f"evil.example:{door.port}"})
            assert evil.status_code == 403, (path, evil.text)
            assert "Host 'evil.example:" in evil.json()["error"]["message"]
        for host in (f"127.0.0.1:{door.port}", f"localhost:{door.port}", "mcp.example.lan"):
            assert (await http.get(f"{door.base}/healthz", headers={"host": host})).status_code == 200
        call = await http.post(door.url("echo"), headers={**modern_headers("tools/call", "echo"),
                                                           "host": "MCP.example.lan:80"},
                               json=modern_call(1, "echo", {"text": "x"}))
        assert call.status_code == 200, call.text


async def test_duplicate_authorization_or_origin_headers_are_400_never_last_wins(
        make_daemon: MakeDaemon) -> None:
    """Two Authorization (or Origin) headers used to be read last-wins; a proxy may read the first."""
    door = await _door(make_daemon, servers=CLIENTS)
    body = modern_call(1, "echo", {"text": "x"})
    base = list(modern_headers("tools/call", "echo").items())
    async with httpx.AsyncClient(timeout=30) as http:
        for twice in ([("authorization", "Bearer wrong"), ("authorization", ALICE["authorization"])],
                      [*ALICE.items(), ("origin", "https://evil.example"),
                       ("origin", "http://localhost:3000")]):
            reply = await http.post(door.url("echo"), headers=[*base, *twice], json=body)
            assert reply.status_code == 400, reply.text
            assert reply.json()["error"]["message"].startswith("Bad Request: more than one")
        ok = await http.post(door.url("echo"), headers=[*base, *ALICE.items()], json=body)
        assert ok.status_code == 200, ok.text


async def test_lowercase_bearer_scheme_is_accepted(make_daemon: MakeDaemon) -> None:
    """Auth schemes are case-insensitive (RFC 9110 §11.1); `bearer` used to be refused."""
    door = await _door(make_daemon, servers=CLIENTS)
    body = modern_call(1, "echo", {"text": "x"})
    async with httpx.AsyncClient(timeout=30) as http:
        for scheme in ("bearer", "BEARER", "Bearer"):
            reply = await http.post(door.url("echo"), json=body, headers={
                **modern_headers("tools/call", "echo"), "authorization": f"{scheme} alice-token-0123456789"})
            assert reply.status_code == 200, (scheme, reply.text)
        wrong = await http.post(door.url("echo"), json=body, headers={
            **modern_headers("tools/call", "echo"), "authorization": "Basic alice-token-0123456789"})
        assert wrong.status_code == 401


async def test_a_session_answers_only_to_the_token_that_opened_it(make_daemon: MakeDaemon) -> None:
    """A legacy session opened with one client token could be used and DELETEd with another; the
    spec says sessions SHOULD be bound to their user. To another token it is unknown: 404."""
    door = await _door(make_daemon, servers=CLIENTS)
    url = door.url("echo")
    async with httpx.AsyncClient(timeout=30) as http:
        opened = await http.post(url, headers={**ALICE, "accept": ACCEPT, "content-type": "application/json"},
                                 json={"jsonrpc": "2.0", "id": 0, "method": "initialize",
                                       "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                                                  "clientInfo": {"name": "raw", "version": "1"}}})
        assert opened.status_code == 200, opened.text
        session = {"accept": ACCEPT, "content-type": "application/json", "mcp-protocol-version": "2025-06-18",
                   "mcp-session-id": opened.headers["mcp-session-id"]}
        call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": "hi"}}}
        as_bob = await http.post(url, headers={**session, **BOB}, json=call)
        assert as_bob.status_code == 404 and "unknown or expired session" in as_bob.text
        assert (await http.delete(url, headers={**session, **BOB})).status_code == 404
        as_alice = await http.post(url, headers={**session, **ALICE}, json=call)
        assert as_alice.status_code == 200, as_alice.text
        assert (await http.delete(url, headers={**session, **ALICE})).status_code == 200
        gone = await http.post(url, headers={**session, **ALICE}, json=call)
        assert gone.status_code == 404
