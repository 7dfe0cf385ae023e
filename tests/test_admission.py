"""Admission control end to end: rate limits per server and per client identity."""

from __future__ import annotations

from .conftest import ECHO, MakeDaemon, server_toml
from .mcp_raw import RawSession


def test_server_rate_limit_refuses_at_once_with_retry_after(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("limited", ECHO, rate_limit="3/min"))
    daemon.wait_state("limited", "ready")
    with RawSession(daemon.socket, "limited") as session:
        session.initialize()
        answers = [session.call_tool("echo", {"text": str(i)}, i) for i in range(4)]
    assert all("result" in a for a in answers[:3])
    refused = answers[3]["error"]
    assert refused["code"] == -32007
    assert "rate limit exceeded: server 'limited' is over 3/min" in refused["message"]
    assert 0 < refused["data"]["retry_after_ms"] <= 20_000
    assert daemon.status("limited")["rate_limited_total"] == 1


def test_client_rate_limits_are_per_identity(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("shared")
                         + '[clients.alice]\nrate_limit = "2/min"\n[clients.bob]\nrate_limit = "5/min"\n')
    daemon.wait_state("shared", "ready")
    with RawSession(daemon.socket, "shared", client="alice") as alice, \
            RawSession(daemon.socket, "shared", client="bob") as bob, \
            RawSession(daemon.socket, "shared") as anonymous:
        for session in (alice, bob, anonymous):
            session.initialize()
        alice_answers = [alice.call_tool("echo", {"text": "a"}, i) for i in range(3)]
        bob_answers = [bob.call_tool("echo", {"text": "b"}, i) for i in range(3)]
        anonymous_answers = [anonymous.call_tool("echo", {"text": "c"}, i) for i in range(10)]
    assert ["result" in a for a in alice_answers] == [True, True, False]
    assert alice_answers[2]["error"]["code"] == -32007
    assert "client 'alice'" in alice_answers[2]["error"]["message"]
    assert all("result" in a for a in bob_answers)  # alice's limit is not bob's
    assert all("result" in a for a in anonymous_answers)  # uid:N has no [clients] entry
