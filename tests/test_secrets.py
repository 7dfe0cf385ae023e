"""Secrets and trust boundaries (issue 16): masking, what a child gets, file modes.

The system tests run the real daemon and grep every output and every file it wrote for the secret
values; the unit tests pin what `supervisor.secrets_mask` counts as a secret.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from supervisor.config import parse_config
from supervisor.secrets_mask import Masker, is_secret_name, mask_urls, server_secrets, url_passwords

from .conftest import CHAOS, PY, daemon_env


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


def test_secret_values_appear_in_no_output_and_no_file_after_a_failing_start(make_daemon, workdir):
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
