"""A clean first log: child stderr at its own level, the settled line, the remembered era."""

from __future__ import annotations

import json
import re
from pathlib import Path

from .conftest import ECHO, Daemon, MakeDaemon, server_toml, wait_for


def test_child_stderr_levels_reach_logs_events_and_the_daemon_log(make_daemon: MakeDaemon) -> None:
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
    def log_with_chatter() -> str | None:
        text = daemon.log_text()
        return text if "plain chatter" in text else None

    log = wait_for(log_with_chatter, 10, what="daemon log")
    assert re.search(r" ERROR mcp_supervisor\.child: echo: \[error\] the disk is on fire", log)
    assert re.search(r" WARNING mcp_supervisor\.child: echo: WARNING:app:low on tea", log)
    assert re.search(r" INFO mcp_supervisor\.child: echo: plain chatter", log)


def test_log_events_carry_the_level(make_daemon: MakeDaemon) -> None:
    """The dashboard colours lines by level: the events tail has `levels` and each live `log`
    event a `level`."""
    import orjson

    from supervisor.client.control import connect, read_line

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


def era_file(daemon: Daemon) -> dict[str, str]:
    path = daemon.workdir / "state" / "eras.json"
    return json.loads(path.read_text()) if path.exists() else {}


def requests_seen(daemon: Daemon, name: str) -> list[str]:
    return [line.split("request ", 1)[1].split(" id=")[0]
            for line in daemon.rpc("supervisor/logs", {"server": name, "lines": 500})["lines"]
            if "] request " in line]


def test_a_legacy_server_is_probed_once_then_spoken_to_in_its_era(make_daemon: MakeDaemon) -> None:
    """Regression: every start probed `server/discover`, and old servers answered it with pages
    of validation errors. The era is remembered in the state dir; the next start (even by a new
    daemon) sends `initialize` alone."""
    toml = server_toml("old", ECHO, "--era", "legacy", "--log-requests")
    daemon = make_daemon(toml)
    daemon.wait_state("old", "ready")
    assert requests_seen(daemon, "old")[:2] == ["server/discover", "initialize"]
    assert list(wait_for(lambda: era_file(daemon), 10, what="eras.json").values()) == ["legacy"]
    daemon.stop()
    again = daemon.start()
    again.wait_state("old", "ready")
    seen = requests_seen(again, "old")
    assert seen[0] == "initialize" and "server/discover" not in seen


def test_a_remembered_era_that_fails_is_probed_again(make_daemon: MakeDaemon, workdir: Path) -> None:
    """The child changed era (a modern-only build): its refused `initialize` leads to the probe,
    it starts, and the new era replaces the old one in the file."""
    from supervisor.config import parse_config
    from supervisor.core.eras import era_key

    toml = server_toml("now-modern", ECHO, "--era", "modern", "--log-requests")
    daemon = make_daemon(toml, start=False)
    key = era_key(parse_config(daemon.config.read_text()).servers["now-modern"])
    (workdir / "state").mkdir(exist_ok=True)
    (workdir / "state" / "eras.json").write_text(json.dumps({key: "legacy"}))
    daemon.start()
    daemon.wait_state("now-modern", "ready")
    assert requests_seen(daemon, "now-modern")[:2] == ["initialize", "server/discover"]
    wait_for(lambda: era_file(daemon) == {key: "modern"}, 10, what="eras.json updated")


def test_one_info_line_when_the_cold_start_settles(make_daemon: MakeDaemon) -> None:
    """Regression: nothing said the fleet had settled. One INFO line gives counts per state, the
    time it took and the missing variables by name."""
    toml = (server_toml("echo") + server_toml("other")
            + server_toml("keyed", requires_env=["R17_KEY_A", "R17_KEY_B"]))
    daemon = make_daemon(toml)
    settled = re.compile(r" INFO mcp_supervisor\.daemon: (fleet settled in .*)")
    line = wait_for(lambda: settled.search(daemon.log_text()), 30, what="the settled line").group(1)
    assert re.fullmatch(r"fleet settled in \d+\.\ds: 2 ready, 1 unavailable; missing variables: "
                        r"R17_KEY_A, R17_KEY_B \(keyed\) \(mcpctl secret set NAME VAR\)", line), line
    assert daemon.log_text().count("fleet settled in") == 1
