"""Secrets the daemon reads itself: env files, `mcpctl secret`, systemd credentials."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from supervisor.config.envfiles import EnvFileError, parse, quote, read_env_file, write_assignment

from .conftest import Daemon, MakeDaemon, daemon_env, server_toml, wait_for


@pytest.mark.parametrize(("text", "expected"), [
    ("A=1\n", {"A": "1"}),
    ("export A=1\n# comment\n\nB = two words  # trailing\n", {"A": "1", "B": "two words"}),
    ("A='lit $x \\n #'\n", {"A": "lit $x \\n #"}),
    ('A="x\\ny \\"q\\" \\\\"\n', {"A": 'x\ny "q" \\'}),
    ("A=\n", {"A": ""}),
    ("A=1\nA=2\n", {"A": "2"}),
])
def test_parse_dotenv(text: str, expected: dict[str, str]) -> None:
    assert parse(text, Path("f")) == expected


@pytest.mark.parametrize("text", ["just words\n", "A='open\n", '1A=x\n'])
def test_parse_names_the_bad_line(text: str) -> None:
    with pytest.raises(EnvFileError, match=r"^f:1: "):
        parse(text, Path("f"))


@pytest.mark.parametrize("value", ["plain", "with space", "it's", 'q"uote', "multi\nline", "#hash", "a\\b"])
def test_quote_round_trips(value: str) -> None:
    assert parse(f"V={quote(value)}\n", Path("f")) == {"V": value}


def test_write_assignment_keeps_every_other_line() -> None:
    text = "# keys\nexport A=1\nB=2 # note\n"
    assert write_assignment(text, "A", "new") == "# keys\nA=new\nB=2 # note\n"
    assert write_assignment(text, "C", "3") == text + "C=3\n"
    assert write_assignment(text, "B", None) == "# keys\nexport A=1\n"
    assert write_assignment("A=1", "B", "2") == "A=1\nB=2\n"


def test_a_file_other_users_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secrets.env"
    path.write_text("A=1\n")
    path.chmod(0o644)
    with pytest.raises(EnvFileError, match=r"readable by other users \(mode 0644\).*chmod 600"):
        read_env_file(path, missing_ok=True)
    path.chmod(0o600)
    assert read_env_file(path, missing_ok=True) == {"A": "1"}
    assert read_env_file(tmp_path / "absent.env", missing_ok=True) == {}
    with pytest.raises(EnvFileError, match="does not exist"):
        read_env_file(tmp_path / "absent.env", missing_ok=False)


KEYED = server_toml("keyed", requires_env=["R17_API_KEY"]) + 'env = { R17_API_KEY = "${R17_API_KEY}" }\n'


def env_of(daemon: Daemon, server: str, var: str) -> str:
    called = daemon.ctl("call", server, "env", json.dumps({"name": var}))
    assert called.returncode == 0, called.stderr
    return str(json.loads(called.stdout)["content"][0]["text"])


def test_secret_set_starts_the_waiting_server_and_restart_picks_up_a_new_value(make_daemon: MakeDaemon,
                                                                               workdir: Path) -> None:
    """Regression: a key exported after the daemon started never reached it. `secret set` writes
    the daemon's env_file, the waiting server starts with it, and a changed value is used after
    `mcpctl restart`, without restarting the daemon. Values are never printed."""
    daemon = make_daemon(server_toml("echo") + KEYED)
    unavailable = daemon.wait_state("keyed", "unavailable")
    assert "run 'mcpctl secret set keyed R17_API_KEY'" in unavailable["reason"]
    proc = daemon.ctl("secret", "set", "keyed", "R17_API_KEY", input=b"first-secret-value\n")
    assert proc.returncode == 0, proc.stderr
    assert "keyed: ready" in proc.stdout
    secrets = workdir / "xdg-config" / "mcp-supervisor" / "secrets.env"
    assert secrets.read_text() == "R17_API_KEY=first-secret-value\n"
    assert (secrets.stat().st_mode & 0o777) == 0o600
    assert env_of(daemon, "keyed", "R17_API_KEY") == "first-secret-value"

    again = daemon.ctl("secret", "set", "keyed", "R17_API_KEY", input=b"second-secret-value")
    assert "mcpctl restart keyed" in again.stdout
    assert daemon.ctl("restart", "keyed").returncode == 0
    assert env_of(daemon, "keyed", "R17_API_KEY") == "second-secret-value"

    listed = daemon.ctl("secret", "list", "keyed")
    assert listed.stdout.strip() == f"R17_API_KEY (required): {secrets}"
    everything = daemon.ctl("secret", "list")
    assert "R17_API_KEY" in everything.stdout
    daemon.ctl("call", "keyed", "stderr", json.dumps({"text": "key is second-secret-value", "lines": 1}))
    wait_for(lambda: "key is ***" in daemon.ctl("logs", "keyed").stdout, 10, what="masked line")
    for output in (proc.stdout + proc.stderr, listed.stdout, everything.stdout, daemon.log_text()):
        assert "secret-value" not in output

    assert daemon.ctl("secret", "unset", "keyed", "R17_API_KEY").returncode == 0
    assert secrets.read_text() == ""
    daemon.ctl("restart", "keyed")
    daemon.wait_state("keyed", "unavailable")


def test_a_server_env_file_is_read_at_spawn_and_refused_when_others_can_read_it(make_daemon: MakeDaemon,
                                                                                workdir: Path) -> None:
    own = workdir / "keyed.env"
    own.write_text("R17_API_KEY=from-own-file\n")
    own.chmod(0o640)
    daemon = make_daemon(KEYED + f'env_file = "{own}"\n')
    refused = daemon.wait_state("keyed", "unavailable")
    assert "readable by other users (mode 0640)" in refused["reason"]
    assert f"chmod 600 {own}" in refused["reason"]
    own.chmod(0o600)
    assert daemon.ctl("start", "keyed").returncode == 0
    assert env_of(daemon, "keyed", "R17_API_KEY") == "from-own-file"
    # `secret set` writes a server's own file when it has one
    daemon.ctl("secret", "set", "keyed", "R17_API_KEY", input=b"via-secret-set")
    assert own.read_text() == "R17_API_KEY=via-secret-set\n"


def test_systemd_credentials_are_read(make_daemon: MakeDaemon, workdir: Path) -> None:
    """`LoadCredential=R17_API_KEY:...` puts a file in $CREDENTIALS_DIRECTORY; it counts as set."""
    creds = workdir / "creds"
    creds.mkdir()
    (creds / "R17_API_KEY").write_text("from-credential\n")
    daemon = make_daemon(KEYED, env=daemon_env(workdir, CREDENTIALS_DIRECTORY=str(creds)))
    daemon.wait_state("keyed", "ready")
    assert env_of(daemon, "keyed", "R17_API_KEY") == "from-credential"


def test_check_prerequisites_asks_the_running_daemon(make_daemon: MakeDaemon, workdir: Path) -> None:
    """Regression: `check --prerequisites` judged by the CLI's own environment. With a daemon
    running it reports what the daemon sees (its env files included)."""
    daemon = make_daemon(KEYED)
    daemon.wait_state("keyed", "unavailable")
    env = {**daemon.env, "R17_API_KEY": "only-in-this-shell"}
    import subprocess

    from .conftest import MCPCTL
    check = subprocess.run([MCPCTL, "--socket", str(daemon.socket), "--config", str(daemon.config),
                            "check", "--prerequisites"], capture_output=True, text=True, env=env,
                           timeout=60)
    assert check.returncode == 1, check.stdout
    assert "as the running daemon sees them" in check.stdout
    assert "mcpctl secret set keyed R17_API_KEY" in check.stdout
    daemon.ctl("secret", "set", "keyed", "R17_API_KEY", input=b"now-the-daemon-has-it")
    again = daemon.ctl("check", "--prerequisites")
    assert again.returncode == 0, again.stdout
    assert os.environ.get("R17_API_KEY") is None
