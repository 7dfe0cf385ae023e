"""Operations: sd_notify and the watchdog, Prometheus metrics, logs (files, follow, secrets), systemd units.

The daemon tests run the real `mcpctl serve` with systemd's side played by the test: a datagram
socket bound as NOTIFY_SOCKET. Metrics are scraped through the control socket (`supervisor/metrics`
returns the same text `GET /metrics` serves) and parsed with prometheus_client's own parser.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from supervisor.ops import sdnotify
from supervisor.ops.service_units import render
from supervisor.policy.counters import RequestStats
from supervisor.policy.outcome import Outcome
from supervisor.telemetry.logs import REDACT, ChildLogFiles, JournalFormatter, stderr_is_journal

from .conftest import CHAOS, ECHO, MCPCTL, REPO, Daemon, MakeDaemon, daemon_env, server_toml, wait_for


class NotifyListener:
    """systemd's end of NOTIFY_SOCKET: every datagram, with the time it arrived."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._closed = False
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def with_line(self, line: str) -> list[tuple[float, str]]:
        return [(t, m) for t, m in list(self.messages) if line in m.split("\n")]

    def wait(self, line: str, after: float = 0.0, timeout: float = 20.0) -> tuple[float, str]:
        found = wait_for(lambda: [(t, m) for t, m in self.with_line(line) if t >= after], timeout,
                         what=f"{line!r} on NOTIFY_SOCKET (got {[m for _, m in self.messages][-5:]})")
        return found[0]

    def close(self) -> None:
        self._closed = True
        self._thread.join(2)
        self.sock.close()


Samples = dict[str, dict[frozenset[tuple[str, str]], float]]


def scrape(daemon: Daemon) -> Samples:
    """{sample name: {frozenset(labels.items()): value}} from a real scrape."""
    text = daemon.rpc("supervisor/metrics")["text"]
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get(name, {}).get(frozenset(labels.items()))


