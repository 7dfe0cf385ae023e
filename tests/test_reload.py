"""Reload: `mcpctl reload`, SIGHUP and file edits apply a validated fleet.toml as a diff."""

from __future__ import annotations

import json
import signal

from .conftest import ECHO, Daemon, MakeDaemon, alive_pids, server_toml, wait_for

BASE = server_toml("keep") + server_toml("change") + server_toml("drop")
NEXT = (server_toml("keep") + server_toml("change", ECHO, "--name", "changed")
        + server_toml("added"))


def pids(daemon: Daemon) -> dict[str, int]:
    return {s["name"]: s["pid"] for s in daemon.status()["servers"]}


def wait_all_ready(daemon: Daemon, names: list[str]) -> dict[str, int]:
    for name in names:
        daemon.wait_state(name, "ready")
    return pids(daemon)


def test_reload_applies_a_diff(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(BASE)
    before = wait_all_ready(daemon, ["keep", "change", "drop"])
    daemon.write_config(NEXT)
    result = daemon.ctl("reload", "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["added"] == ["added"]
    assert plan["removed"] == ["drop"]
    assert plan["changed"] == ["change"]
    assert plan["unchanged"] == ["keep"]
    after = wait_all_ready(daemon, ["keep", "change", "added"])
    assert set(after) == {"keep", "change", "added"}
    assert after["keep"] == before["keep"]  # untouched: same process
    assert after["change"] != before["change"]
    assert not alive_pids({before["drop"], before["change"]})
    changed = daemon.status("change")
    assert changed["restart_reasons"].get("config") == 1
    text = daemon.ctl("call", "change", "echo", '{"text": "x"}')
    assert text.returncode == 0


def test_invalid_file_is_rejected_and_nothing_changes(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(BASE)
    before = wait_all_ready(daemon, ["keep", "change", "drop"])
    daemon.write_config(BASE + "[servers.broken]\ncommand = 42\n")
    result = daemon.ctl("reload")
    assert result.returncode == 1
    assert "servers.broken.command" in result.stderr
    assert pids(daemon) == before
    assert "reload rejected" in daemon.log_text()


def test_sighup_reloads(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(BASE)
    wait_all_ready(daemon, ["keep", "change", "drop"])
    daemon.write_config(BASE + server_toml("hup"))
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_state("hup", "ready")


def test_file_edits_apply_once_per_burst_and_never_half_written(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(BASE, watch=True)
    before = wait_all_ready(daemon, ["keep", "change", "drop"])
    # A half-written file (the editor is mid-save) is rejected; nothing changes...
    with open(daemon.config, "a") as f:
        f.write("[servers.partial]\ncommand = \n")
    wait_for(lambda: "reload after file change rejected" in daemon.log_text()
             or "reload rejected" in daemon.log_text(), 15, what="rejection of the half-written file")
    assert pids(daemon) == before
    # ...and a burst of saves is applied once, with the final content.
    for n in range(5):
        daemon.write_config(BASE + server_toml("watched", ECHO, "--name", f"v{n}"))
    daemon.wait_state("watched", "ready")
    wait_for(lambda: daemon.log_text().count("reload applied") >= 1, 10)
    called = daemon.ctl("call", "watched", "echo", '{"text": "x"}')
    assert called.returncode == 0
    reloads = [line for line in daemon.log_text().splitlines() if "watcher" in line or "reload" in line]
    assert sum("reload applied" in line for line in reloads) == 1, reloads
    assert pids(daemon)["keep"] == before["keep"]
