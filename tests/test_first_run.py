"""A clean first log: child stderr at its own level, the settled line, the remembered era."""

from __future__ import annotations

import json
import re

from .conftest import server_toml, wait_for


def test_child_stderr_levels_reach_logs_events_and_the_daemon_log(make_daemon):
    """An `[error]` line from a child is logged at ERROR (not INFO) and carries `level` wherever
    the daemon hands log lines out: `supervisor/logs` and the events' tail."""
    daemon = make_daemon(server_toml("echo"))
    daemon.wait_state("echo", "ready")
    for text in ("[error] the disk is on fire", "WARNING:app:low on tea", "plain chatter"):
        called = daemon.ctl("call", "echo", "stderr", json.dumps({"text": text, "lines": 1}))
        assert called.returncode == 0, called.stderr
    result = wait_for(lambda: (r := daemon.rpc("supervisor/logs", {"server": "echo", "lines": 50}))
                      and "plain chatter" in r["lines"] and r, 10, what="the three lines")
    levels = dict(zip(result["lines"], result["levels"], strict=True))
    assert levels["[error] the disk is on fire"] == "error"
    assert levels["WARNING:app:low on tea"] == "warning"
    assert levels["plain chatter"] == "info"
    log = wait_for(lambda: "plain chatter" in (t := daemon.log_text()) and t, 10, what="daemon log")
    assert re.search(r" ERROR mcp_supervisor\.child: echo: \[error\] the disk is on fire", log)
    assert re.search(r" WARNING mcp_supervisor\.child: echo: WARNING:app:low on tea", log)
    assert re.search(r" INFO mcp_supervisor\.child: echo: plain chatter", log)


def test_log_events_carry_the_level(make_daemon):
    """The dashboard colours lines by level: the events tail has `levels` and each live `log`
    event a `level`."""
    import orjson

    from supervisor.control_client import connect, read_line

    daemon = make_daemon(server_toml("echo"))
    daemon.wait_state("echo", "ready")
    daemon.ctl("call", "echo", "stderr", json.dumps({"text": "ERROR: first", "lines": 1}))
    wait_for(lambda: "ERROR: first" in daemon.rpc("supervisor/logs", {"server": "echo"})["lines"], 10)
    with connect(daemon.socket) as sock:
        sock.settimeout(10)
        sock.sendall(orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "supervisor/events",
                                   "params": {"logs": ["echo"], "tail": 5}}) + b"\n")
        buffer = bytearray()
        reply = orjson.loads(read_line(sock, buffer))
        tail = dict(zip(reply["result"]["lines"]["echo"], reply["result"]["levels"]["echo"], strict=True))
        assert tail["ERROR: first"] == "error"
        daemon.ctl("call", "echo", "stderr", json.dumps({"text": "[warn] second", "lines": 1}))
        while True:
            event = orjson.loads(read_line(sock, buffer))["params"]
            if event.get("type") == "log" and event["line"] == "[warn] second":
                assert event["level"] == "warning"
                break