def measured(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value, which must be there."""
    found = value(samples, name, **labels)
    assert found is not None, f"no sample {name} {labels}"
    return found


# ---- sd_notify -----------------------------------------------------------------------------------


def test_sd_notify_ready_after_servers_settle_watchdog_reload_and_stopping(make_daemon: MakeDaemon,
                                                                           workdir: Path) -> None:
    listener = NotifyListener(workdir / "notify.sock")
    try:
        env = daemon_env(workdir, NOTIFY_SOCKET=str(listener.path), WATCHDOG_USEC="300000")
        daemon = make_daemon(server_toml("fast") + server_toml("slow", CHAOS, "--slow-start", "2.5"),
                             env=env)
        # The control socket answers while `slow` is still in its handshake: no READY yet.
        assert daemon.status("slow")["state"] == "starting"
        assert not listener.with_line("READY=1")
        at, ready = listener.wait("READY=1")
        assert "STATUS=2/2 ready" in ready.split("\n")  # said with READY: both had settled
        assert daemon.status("slow")["state"] == "ready"
        assert any(m.startswith("STATUS=starting: ") for t, m in listener.messages if t < at)

        # WATCHDOG=1 every WATCHDOG_USEC/2 = 150 ms, from the event loop.
        start = time.monotonic()
        time.sleep(1.0)
        pings = [t for t, _ in listener.with_line("WATCHDOG=1") if t >= start]
        assert len(pings) >= 4, pings
        assert max(b - a for a, b in itertools.pairwise(pings)) < 0.3 + 0.2

        before = time.monotonic()
        reloaded = daemon.ctl("reload")
        assert reloaded.returncode == 0, reloaded.stderr
        t_reloading, reloading = listener.wait("RELOADING=1", after=before)
        stamp = re.search(r"MONOTONIC_USEC=(\d+)", reloading)
        assert stamp is not None, reloading
        usec = int(stamp.group(1))
        assert abs(usec / 1e6 - time.clock_gettime(time.CLOCK_MONOTONIC)) < 30
        listener.wait("READY=1", after=t_reloading)

        before = time.monotonic()
        assert daemon.stop(signal.SIGTERM) == 0
        _, stopping = listener.wait("STOPPING=1", after=before, timeout=5)
        assert "STOPPING=1" in stopping
    finally:
        listener.close()


def test_notifier_speaks_abstract_sockets_and_is_silent_without_notify_socket() -> None:
    name = f"mcps-test-{uuid.uuid4().hex}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind("\0" + name)
    server.settimeout(2)
    try:
        notifier = sdnotify.Notifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "2000000"})
        assert notifier.enabled and notifier.watchdog == 1.0
        notifier.ready("3/3 ready")
        assert server.recv(1024) == b"READY=1\nSTATUS=3/3 ready"
        notifier.status("3/3 ready")  # unchanged: not sent again
        notifier.ping()
        assert server.recv(1024) == b"WATCHDOG=1"
        notifier.close()
    finally:
        server.close()
    silent = sdnotify.Notifier({"WATCHDOG_USEC": "2000000"})
    assert not silent.enabled and silent.watchdog is None
    assert silent.notify("READY=1") is False


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, None),
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "junk"}, None),
    ({"WATCHDOG_USEC": "30000000"}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1234"}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "999"}, None),  # for another process
])
def test_watchdog_interval_is_half_of_watchdog_usec(environ: dict[str, str], expected: float | None) -> None:
    assert sdnotify.watchdog_interval(environ, pid=1234) == expected


# ---- metrics -------------------------------------------------------------------------------------


def test_metrics_after_calls_errors_a_crash_and_a_restart(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("echo", ECHO, memory_limit="512MiB")
                         + server_toml("crashy", CHAOS, "--crash-after", "2", backoff_initial="100ms"))
    daemon.wait_state("echo", "ready")
    first = daemon.wait_state("crashy", "ready")
    for i in range(3):
        assert daemon.ctl("call", "echo", "echo", json.dumps({"text": str(i)})).returncode == 0
    assert daemon.ctl("call", "echo", "error", "{}").returncode == 1  # a JSON-RPC error
    assert daemon.ctl("call", "crashy", "echo", '{"text": "1"}').returncode == 0
    assert daemon.ctl("call", "crashy", "echo", '{"text": "2"}').returncode == 1  # dies on this one
    wait_for(lambda: (s := daemon.status("crashy"))["state"] == "ready" and s["pid"] != first["pid"],
             20, what="crashy restarted")
    assert daemon.ctl("restart", "echo").returncode == 0
    wait_for(lambda: daemon.status("echo")["memory_bytes"], 10, what="a memory sample")

    samples = scrape(daemon)
    calls = {"server": "echo", "method": "tools/call"}
    assert value(samples, "mcp_supervisor_requests_total", **calls, outcome="ok") == 3
    assert value(samples, "mcp_supervisor_requests_total", **calls, outcome="error") == 1
    assert value(samples, "mcp_supervisor_requests_total", server="crashy", method="tools/call",
                 outcome="gone") == 1
    # The daemon's own requests (handshake, tools list, health probes) are not client traffic.
    assert value(samples, "mcp_supervisor_requests_total", server="echo", method="tools/list",
                 outcome="ok") is None

    assert value(samples, "mcp_supervisor_request_duration_seconds_count", **calls) == 4
    buckets = sorted(((float(dict(k)["le"]), v) for k, v
                      in samples["mcp_supervisor_request_duration_seconds_bucket"].items()
                      if dict(k)["server"] == "echo" and dict(k)["method"] == "tools/call"))
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    assert buckets[-1] == (float("inf"), 4)
    assert 0 < measured(samples, "mcp_supervisor_request_duration_seconds_sum", **calls) < 10

    assert value(samples, "mcp_supervisor_restarts_total", server="crashy", reason="crash") == 1
    assert value(samples, "mcp_supervisor_restarts_total", server="echo", reason="manual") == 1
    assert value(samples, "mcp_supervisor_server_state", server="echo", state="ready") == 1
    assert value(samples, "mcp_supervisor_server_state", server="echo", state="starting") == 0
    assert value(samples, "mcp_supervisor_in_flight", server="echo") == 0
    assert value(samples, "mcp_supervisor_queue_depth", server="echo") == 0
    assert measured(samples, "mcp_supervisor_memory_bytes", server="echo") > 1_000_000
    assert value(samples, "mcp_supervisor_memory_limit_bytes", server="echo") == 512 * 2**20
    assert value(samples, "mcp_supervisor_memory_limit_bytes", server="crashy") is None
    assert value(samples, "mcp_supervisor_cache_requests_total", backend="memory", result="hit") is not None
    assert samples["process_resident_memory_bytes"]  # the daemon's own process metrics

    # Every metric the shipped dashboard and alert rules use is one we really export.
    exported = set(samples)
    used = set(re.findall(r"mcp_supervisor_[a-z_]+", (REPO / "contrib" / "grafana-dashboard.json").read_text()
                          + (REPO / "contrib" / "prometheus-alerts.yml").read_text()))
    assert used and used <= exported, used - exported


def test_contrib_files_parse() -> None:
    dashboard = json.loads((REPO / "contrib" / "grafana-dashboard.json").read_text())
    assert dashboard["panels"] and all(p["targets"] for p in dashboard["panels"])
    rules = yaml.safe_load((REPO / "contrib" / "prometheus-alerts.yml").read_text())["groups"][0]["rules"]
    names = {rule["alert"] for rule in rules}
    assert {"McpServerDown", "McpServerCrashLoop", "McpServerMemoryNearLimit", "McpServerSlow"} <= names
    assert all(rule["expr"] and rule["annotations"]["summary"] for rule in rules)


def test_request_stats_bound_the_methods_a_client_can_invent() -> None:
    stats = RequestStats()
    for i in range(500):
        stats.record(f"made/up/{i}", Outcome.OK, 0.001)
    assert len(stats.methods) <= 41 and stats.methods["other"].outcomes[0] == 500 - 40


# ---- logs ----------------------------------------------------------------------------------------


def test_logs_follow_prints_lines_written_after_it_started_and_files_keep_them(
        make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("echo"))
    daemon.wait_state("echo", "ready")
    daemon.ctl("call", "echo", "stderr", '{"text": "before following"}')
    wait_for(lambda: "before following" in daemon.ctl("logs", "echo").stdout, 10)

    follow = subprocess.Popen([MCPCTL, "--socket", str(daemon.socket), "logs", "echo", "-n", "5", "-f"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=daemon.env)
    lines: list[str] = []
    out = follow.stdout
    assert out is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(out.readline, "")), daemon=True)
    reader.start()
    try:
        # The recent lines arrive in the same reply as the subscription: after this, it follows.
        wait_for(lambda: any("before following" in line for line in lines), 10, what="recent lines")
        daemon.ctl("call", "echo", "stderr", '{"text": "after following", "lines": 2}')
        wait_for(lambda: sum("after following" in line for line in lines) == 2, 10,
                 what=f"live lines (got {lines})")
        assert sum("before following" in line for line in lines) == 1
    finally:
        follow.terminate()
        follow.wait(5)
        out.close()
        assert follow.stderr is not None
        follow.stderr.close()

    unknown = daemon.ctl("logs", "nope", "-f")
    assert unknown.returncode == 2 and "no server named 'nope'" in unknown.stderr

    log_file = daemon.workdir / "state" / "logs" / "echo.log"
    wait_for(lambda: log_file.exists() and log_file.read_text().count("after following") == 2, 10,
             what="the rotating log file")
    first = next(line for line in log_file.read_text().splitlines() if "before following" in line)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d before following", first)
    assert (os.stat(log_file).st_mode & 0o777) == 0o600


def test_secrets_never_reach_logs_status_or_the_daemon_log(make_daemon: MakeDaemon, workdir: Path) -> None:
    in_env = "envsecret-" + uuid.uuid4().hex
    required = "required-" + uuid.uuid4().hex
    token = "httptoken-" + uuid.uuid4().hex
    secrets = (in_env, required, token)
    config = (
        f'[http]\nlisten = ""\ntoken = "{token}"\n'
        + server_toml("leaky", ECHO, requires_env=["MCPS_TEST_REQUIRED"])
        + f'env = {{ GITHUB_TOKEN = "{in_env}", PLAIN = "not-a-secret-value" }}\n'
        # The credential is passed on the command line; the child prints it as it dies.
        + server_toml("dying", CHAOS, "--exit-before-handshake", "bad credential ${MCPS_TEST_API_KEY}",
                      max_start_failures=1)
    )
    env = daemon_env(workdir, MCPS_TEST_REQUIRED=required, MCPS_TEST_API_KEY=in_env + "-2")
    daemon = make_daemon(config, env=env, serve_args=("--log-format", "json"))
    daemon.wait_state("leaky", "ready")
    failed = daemon.wait_state("dying", "failed")
    assert "bad credential ***" in failed["reason"]

    events = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    events.connect(str(daemon.socket))
    events.sendall(orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "supervisor/events",
                                 "params": {"logs": ["leaky"]}}) + b"\n")
    for secret in secrets:
        for tool, args in (("stderr", {"text": f"stderr says {secret}"}),
                           ("log", {"text": f"notification says {secret}"})):
            assert daemon.ctl("call", "leaky", tool, json.dumps(args)).returncode == 0
    # The child really has it (redaction is about what we show, not what the child gets).
    got = daemon.ctl("call", "leaky", "env", '{"name": "GITHUB_TOKEN"}')
    assert json.loads(got.stdout)["content"][0]["text"] == in_env

    def redacted_logs() -> str | None:
        shown = daemon.ctl("logs", "leaky").stdout
        return shown if shown.count("***") >= 3 else None

    logs = wait_for(redacted_logs, 10)
    assert "stderr says ***" in logs and "not-a-secret-value" not in logs
    events.settimeout(5)
    stream = b""
    while stream.count(b"stderr says") < 3:
        stream += events.recv(65536)
    events.close()
    status = daemon.ctl("status", "--json").stdout
    log_file = daemon.workdir / "state" / "logs" / "leaky.log"
    wait_for(lambda: log_file.exists() and log_file.read_text().count("stderr says ***") == 3, 10)
    daemon.stop()
    daemon_log = daemon.log_text()
    assert "notification says ***" in daemon_log
    for where, text in (("logs", logs), ("events", stream.decode()), ("status", status),
                        ("log file", log_file.read_text()), ("daemon log", daemon_log)):
        for secret in secrets:
            assert secret not in text, f"{secret} leaked into the {where}"
    # --log-format json: one JSON object per line, nothing else on stderr.
    for line in daemon_log.splitlines():
        record = json.loads(line)
        assert set(record) >= {"time", "level", "logger", "message"}


def test_child_log_files_rotate_by_size(tmp_path: Path) -> None:
    files = ChildLogFiles(tmp_path, max_bytes=1000, backups=2)
    for batch in range(5):
        files.write({"srv": [f"batch {batch} line {i} {'x' * 40}\n" for i in range(8)]})
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["srv.log", "srv.log.1", "srv.log.2"]
    assert all(p.stat().st_size <= 1000 for p in tmp_path.iterdir())
    assert "batch 4" in (tmp_path / "srv.log").read_text()
    assert "batch 3" in (tmp_path / "srv.log.1").read_text()


def test_child_log_files_drop_and_count_past_their_bound(tmp_path: Path) -> None:
    files = ChildLogFiles(tmp_path, max_pending=3)
    for i in range(10):
        files.add("srv", f"line {i}")
    assert files.dropped["srv"] == 7
    batch = files._take()
    files.write(batch)
    text = (tmp_path / "srv.log").read_text()
    assert "line 2" in text and "line 3" not in text and "[mcp-supervisor: 7 lines dropped" in text


def test_journald_gets_priorities_and_redacted_lines(tmp_path: Path) -> None:
    import logging

    with open(tmp_path / "stream", "w") as handle:
        st = os.fstat(handle.fileno())
        assert stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, handle.fileno())
        assert not stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"}, handle.fileno())
        assert not stderr_is_journal({}, handle.fileno())
    record = logging.LogRecord("mcp_supervisor.server", logging.WARNING, __file__, 1, "echo: %s", ("x",),
                               None)
    assert JournalFormatter().format(record) == "<4>mcp_supervisor.server: echo: x"
    REDACT.update(["hunter2-secret"])
    try:
        assert REDACT("token=hunter2-secret.") == "token=***."
    finally:
        REDACT.update([])


# ---- systemd units -------------------------------------------------------------------------------


def test_shipped_units_are_the_rendered_template() -> None:
    assert (REPO / "systemd" / "mcp-supervisor.service").read_text() == render(user=False)
    assert (REPO / "systemd" / "user" / "mcp-supervisor.service").read_text() == render(user=True)
    system = render(user=False)
    for line in ("Type=notify", "NotifyAccess=main", "WatchdogSec=30s", "ExecReload=/bin/kill -HUP $MAINPID",
                 "KillMode=mixed", "Restart=on-failure", "User=mcp-supervisor",
                 "RuntimeDirectory=mcp-supervisor", "StateDirectory=mcp-supervisor",
                 "ConfigurationDirectory=mcp-supervisor",
                 "NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes", "ProtectHome=read-only"):
        assert line in system.splitlines(), line
    assert "MemoryDenyWriteExecute" not in system.replace("#   MemoryDenyWriteExecute", "")  # node's JIT


def test_service_install_writes_units_that_systemd_accepts(tmp_path: Path) -> None:
    for flag in ((), ("--user",)):
        unit_dir = tmp_path / ("user" if flag else "system")
        result = subprocess.run([MCPCTL, "service", "install", *flag, "--unit-dir", str(unit_dir)],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        unit = unit_dir / "mcp-supervisor.service"
        text = unit.read_text()
        assert f"ExecStart={MCPCTL} --config %E/mcp-supervisor/fleet.toml serve" in text
        assert "systemctl" + (" --user" if flag else "") + " enable --now mcp-supervisor" in result.stdout
        assert ("useradd --system" in result.stdout) == (not flag)
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
        # A user manager needs a runtime dir even to verify; CI has no login session.
        runtime = tmp_path / "run"
        runtime.mkdir(mode=0o700, exist_ok=True)
        verify = subprocess.run([analyze, *(["--user"] if flag else []), "verify", str(unit)],
                                capture_output=True, text=True, timeout=60,
                                env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning",
                                     "XDG_RUNTIME_DIR": str(runtime)})
        problems = [line for line in (verify.stdout + verify.stderr).splitlines()
                    if "mcp-supervisor.service" in line or "Failed" in line]
        assert verify.returncode == 0 and not problems, verify.stdout + verify.stderr

    printed = subprocess.run([MCPCTL, "--config", "/srv/my fleet.toml", "service", "print", "--mcpctl",
                              "/opt/x/bin/mcpctl"], capture_output=True, text=True, timeout=30)
    assert 'ExecStart=/opt/x/bin/mcpctl --config "/srv/my fleet.toml" serve' in printed.stdout
