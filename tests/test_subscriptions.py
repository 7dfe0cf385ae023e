"""resources/subscribe shared by the clients of one child: updates go only to subscribers, and the
child hears an unsubscribe only when its last subscriber leaves. Real daemon, raw control-socket
sessions (what `mcpctl connect` speaks), the legacy-only conformance child."""

from __future__ import annotations

from typing import Any

from .conftest import SERVERS, MakeDaemon, server_toml
from .mcp_raw import RawSession

CHILD = SERVERS / "conformance_server.py"
WATCHED = "test://watched-resource"


def updates(session: RawSession) -> list[dict[str, Any]]:
    return [n for n in session.notifications if n["method"] == "notifications/resources/updated"]


def test_resource_updates_reach_only_subscribed_sessions(make_daemon: MakeDaemon) -> None:
    """Two sessions, one subscribed: the child's resources/updated reaches that one alone; after
    it unsubscribes while another still holds the URI, the child still sends updates (it was not
    told), and they reach only the one still subscribed."""
    daemon = make_daemon(server_toml("conf", CHILD))
    daemon.wait_state("conf", "ready")
    with RawSession(daemon.socket, "conf") as a, RawSession(daemon.socket, "conf") as b, \
            RawSession(daemon.socket, "conf") as c:
        for session in (a, b, c):
            session.initialize()
        assert a.request("resources/subscribe", {"uri": WATCHED}, 2)["result"] == {}
        assert c.request("resources/subscribe", {"uri": WATCHED}, 2)["result"] == {}
        b.call_tool("test_update_resource", {}, 3)
        # The session that made the call gets its answer after the notification (same child,
        # ordered pipe), so a, b and c have all been sent whatever they will get: a ping round trip
        # on each proves their queue is drained.
        for session in (a, b, c):
            assert session.request("ping", None, 4)["result"] == {}
        assert [u["params"]["uri"] for u in updates(a)] == [WATCHED]
        assert updates(b) == []
        assert [u["params"]["uri"] for u in updates(c)] == [WATCHED]
        assert a.request("resources/unsubscribe", {"uri": WATCHED}, 5)["result"] == {}
        b.call_tool("test_update_resource", {}, 6)
        for session in (a, b, c):
            assert session.request("ping", None, 7)["result"] == {}
        assert len(updates(a)) == 1, "a unsubscribed: no further update"
        assert updates(b) == []
        assert len(updates(c)) == 2, "c is still subscribed, so the child kept the subscription"
        assert c.request("resources/unsubscribe", {"uri": WATCHED}, 8)["result"] == {}
        text = b.call_tool("test_update_resource", {}, 9)["result"]["content"][0]["text"]
        assert text == f"updated {WATCHED}"
        for session in (a, b, c):
            assert session.request("ping", None, 10)["result"] == {}
        assert len(updates(c)) == 2, "the last subscriber left: the child was told, no update"
