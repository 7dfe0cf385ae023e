"""Secrets and trust boundaries (issue 16): masking, what a child gets, file modes.

The system tests run the real daemon and grep every output and every file it wrote for the secret
values; the unit tests pin what `supervisor.config.secrets_mask` counts as a secret.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from supervisor.config import load_config, parse_config
from supervisor.config.package import PackageSpec
from supervisor.config.secrets_mask import Masker, is_secret_name, mask_urls, server_secrets, url_passwords
from supervisor.core.installer import install_steps
from supervisor.errors import ConfigError

from .conftest import CHAOS, ECHO, MCPCTL, PY, MakeDaemon, daemon_env, server_toml, wait_for


@pytest.mark.parametrize(("name", "secret"), [
    ("GITHUB_TOKEN", True), ("GITHUB_PERSONAL_ACCESS_TOKEN", True), ("BRAVE_API_KEY", True),
    ("apiKey", True), ("--api-key", True), ("--token", True), ("DB_PASSWORD", True), ("DB_PWD", True),
    ("AWS_SECRET_ACCESS_KEY", True), ("SENTRY_DSN", True),
    ("PATH", False), ("PWD", False), ("OLDPWD", False), ("MONKEY", False), ("KEYBOARD_LAYOUT", False),
    ("POSTGRES_URL", False), ("HOME", False), ("--verbose", False),
])
def test_credential_names_are_recognised_by_word_not_by_substring(name: str, secret: bool) -> None:
    """PATH is not a PAT and MONKEY holds no KEY: names are split into words before matching."""
    assert is_secret_name(name) is secret


def test_url_passwords_are_found_and_masked_with_or_without_a_user() -> None:
    text = "postgres://app:s3cr%40t@db:5432/x and redis://:hunter22@cache:6379/0 and https://example.com/a@b"
    assert url_passwords(text) == ["s3cr%40t", "s3cr@t", "hunter22"]
    assert mask_urls(text) == "postgres://app:***@db:5432/x and redis://:***@cache:6379/0 and https://example.com/a@b"


def test_server_secrets_cover_defaults_flags_env_keys_and_url_passwords() -> None:
    """`${GITHUB_TOKEN:-}` (a default) counted as a reference too: it used to be left out."""
    config = parse_config(
        '[servers.s]\ncommand = "srv"\n'
        'args = ["--token", "${GITHUB_TOKEN:-}", "--api-key=${KEYLESS}", "${POSTGRES_URL}", '
        '"${DEFAULTED_SECRET:-fallback-secret}"]\n'
        'env = { API_KEY = "literal-secret", DB = "${REDIS_URL}", PLAIN = "visible-value" }\n')
    environ = {"GITHUB_TOKEN": "ghp_abcdef123", "KEYLESS": "flagvalue123",
               "POSTGRES_URL": "postgres://u:pgpassword@h/db", "REDIS_URL": "redis://:redispass@h:1"}
    assert server_secrets(config.servers["s"], environ) == {
        "ghp_abcdef123", "flagvalue123", "pgpassword", "fallback-secret", "literal-secret", "redispass"}
    mask = Masker()
    mask.update(server_secrets(config.servers["s"], environ))
    assert mask("token ghp_abcdef123, pw pgpassword, visible-value") == "token ***, pw ***, visible-value"


def _walk_text(root: Path) -> dict[Path, str]:
    return {p: p.read_text(errors="replace") for p in root.rglob("*") if p.is_file()}


def test_secret_values_appear_in_no_output_and_no_file_after_a_failing_start(make_daemon: MakeDaemon,
                                                                             workdir: Path) -> None:
    """A credential-named variable with a default in args and passwords inside URLs (as the shipped
    fleet passes them) used to be printed by status, status --json, logs, the log files and the
    daemon log. After a failing start, none of the values is anywhere."""
    token = "ghp_" + uuid.uuid4().hex
    pg_pw = "pgpw" + uuid.uuid4().hex[:12]
    redis_pw = "rdpw" + uuid.uuid4().hex[:12]
    secrets = (token, pg_pw, redis_pw)
    bare = ("import os, sys, urllib.parse; u = urllib.parse.urlsplit(os.environ['DB']); "
            "print('login failed, password ' + u.password, file=sys.stderr); sys.exit(3)")
    config = (
        '[servers.dying]\n'
        f'command = "{PY}"\n'
        f'args = ["{CHAOS}", "--exit-before-handshake", '
        '"cannot connect to ${POSTGRES_URL} or ${REDIS_URL} with ${GITHUB_TOKEN:-}"]\n'
        'max_start_failures = 1\n'
        '[servers.bare]\n'
        f'command = "{PY}"\n'
        f'args = ["-c", "{bare}"]\n'
        'env = { DB = "${POSTGRES_URL}" }\n'
        'max_start_failures = 1\n'
    )
    env = daemon_env(workdir, GITHUB_TOKEN=token, POSTGRES_URL=f"postgres://app:{pg_pw}@db.internal/app",
                     REDIS_URL=f"redis://:{redis_pw}@cache.internal:6379/0")
    daemon = make_daemon(config, env=env)
    dying = daemon.wait_state("dying", "failed")
    assert ("cannot connect to postgres://app:***@db.internal/app or redis://:***@cache.internal"
            in dying["reason"])
    bare_state = daemon.wait_state("bare", "failed")
    assert "login failed, password ***" in bare_state["reason"]

    outputs = {
        "status": daemon.ctl("status").stdout,
        "status --json": daemon.ctl("status", "--json").stdout,
        "logs dying": daemon.ctl("logs", "dying").stdout,
        "logs bare": daemon.ctl("logs", "bare").stdout,
    }
    assert "***" in outputs["logs dying"] and "***" in outputs["logs bare"]
    # Which variables a server uses, by name, so a user can debug without seeing a value.
    assert dying["variables"] == {"set": ["GITHUB_TOKEN", "POSTGRES_URL", "REDIS_URL"], "unset": []}
    assert "dying  set: GITHUB_TOKEN, POSTGRES_URL, REDIS_URL" in outputs["status"]
    assert "variables set: GITHUB_TOKEN, POSTGRES_URL, REDIS_URL" in outputs["logs dying"]
    log_dir = daemon.workdir / "state" / "logs"
    daemon.stop()
    outputs["daemon log"] = daemon.log_text()
    assert "***" in outputs["daemon log"]
    assert "bare: starting: variables set: DB, POSTGRES_URL" in outputs["daemon log"]
    files = _walk_text(daemon.workdir / "state")
    assert log_dir / "dying.log" in files and log_dir / "bare.log" in files
    for path, text in files.items():
        outputs[str(path)] = text
    for where, text in outputs.items():
        for secret in secrets:
            assert secret not in text, f"{secret} leaked into {where}"


# -- config: names, commands, option smuggling ------------------------------------------------------


def _config_error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "fleet.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    return str(info.value)


@pytest.mark.parametrize("name", [".", "..", "-rf", ".hidden"])
def test_dot_and_option_like_server_names_are_refused(tmp_path: Path, name: str) -> None:
    """`[servers.".."]` used to be accepted: the child's HOME became the whole state directory."""
    message = _config_error(tmp_path, f'[http]\nlisten = ""\n\n[servers."{name}"]\ncommand = "x"\n')
    key = name if name == "-rf" else f'"{name}"'
    assert message == (f'{tmp_path / "fleet.toml"}:4: servers.{key}: invalid server name "{name}": '
                       'must start with a letter or digit (it names a directory: ".", ".." and hidden '
                       "or option-like names are refused)")


