"""The core daemon end to end: real `mcpctl serve`, real children, real socket, real CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import orjson
import psutil

from supervisor.client.control import connect, read_line

from .conftest import CHAOS, ECHO, MCPCTL, Daemon, MakeDaemon, alive_pids, server_toml, wait_for
from .mcp_raw import RawSession


def test_status_and_call_through_the_cli(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("echo") + server_toml("legacy", ECHO, "--era", "legacy"))
    daemon.wait_state("echo", "ready")
    daemon.wait_state("legacy", "ready")

    result = daemon.ctl("status", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert set(status["daemon"]) >= {"pid", "version", "uptime_s"}
    by_name = {s["name"]: s for s in status["servers"]}
    for name in ("echo", "legacy"):
        entry = by_name[name]
        assert entry["state"] == "ready"
        assert isinstance(entry["pid"], int)
        assert psutil.pid_exists(entry["pid"])
        assert entry["restarts"] == 0
        assert entry["calls_total"] == 0  # the daemon's own handshake is not client traffic
        assert isinstance(entry["memory_bytes"], int | None)
        assert entry["tools"] >= 10
        assert set(entry) >= {"name", "state", "reason", "pid", "restarts", "uptime_s", "memory_bytes",
                              "in_flight", "queued", "protocol_version", "tools"}
    assert by_name["echo"]["protocol_version"] == "2026-07-28"  # probed server/discover first
    assert by_name["legacy"]["protocol_version"] == "2025-11-25"  # fell back to initialize

    table = daemon.ctl("status")
    assert table.returncode == 0
    assert "echo" in table.stdout and "ready" in table.stdout

    called = daemon.ctl("call", "legacy", "echo", '{"text": "hello"}')
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout)["content"][0]["text"] == "hello"

    failed = daemon.ctl("call", "echo", "fail", "{}")
    assert failed.returncode == 1
    assert "error" in failed.stderr.lower()

    unknown = daemon.ctl("call", "nope", "echo", "{}")
    assert unknown.returncode == 2
    assert "no server named 'nope'" in unknown.stderr

    bad_json = daemon.ctl("call", "echo", "echo", "{not json")
    assert bad_json.returncode == 2

    tools = daemon.ctl("tools", "echo")
    assert tools.returncode == 0 and "echo" in tools.stdout


def test_memory_is_the_whole_process_tree(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("tree", CHAOS, "--grandchild-leak-mb", "40"))
    daemon.wait_state("tree", "ready")
    entry = wait_for(lambda: (s := daemon.status("tree"))["memory_bytes"]
                     and s["memory_bytes"] > 40 * 2**20 and s, 20, what="tree memory > 40MiB")
    child_rss = psutil.Process(entry["pid"]).memory_info().rss
    assert entry["memory_bytes"] > child_rss + 30 * 2**20


def test_two_hundred_concurrent_calls_get_their_own_answers(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("echo", ECHO, max_in_flight=16))
    daemon.wait_state("echo", "ready")
    with RawSession(daemon.socket, "echo") as session:
        session.initialize()
        # Mixed id types: the answer must carry the caller's id with its JSON type.
        ids = [i if i % 2 else f"req-{i}" for i in range(200)]
        for i, msg_id in enumerate(ids):
            session.send({"jsonrpc": "2.0", "id": msg_id, "method": "tools/call",
                          "params": {"name": "echo", "arguments": {"text": f"answer {i}"}}})
        answers = {}
        for _ in ids:
            reply = session.response()
            answers[json.dumps(reply["id"])] = reply["result"]["content"][0]["text"]
    assert len(answers) == 200
    for i, msg_id in enumerate(ids):
        assert answers[json.dumps(msg_id)] == f"answer {i}"


def test_many_clients_share_one_child(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("echo"))
    pid = daemon.wait_state("echo", "ready")["pid"]
    errors: list[str] = []

    def client(n: int) -> None:
        try:
            with RawSession(daemon.socket, "echo") as session:
                session.initialize()
                for i in range(20):
                    reply = session.call_tool("pid", {}, msg_id=i)
                    if reply["result"]["content"][0]["text"] != str(pid):
                        errors.append(f"client {n} got pid {reply}")
                    echo = session.call_tool("echo", {"text": f"{n}-{i}"}, msg_id=1000 + i)
                    if echo["result"]["content"][0]["text"] != f"{n}-{i}":
                        errors.append(f"client {n} got {echo}")
        except Exception as exc:  # collected, asserted below
            errors.append(repr(exc))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors


def test_out_of_order_answers_reach_the_right_callers(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("ooo", CHAOS, "--out-of-order"))
    daemon.wait_state("ooo", "ready")
    with RawSession(daemon.socket, "ooo") as session:
        session.initialize()
        batch = b"".join(orjson.dumps({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                                       "params": {"name": "echo", "arguments": {"text": str(i)}}}) + b"\n"
                         for i in range(50))
        session.send_raw(batch)
        got = {}
        for _ in range(50):
            reply = session.response()
            got[reply["id"]] = reply["result"]["content"][0]["text"]
    assert got == {i: str(i) for i in range(50)}


def test_crash_restarts_with_backoff_and_in_flight_callers_hear_at_once(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("crashy", CHAOS, "--crash-after", "3", backoff_initial="100ms"))
    first = daemon.wait_state("crashy", "ready")
    with RawSession(daemon.socket, "crashy") as session:
        session.initialize()
        assert "result" in session.call_tool("echo", {"text": "1"}, 1)
        assert "result" in session.call_tool("echo", {"text": "2"}, 2)
        reply = session.call_tool("echo", {"text": "3"}, 3)  # the child dies on this one
    assert reply["error"]["code"] == -32003
    assert "exited while handling the request" in reply["error"]["message"]
    after = wait_for(lambda: (s := daemon.status("crashy"))["state"] == "ready"
                     and s["pid"] != first["pid"] and s, 20, what="restart")
    assert after["restarts"] == 1
    assert after["restart_reasons"].get("crash") == 1
    assert not psutil.pid_exists(first["pid"]) or psutil.Process(first["pid"]).status() == "zombie"
    called = daemon.ctl("call", "crashy", "echo", '{"text": "again"}')
    assert called.returncode == 0, called.stderr


def test_restart_stop_start_through_the_cli(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("a") + server_toml("b"))
    a = daemon.wait_state("a", "ready")
    b = daemon.wait_state("b", "ready")

    restarted = daemon.ctl("restart", "a")
    assert restarted.returncode == 0, restarted.stderr
    assert "a: ready" in restarted.stdout
    a2 = daemon.status("a")
    assert a2["pid"] != a["pid"] and a2["restarts"] == 1
    assert a2["restart_reasons"] == {"manual": 1}
    assert not alive_pids({a["pid"]})
    assert daemon.status("b")["pid"] == b["pid"]  # untouched

    stopped = daemon.ctl("stop", "b")
    assert stopped.returncode == 0, stopped.stderr
    assert daemon.status("b")["state"] == "stopped"
    assert not alive_pids({b["pid"]})
    refused = daemon.ctl("call", "b", "echo", '{"text": "x"}')
    assert refused.returncode == 1 and "stopped" in refused.stderr

    started = daemon.ctl("start", "b")
    assert started.returncode == 0
    assert daemon.wait_state("b", "ready")["pid"] != b["pid"]

    assert daemon.ctl("restart").returncode == 2  # no names, no --all
    all_restarted = daemon.ctl("restart", "--all")
    assert all_restarted.returncode == 0, all_restarted.stderr
    assert daemon.ctl("stop", "nope").returncode == 2


def test_unavailable_prerequisites_never_spawn(make_daemon: MakeDaemon, workdir: Path) -> None:
    config = (
        '[servers.missing]\ncommand = "definitely-not-installed-mcp"\n'
        + server_toml("needs_key", ECHO, requires_env=["MCPS_TEST_UNSET_KEY"])
        + server_toml("bad_cwd", ECHO, cwd=str(workdir / "nowhere"))
    )
    daemon = make_daemon(config)
    missing = daemon.wait_state("missing", "unavailable")
    assert "command not found: definitely-not-installed-mcp" in missing["reason"]
    needs = daemon.wait_state("needs_key", "unavailable")
    assert needs["reason"].startswith("MCPS_TEST_UNSET_KEY is not set")
    assert "does not exist" in daemon.wait_state("bad_cwd", "unavailable")["reason"]
    for entry in daemon.status()["servers"]:
        assert entry["pid"] is None and entry["restarts"] == 0


def test_exit_before_handshake_gives_up_with_the_childs_words(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("nokey", CHAOS, "--exit-before-handshake",
                                     "Error: BRAVE_API_KEY environment variable is required",
                                     max_start_failures=2, backoff_initial="50ms"))
    failed = daemon.wait_state("nokey", "failed", timeout=30)
    assert "BRAVE_API_KEY environment variable is required" in failed["reason"]
    assert "gave up after 2 failed starts" in failed["reason"]
    # `restart` revives a failed server (it fails again here, which is the point).
    assert daemon.ctl("restart", "nokey", "--no-wait").returncode == 0
    wait_for(lambda: daemon.status("nokey")["state"] in ("starting", "backoff", "failed"), 10)


def test_junk_on_stdout_slow_start_and_notify_before_reply_are_survived(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(
        server_toml("junk", CHAOS, "--junk")
        + server_toml("slow", CHAOS, "--slow-start", "1.5")
        + server_toml("chatty", CHAOS, "--notify-before-reply", "--stderr-spam"))
    for name in ("junk", "slow", "chatty"):
        daemon.wait_state(name, "ready")
        called = daemon.ctl("call", name, "echo", '{"text": "ok"}')
        assert called.returncode == 0, (name, called.stderr)
        assert json.loads(called.stdout)["content"][0]["text"] == "ok"
    assert "non-JSON line on stdout" in daemon.log_text()


def test_busy_answers_at_once_with_retry_after(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("tiny", ECHO, max_in_flight=1, max_queue=1))
    daemon.wait_state("tiny", "ready")
    with RawSession(daemon.socket, "tiny") as session:
        session.initialize()
        for i in range(3):
            session.send({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                          "params": {"name": "sleep", "arguments": {"seconds": 1}}})
        first = session.response()  # the refusal comes before any sleep finishes
        assert first["id"] == 2
        assert first["error"]["code"] == -32000
        assert first["error"]["message"].startswith("server busy")
        assert first["error"]["data"]["retry_after_ms"] > 0
        rest = {session.response()["id"] for _ in range(2)}
        assert rest == {0, 1}


def test_timeout_cancels_in_the_child(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("slowpoke", ECHO, request_timeout="300ms"))
    daemon.wait_state("slowpoke", "ready")
    with RawSession(daemon.socket, "slowpoke") as session:
        session.initialize()
        reply = session.call_tool("sleep", {"seconds": 10}, "late")
        assert reply["id"] == "late"
        assert reply["error"]["code"] == -32001
        assert "did not answer tools/call" in reply["error"]["message"]
        cancelled = session.call_tool("cancelled", {}, "check")
    ids = json.loads(cancelled["result"]["content"][0]["text"])
    assert len(ids) == 1  # the child saw notifications/cancelled for the request it was running


def test_client_disconnect_mid_call_cancels_in_the_child(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("echo"))
    daemon.wait_state("echo", "ready")
    session = RawSession(daemon.socket, "echo")
    session.initialize()
    session.call_tool("echo", {"text": "warm"}, 0)
    session.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                  "params": {"name": "sleep", "arguments": {"seconds": 30}}})
    wait_for(lambda: daemon.status("echo")["in_flight"] == 1, 10, what="call in flight")
    session.close()
    wait_for(lambda: daemon.status("echo")["in_flight"] == 0, 10, what="slot freed")
    with RawSession(daemon.socket, "echo") as other:
        other.initialize()
        ids = json.loads(other.call_tool("cancelled", {}, 5)["result"]["content"][0]["text"])
    assert len(ids) == 1


_INIT = (b'{"jsonrpc":"2.0","id":"i","method":"initialize","params":{"protocolVersion":"2025-06-18",'
         b'"capabilities":{},"clientInfo":{"name":"t","version":"1"}}}\n')


def _connect(daemon: Daemon, stdin: Any = subprocess.PIPE) -> subprocess.Popen[bytes]:
    return subprocess.Popen([MCPCTL, "--socket", str(daemon.socket), "connect", "echo"], stdin=stdin,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=daemon.env)


def test_connect_hands_its_pipes_to_the_daemon_and_its_death_ends_the_session(
        make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("echo"))
    daemon.wait_state("echo", "ready")
    bridge = _connect(daemon)
    assert bridge.stdin is not None and bridge.stdout is not None
    bridge.stdin.write(_INIT + b'{"jsonrpc":"2.0","id":1,"method":"tools/call",'
                       b'"params":{"name":"echo","arguments":{"text":"via pipes"}}}\n')
    bridge.stdin.flush()
    assert orjson.loads(bridge.stdout.readline())["id"] == "i"
    assert orjson.loads(bridge.stdout.readline())["result"]["content"][0]["text"] == "via pipes"
    # The daemon serves the pipes itself: the bridge only waits on its control connection.
    bridge.stdin.write(b'{"jsonrpc":"2.0","id":2,"method":"tools/call",'
                       b'"params":{"name":"sleep","arguments":{"seconds":30}}}\n')
    bridge.stdin.flush()
    wait_for(lambda: daemon.status("echo")["in_flight"] == 1, 10, what="call in flight")
    bridge.kill()  # the client's server process is gone: the session (and its call) goes too
    bridge.wait(10)
    wait_for(lambda: daemon.status("echo")["in_flight"] == 0, 10, what="slot freed")
    assert bridge.stdout.read() == b""  # the daemon let go of the client's stdout as well
    for stream in (bridge.stdin, bridge.stdout, bridge.stderr):
        assert stream is not None
        stream.close()


def test_connect_exits_0_when_the_client_closes_stdin(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("echo"))
    daemon.wait_state("echo", "ready")
    bridge = _connect(daemon)
    out, err = bridge.communicate(_INIT, timeout=30)
    assert bridge.returncode == 0, err
    assert orjson.loads(out.splitlines()[0])["id"] == "i"


def test_connect_on_a_file_pumps_bytes_itself(make_daemon: MakeDaemon, workdir: Path) -> None:
    daemon = make_daemon(server_toml("echo"))
    daemon.wait_state("echo", "ready")
    requests = workdir / "requests.jsonl"
    requests.write_bytes(_INIT + b'{"jsonrpc":"2.0","id":1,"method":"tools/call",'
                         b'"params":{"name":"echo","arguments":{"text":"from a file"}}}\n')
    with requests.open("rb") as stdin:  # a regular file is not handed over: the bridge pumps
        bridge = _connect(daemon, stdin)
        out, err = bridge.communicate(timeout=30)
    assert bridge.returncode == 0, err
    answers = {m["id"]: m for m in map(orjson.loads, out.splitlines())}
    assert answers[1]["result"]["content"][0]["text"] == "from a file"


def test_child_death_fails_only_its_own_callers(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("doomed", CHAOS, "--crash-after", "2") + server_toml("steady"))
    daemon.wait_state("doomed", "ready")
    daemon.wait_state("steady", "ready")
    with RawSession(daemon.socket, "doomed") as doomed, RawSession(daemon.socket, "steady") as steady:
        doomed.initialize()
        steady.initialize()
        doomed.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                     "params": {"name": "sleep", "arguments": {"seconds": 20}}})
        steady_reply = steady.call_tool("echo", {"text": "fine"}, 1)
        assert steady_reply["result"]["content"][0]["text"] == "fine"
        crash = doomed.call_tool("echo", {"text": "boom"}, 2)  # second tools/call kills the child
        first = doomed.response()
        assert {crash["id"], first["id"]} == {1, 2}
        assert crash["error"]["code"] == first["error"]["code"] == -32003
        assert steady.call_tool("echo", {"text": "still"}, 2)["result"]["content"][0]["text"] == "still"


def test_bad_input_gets_precise_errors_and_loses_nothing(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("echo"))
    daemon.wait_state("echo", "ready")
    with RawSession(daemon.socket, "echo") as session:
        session.initialize()
        session.send_raw(b"{this is not json\n")
        assert session.response()["error"]["code"] == -32700
        session.send_raw(b"[1, 2]\n")
        assert session.response()["error"]["code"] == -32600
        session.send({"jsonrpc": "2.0", "id": 7})
        assert session.response()["error"]["code"] == -32600
        for bad_id in (1.5, True, None, [1]):  # a bool is an int to Python, never an id to JSON-RPC
            session.send({"jsonrpc": "2.0", "id": bad_id, "method": "tools/list"})
            assert session.response()["error"]["code"] == -32600, bad_id
        reply = session.request("no/such/method", {}, 8)
        assert reply["id"] == 8 and reply["error"]["code"] == -32601
        session.send_raw(b'{"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "echo", '
                         b'"arguments": {"text": "' + b"x" * (17 * 1024 * 1024) + b'"}}}\n')
        big = session.response()
        assert big["error"]["code"] == -32006 and "exceeds" in big["error"]["message"]
        # ...and the same session still works.
        ok = session.call_tool("echo", {"text": "after"}, 10)
        assert ok["result"]["content"][0]["text"] == "after"


def test_legacy_initialize_is_answered_from_the_childs_handshake(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("echo", ECHO, "--name", "echo-under-test"))
    daemon.wait_state("echo", "ready")
    with RawSession(daemon.socket, "echo") as session:
        reply = session.request("initialize", {"protocolVersion": "2024-11-05", "capabilities": {},
                                               "clientInfo": {"name": "old", "version": "0"}})
        result = reply["result"]
        assert result["protocolVersion"] == "2024-11-05"  # negotiated to the client's own version
        assert result["serverInfo"]["name"] == "echo-under-test"
        assert "tools" in result["capabilities"]
        assert session.request("ping", None, 2)["result"] == {}
        discover = session.request("server/discover", {"_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}}}, 3)
        assert "2026-07-28" in discover["result"]["supportedVersions"]
        unsupported = session.request("tools/list", {"_meta": {
            "io.modelcontextprotocol/protocolVersion": "1999-01-01"}}, 4)
        assert unsupported["error"]["code"] == -32022
        assert "2026-07-28" in unsupported["error"]["data"]["supported"]


def test_progress_tokens_are_remapped_per_client(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("echo"))
    daemon.wait_state("echo", "ready")
    with RawSession(daemon.socket, "echo") as one, RawSession(daemon.socket, "echo") as two:
        for session in (one, two):
            session.initialize()
            session.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                          "params": {"name": "sleep", "arguments": {"seconds": 0.3},
                                     "_meta": {"progressToken": 1}}})
        for session in (one, two):
            assert session.response()["result"]["content"][0]["text"] == "slept"
            tokens = {n["params"]["progressToken"] for n in session.notifications
                      if n["method"] == "notifications/progress"}
            assert tokens == {1}
            assert len([n for n in session.notifications if n["method"] == "notifications/progress"]) == 3


def test_list_changed_is_fanned_out_to_every_attached_client(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("echo"))
    daemon.wait_state("echo", "ready")
    with RawSession(daemon.socket, "echo") as one, RawSession(daemon.socket, "echo") as two:
        one.initialize()
        two.initialize()
        one.call_tool("notify", {"kind": "tools"}, 1)
        seen = two.recv()
        assert seen["method"] == "notifications/tools/list_changed"


def test_roots_list_is_answered_from_config(make_daemon: MakeDaemon, workdir: Path) -> None:
    # Server-to-client requests exist only in the legacy era (2026-07-28 uses input_required).
    daemon = make_daemon(server_toml("rooted", ECHO, "--era", "legacy", roots=[str(workdir)]))
    daemon.wait_state("rooted", "ready")
    called = daemon.ctl("call", "rooted", "roots", "{}")
    assert called.returncode == 0, called.stderr
    text = json.loads(called.stdout)["content"][0]["text"]
    assert f"file://{workdir}" in text


def test_invalid_config_is_refused_with_the_key_path(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("echo", ECHO, max_inflight=4), start=False)
    result = daemon.ctl("serve")
    assert result.returncode == 2
    assert "servers.echo.max_inflight" in result.stderr
    assert "did you mean 'max_in_flight'" in result.stderr


def test_client_commands_say_when_the_daemon_is_not_running(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("echo"), start=False)
    for args in (["status"], ["call", "echo", "echo"], ["tools"], ["restart", "echo"], ["logs", "echo"],
                 ["connect", "echo"]):
        result = daemon.ctl(*args, input=b"")
        assert result.returncode == 1, args
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "not running" in lines[0], (args, result.stderr)


def test_sigterm_leaves_no_process_behind(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("family", CHAOS, "--grandchild")
                         + server_toml("escapee", CHAOS, "--grandchild-setsid")
                         + server_toml("stubborn", CHAOS, "--ignore-eof", "--ignore-sigterm",
                                       stop_timeout="1s"))
    pids = set()
    for name in ("family", "escapee", "stubborn"):
        entry = daemon.wait_state(name, "ready")
        pids.add(entry["pid"])
    for name in ("family", "escapee"):
        called = daemon.ctl("call", name, "grandchild", "{}")
        pids.add(int(json.loads(called.stdout)["content"][0]["text"]))
    assert len(alive_pids(pids)) == 5
    assert daemon.stop(signal.SIGTERM) == 0
    wait_for(lambda: not alive_pids(pids), 10, what="every process to be gone")
    assert not daemon.socket.exists()


def test_sigkilled_daemon_leftovers_are_ended_by_the_next_daemon(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("orphan", CHAOS, "--grandchild", "--ignore-eof"))
    entry = daemon.wait_state("orphan", "ready")
    grandchild = int(json.loads(daemon.ctl("call", "orphan", "grandchild", "{}").stdout)
                     ["content"][0]["text"])
    pids = {entry["pid"], grandchild}
    daemon.stop(signal.SIGKILL)
    assert alive_pids(pids) == pids  # the children outlived the daemon...
    successor = Daemon(daemon.workdir, daemon.config_text, daemon.env)
    successor.start()
    try:
        wait_for(lambda: not alive_pids(pids), 15, what="leftovers to be ended")
        assert "left behind by a previous daemon" in successor.log_text()
        successor.wait_state("orphan", "ready")
    finally:
        successor.seen_pids |= successor.descendants()
        successor.stop()
        wait_for(lambda: not alive_pids(successor.seen_pids), 10)


def test_second_daemon_on_the_same_socket_is_refused(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("echo"))
    daemon.wait_state("echo", "ready")
    second = daemon.ctl("serve")
    assert second.returncode == 1
    assert "already running" in second.stderr


def test_logs_shows_child_stderr(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("echo"))
    daemon.wait_state("echo", "ready")
    daemon.ctl("call", "echo", "stderr", '{"text": "hello from stderr", "lines": 2}')
    def both_lines() -> subprocess.CompletedProcess[str] | None:
        shown = daemon.ctl("logs", "echo", "-n", "50")
        return shown if shown.stdout.count("hello from stderr") >= 2 else None

    logs = wait_for(both_lines, 10, what="stderr lines")
    assert logs.returncode == 0


def test_control_socket_is_owner_only(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("echo"))
    assert (os.stat(daemon.socket).st_mode & 0o777) == 0o600


def test_control_socket_rejects_bad_requests(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("echo"))
    sock = connect(daemon.socket)
    buffer = bytearray()
    with sock:
        sock.sendall(b"garbage\n")
        assert orjson.loads(read_line(sock, buffer))["error"]["code"] == -32700
        sock.sendall(b'{"jsonrpc": "2.0", "id": 1, "method": "supervisor/nope"}\n')
        assert orjson.loads(read_line(sock, buffer))["error"]["code"] == -32601
        sock.sendall(b'{"jsonrpc": "2.0", "id": 2, "method": "supervisor/attach", '
                     b'"params": {"server": "x"}}\n')
        assert orjson.loads(read_line(sock, buffer))["error"]["code"] == -32005


def test_instances_share_load_least_loaded_first(make_daemon: MakeDaemon) -> None:
    """With one slot per instance, a call that finds the first instance busy must go to the
    other; on an idle pool the first instance takes it. (An earlier version of this test let
    timing decide which instance freed up first, and flaked.)"""
    daemon = make_daemon(server_toml("pool", ECHO, instances=2, max_in_flight=1))
    entry = wait_for(lambda: (s := daemon.status("pool"))["instances"] == 2 and s, 20)
    assert len(entry["pids"]) == 2
    with RawSession(daemon.socket, "pool") as session:
        session.initialize()
        session.send_raw(
            orjson.dumps({"jsonrpc": "2.0", "id": "busy", "method": "tools/call",
                          "params": {"name": "sleep", "arguments": {"seconds": 2}}}) + b"\n"
            + orjson.dumps({"jsonrpc": "2.0", "id": "other", "method": "tools/call",
                            "params": {"name": "pid", "arguments": {}}}) + b"\n")
        other = session.response()
        assert other["id"] == "other"
        assert session.response()["id"] == "busy"
        idle = session.call_tool("pid", {}, "idle")
    pids = {int(other["result"]["content"][0]["text"]), int(idle["result"]["content"][0]["text"])}
    assert pids == set(entry["pids"])


def test_undeclared_capabilities_are_answered_by_the_daemon(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("toolsonly", ECHO, "--capabilities", "tools"))
    daemon.wait_state("toolsonly", "ready")
    with RawSession(daemon.socket, "toolsonly") as session:
        session.initialize()
        before = session.call_tool("calls", {}, 1)["result"]["content"][0]["text"]
        prompts = session.request("prompts/list", {}, 2)
        assert prompts["result"] == {"prompts": []}
        get = session.request("prompts/get", {"name": "greet"}, 3)
        assert get["error"]["code"] == -32601
        assert "does not declare the 'prompts' capability" in get["error"]["message"]
        read = session.request("resources/read", {"uri": "test://hello"}, 4)
        assert read["error"]["code"] == -32601
        after = session.call_tool("calls", {}, 5)["result"]["content"][0]["text"]
    # `calls` counts every tools/call the child answered: only our two, nothing in between.
    assert int(after) == int(before) + 1


def test_slow_modern_child_is_not_mistaken_for_legacy(make_daemon: MakeDaemon) -> None:
    """Regression: a child that answered server/discover after the 3 s probe timeout was sent
    initialize, rejected it with -32022 (it had locked modern) and was torn down as broken."""
    daemon = make_daemon(server_toml("sluggish", CHAOS, "--slow-start", "4")
                         + server_toml("sluggish_legacy", CHAOS, "--slow-start", "4", "--era", "legacy"))
    assert daemon.wait_state("sluggish", "ready")["protocol_version"] == "2026-07-28"
    legacy = daemon.wait_state("sluggish_legacy", "ready")
    assert legacy["protocol_version"] == "2025-11-25"
    assert legacy["in_flight"] == 0  # the unanswered probe does not linger as a request
    for name in ("sluggish", "sluggish_legacy"):
        called = daemon.ctl("call", name, "echo", '{"text": "ok"}')
        assert called.returncode == 0, called.stderr


def test_env_entries_that_expand_to_nothing_are_unset(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("envy", ECHO)
                         + 'env = { UNSET_HERE = "${MCPS_NOT_SET_ANYWHERE:-}", SET_HERE = "yes" }\n')
    daemon.wait_state("envy", "ready")
    with RawSession(daemon.socket, "envy") as session:
        session.initialize()
        unset = session.call_tool("env", {"name": "UNSET_HERE"}, 1)["result"]
        present = session.call_tool("env", {"name": "SET_HERE"}, 2)["result"]
        leaked = session.call_tool("env", {"name": "PYTEST_CURRENT_TEST"}, 3)["result"]
    assert unset["structuredContent"] == {"set": False}
    assert present["content"][0]["text"] == "yes"
    assert leaked["structuredContent"] == {"set": False}  # the daemon's own environment is scrubbed


def test_a_client_that_only_closes_its_input_still_gets_its_answers(make_daemon: MakeDaemon) -> None:
    """Half-close: `shutdown(SHUT_WR)` means "no more requests", not "gone"; a full close (the
    test above) cancels instead."""
    import socket as socket_module

    daemon = make_daemon(server_toml("echo"))
    daemon.wait_state("echo", "ready")
    with RawSession(daemon.socket, "echo") as session:
        session.initialize()
        session.send({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                      "params": {"name": "sleep", "arguments": {"seconds": 0.5}}})
        session.sock.shutdown(socket_module.SHUT_WR)
        reply = session.response()
    assert reply["id"] == 7 and reply["result"]["content"][0]["text"] == "slept"
