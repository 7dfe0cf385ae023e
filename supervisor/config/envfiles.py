"""Secrets the daemon reads itself: dotenv files and systemd credentials, read at every spawn.

Where a child's variables come from, later wins:

    the daemon's own environment
    $CREDENTIALS_DIRECTORY       systemd `LoadCredential=NAME:PATH`: one file per variable
    [supervisor] env_file        default $XDG_CONFIG_HOME/mcp-supervisor/secrets.env
    [servers.NAME] env_file      that server only

They are read each time a server is about to start, so `mcpctl secret set brave BRAVE_API_KEY`
followed by `mcpctl restart brave` uses the new key without restarting the daemon. A file that
other users can read or write (any group/other bit in its mode), or that someone else owns, is
refused with a reason that says how to fix it: a key in a world-readable file is already leaked.

The dotenv format: `NAME=value` lines, optional `export `, `#` comments, values bare (trailing
spaces trimmed, ` #` starts a comment), in single quotes (literal) or in double quotes (`\\n`,
`\\"`, `\\\\` escapes). `write_assignment` edits one line and keeps every other line as it was.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LINE = re.compile(r"^\s*(?:export\s+)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?P<value>.*?)\s*$")
MAX_FILE_BYTES = 1024 * 1024  # a secrets file is a few lines; anything bigger is not one


class EnvFileError(Exception):
    """A secrets file that cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class Loaded:
    """Variables read for one spawn, and what went wrong on the way (refused files)."""

    values: Mapping[str, str]
    problems: tuple[str, ...] = ()


def default_env_file(environ: Mapping[str, str]) -> Path:
    xdg = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".config")
    return Path(xdg) / "mcp-supervisor" / "secrets.env"


def supervisor_env_file(configured: str | None, environ: Mapping[str, str]) -> Path | None:
    """The daemon-wide file: `[supervisor] env_file`, its default when unset, None for `""`."""
    if configured is None:
        return default_env_file(environ)
    return Path(configured) if configured else None


def _unquote(raw: str, path: Path, lineno: int) -> str:
    if raw[:1] == "'":
        end = raw.find("'", 1)
        if end < 0:
            raise EnvFileError(f"{path}:{lineno}: unterminated ' quote")
        return raw[1:end]
    if raw[:1] == '"':
        out: list[str] = []
        i = 1
        while i < len(raw):
            ch = raw[i]
            if ch == "\\" and i + 1 < len(raw):
                nxt = raw[i + 1]
                out.append({"n": "\n", "t": "\t", "r": "\r"}.get(nxt, nxt))
                i += 2
                continue
            if ch == '"':
                return "".join(out)
            out.append(ch)
            i += 1
        raise EnvFileError(f'{path}:{lineno}: unterminated " quote')
    comment = re.search(r"\s#", raw)
    return (raw[: comment.start()] if comment else raw).strip()


def parse(text: str, path: Path) -> dict[str, str]:
    """dotenv text → variables. Raises EnvFileError naming `path:line` for a malformed line."""
    values: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise EnvFileError(f"{path}:{lineno}: expected NAME=value")
        values[match["name"]] = _unquote(match["value"], path, lineno)
    return values


def check_private(path: Path, st: os.stat_result) -> None:
    """Refuse a file other users could read or change."""
    if not stat.S_ISREG(st.st_mode):
        raise EnvFileError(f"{path} is not a regular file")
    if st.st_uid not in (os.geteuid(), 0):
        raise EnvFileError(f"{path} belongs to uid {st.st_uid}, not to this user: refused")
    if st.st_mode & 0o077:
        raise EnvFileError(f"{path} is readable by other users (mode {stat.S_IMODE(st.st_mode):04o}): "
                           f"refused; run 'chmod 600 {path}'")


def read_env_file(path: Path, *, missing_ok: bool) -> dict[str, str]:
    """Blocking: the variables in `path` (empty when it does not exist and `missing_ok`)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        if missing_ok:
            return {}
        raise EnvFileError(f"env_file {path} does not exist") from None
    except OSError as exc:
        raise EnvFileError(f"env_file {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as handle:
        check_private(path, os.fstat(handle.fileno()))
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise EnvFileError(f"env_file {path} is larger than {MAX_FILE_BYTES} bytes")
    return parse(data.decode("utf-8", "replace"), path)


def read_credentials(environ: Mapping[str, str]) -> dict[str, str]:
    """Blocking: systemd credentials (`$CREDENTIALS_DIRECTORY/NAME`, one file per variable).

    systemd makes the directory readable by the service alone, so no mode check; names that are
    not variable names are skipped, one trailing newline is dropped."""
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return {}
    values: dict[str, str] = {}
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return {}
    for entry in entries:
        if not NAME.fullmatch(entry.name) or not entry.is_file():
            continue
        try:
            with open(entry.path, "rb") as handle:
                data = handle.read(MAX_FILE_BYTES)
        except OSError:
            continue
        text = data.decode("utf-8", "replace")
        values[entry.name] = text[:-1] if text.endswith("\n") else text
    return values


def load(environ: Mapping[str, str], daemon_file: Path | None, server_file: Path | None) -> Loaded:
    """Blocking: every secret source for one spawn, merged (later wins). A refused daemon-wide
    file is a problem noted (its servers may still start); the caller decides about a refused
    server file."""
    values: dict[str, str] = {}
    problems: list[str] = []
    values.update(read_credentials(environ))
    if daemon_file is not None:
        try:
            values.update(read_env_file(daemon_file, missing_ok=True))
        except EnvFileError as exc:
            problems.append(str(exc))
    if server_file is not None:
        values.update(read_env_file(server_file, missing_ok=False))
    return Loaded(values, tuple(problems))


# ---- writing (mcpctl secret) -----------------------------------------------------------------


def quote(value: str) -> str:
    """A value as dotenv text that `parse` reads back unchanged."""
    if value and re.fullmatch(r"[A-Za-z0-9_./:@%+,=-]+", value):
        return value
    if "'" not in value and "\n" not in value and "\r" not in value:
        return f"'{value}'"
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\r", "\\r"))
    return f'"{escaped}"'


def write_assignment(text: str, name: str, value: str | None) -> str:
    """`text` with `name` set to `value` (its existing line replaced in place, else appended), or
    with its lines removed when `value` is None. Every other line is kept byte for byte."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    done = False
    for line in lines:
        match = _LINE.match(line)
        if match is not None and match["name"] == name:
            if value is not None and not done:
                out.append(f"{name}={quote(value)}\n")
                done = True
            continue
        out.append(line)
    if value is not None and not done:
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n"
        out.append(f"{name}={quote(value)}\n")
    return "".join(out)


def update_file(path: Path, name: str, value: str | None) -> bool:
    """Blocking: set (or with None remove) `name` in `path`, atomically, mode 0600 in a 0700
    directory. True when the file changed."""
    current = read_env_file(path, missing_ok=True)  # refuses a file others can read, as spawn does
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if value is None and name not in current:
        return False
    new = write_assignment(text, name, value)
    if new == text:
        return False
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(new)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return True