def test_option_smuggled_as_a_requirement_is_refused_with_file_line_key(tmp_path: Path) -> None:
    """`extra_requires = ["--index-url=..."]` used to pass `check` and make `mcpctl install` fetch the
    pinned name from another index."""
    message = _config_error(tmp_path, '[servers.fetch]\ncommand = "mcp-server-fetch"\n'
                                      'package = "pypi:mcp-server-fetch==2025.4.7"\n'
                                      'extra_requires = ["mcp<2", "--index-url=https://evil.example/simple"]\n')
    assert message == (f"{tmp_path / 'fleet.toml'}:4: servers.fetch.extra_requires[1]: "
                       '"--index-url=https://evil.example/simple" is an option to npm or pip, not a '
                       "package: refused (an option here could make `mcpctl install` fetch from another "
                       "index or run other code)")


def test_installer_ends_options_before_the_packages(tmp_path: Path) -> None:
    """The second lock: even a requirement that got past the config cannot be an installer option."""
    spec = PackageSpec.parse("npm:@scope/name@1.2.3")
    [(_, npm)] = install_steps(spec, ("other@2.0.0",), tmp_path, npm="npm")
    assert npm[npm.index("--") + 1:] == ["@scope/name@1.2.3", "other@2.0.0"]
    with pytest.raises(ValueError, match="is an option, not a package"):
        install_steps(spec, ("--registry=https://evil.example",), tmp_path, npm="npm")


def test_relative_command_resolves_against_the_config_directory_in_check_and_at_spawn(
        make_daemon: MakeDaemon, workdir: Path) -> None:
    """A relative `command` used to pass `check` (resolved against the shell's cwd) but fail to spawn
    (resolved against the child's cwd, its own HOME). Both now use the config file's directory."""
    bin_dir = workdir / "bin"
    bin_dir.mkdir()
    script = bin_dir / "echo-server"
    script.write_text(f"#!/bin/sh\nexec {PY} {ECHO} \"$@\"\n")
    script.chmod(0o755)
    daemon = make_daemon('[servers.rel]\ncommand = "./bin/echo-server"\n', start=False)
    elsewhere = workdir / "elsewhere"
    elsewhere.mkdir()
    check = subprocess.run([MCPCTL, "--config", str(daemon.config), "check", "--prerequisites"],
                           capture_output=True, text=True, cwd=elsewhere, env=daemon.env, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert str(script) in check.stdout
    daemon.start()
    assert daemon.wait_state("rel", "ready")["state"] == "ready"


# -- file modes -------------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_daemon_directories_are_0700_and_files_0600_whatever_the_umask(make_daemon: MakeDaemon,
                                                                       workdir: Path) -> None:
    """Outside systemd the state dir and children's HOME/TMPDIR were 0755 and the pid registry 0644,
    so other local users could read what children wrote. Started under umask 000, every directory
    the daemon makes is 0700 and every file 0600, a file a child writes into its HOME included."""
    # Like the memory server: the child writes a file into its HOME, then serves.
    writer = ("import os, runpy, sys; open(os.path.join(os.environ['HOME'], 'graph.json'), 'w').write('x'); "
              f"sys.argv = ['{ECHO}']; runpy.run_path('{ECHO}', run_name='__main__')")
    daemon = make_daemon(f'[servers.echo]\ncommand = "{PY}"\nargs = ["-c", "{writer}"]\n'
                         + server_toml("chatty", CHAOS, "--stderr-spam"), start=False)
    old = os.umask(0)
    try:
        daemon.start()
    finally:
        os.umask(old)
    daemon.wait_state("echo", "ready")
    state = daemon.workdir / "state"
    log_file = state / "logs" / "chatty.log"
    wait_for(lambda: log_file.exists(), 10, what="chatty's log file")
    pids = daemon.socket.with_name(daemon.socket.name + ".pids")
    for directory in (state, state / "home", state / "home" / "echo", state / "tmp" / "echo", state / "logs"):
        assert _mode(directory) == 0o700, (directory, oct(_mode(directory)))
    for file in (log_file, pids, daemon.socket, state / "home" / "echo" / "graph.json"):
        assert _mode(file) == 0o600, (file, oct(_mode(file)))


@pytest.mark.parametrize("problem", ["mode", "owner"])
def test_an_existing_socket_directory_others_can_reach_is_refused(make_daemon: MakeDaemon, workdir: Path,
                                                                  problem: str) -> None:
    """Whoever can write to the socket's directory can put their own socket where mcpctl and the
    bridges connect: an existing directory with a wider mode or another owner is refused."""
    sock_dir = workdir / "run"
    sock_dir.mkdir(mode=0o700)
    if problem == "mode":
        sock_dir.chmod(0o755)
    else:
        if os.geteuid() != 0:
            pytest.skip("changing a directory's owner needs root")
        os.chown(sock_dir, 65534, 65534)
    daemon = make_daemon(server_toml("echo"), start=False)
    proc = subprocess.run([MCPCTL, "--config", str(daemon.config), "--socket", str(sock_dir / "ctl.sock"),
                           "serve"], capture_output=True, text=True, env=daemon.env, timeout=60)
    assert proc.returncode == 1
    if problem == "mode":
        assert (f"mcpctl serve: socket directory {sock_dir} is mode 0755, so group or others can reach it: "
                f"refusing (chmod 700 {sock_dir}, or choose another --socket)") in proc.stderr
    else:
        assert f"mcpctl serve: socket directory {sock_dir} belongs to uid 65534" in proc.stderr
    assert not (sock_dir / "ctl.sock").exists()
