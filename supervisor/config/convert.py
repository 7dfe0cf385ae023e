"""One converter per kind of config value, and the schemas that map each key to its converter.

A converter takes the TOML value and returns the typed value, or raises `_Bad` with a message that
shows what was expected next to what was found (and the key path below the key, for nested
values); the loader turns that into a `ConfigError` at `file:line: key.path`. Unknown keys get a
"did you mean" hint.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

import orjson

from supervisor.config.expand import _parse_refs, expand
from supervisor.config.model import ListPolicy, RateLimit, _split_listen
from supervisor.config.package import PackageSpec, PackageSpecError
from supervisor.units import parse_duration, parse_size


class _Bad(Exception):
    def __init__(self, message: str, sub: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.sub = sub

    def under(self, key: str) -> _Bad:
        return _Bad(self.message, (key, *self.sub))


_Conv = Callable[[Any], Any]


def _show(value: object) -> str:
    """A TOML value the way the user wrote it, for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"') + '"'
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return str(value)


def _hint(key: str, choices: Iterable[str]) -> str:
    options = sorted(choices)
    close = difflib.get_close_matches(key, options, n=1)
    if close:
        return f"unknown key (did you mean '{close[0]}'?)"
    if len(options) <= 8:
        return "unknown key (expected one of: " + ", ".join(options) + ")"
    return "unknown key"


def _check_refs(value: str) -> None:
    try:
        _parse_refs(value)
    except ValueError as exc:
        raise _Bad(str(exc)) from None


def _string(*, nonempty: bool = True, raw_refs: bool = False) -> _Conv:
    def conv(value: Any) -> str:
        if not isinstance(value, str):
            raise _Bad(f"expected a string, got {_show(value)}")
        if nonempty and not value.strip():
            raise _Bad("must not be empty")
        if raw_refs:
            _check_refs(value)
        return value

    return conv


def _expanded(environ: Mapping[str, str], *, empty_is_none: bool = False) -> _Conv:
    def conv(value: Any) -> str | None:
        if not isinstance(value, str):
            raise _Bad(f"expected a string, got {_show(value)}")
        try:
            out = expand(value, environ)
        except ValueError as exc:
            raise _Bad(str(exc)) from None
        return (out or None) if empty_is_none else out

    return conv


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad(f"expected true or false, got {_show(value)}")
    return value


def _integer(minimum: int) -> _Conv:
    def conv(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(f"expected an integer, got {_show(value)}")
        if value < minimum:
            raise _Bad(f"must be at least {minimum}, got {value}")
        return value

    return conv


def _number(minimum: float, *, exclusive: bool = False) -> _Conv:
    def conv(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _Bad(f"expected a number, got {_show(value)}")
        if value < minimum or (exclusive and value == minimum):
            raise _Bad(f"must be {'greater than' if exclusive else 'at least'} {minimum:g}, got {value}")
        return float(value)

    return conv


def _duration(*, positive: bool = True) -> _Conv:
    def conv(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise _Bad(f'expected a duration like "15s", got {_show(value)}')
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise _Bad(f'expected a duration like "15s" (units ms, s, m, h, d), got {_show(value)}') from None
        if positive and seconds <= 0:
            raise _Bad(f"must be longer than 0s, got {_show(value)}")
        return seconds

    return conv


def _size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _Bad(f'expected a size like "512MiB", got {_show(value)}')
    try:
        size = parse_size(value)
    except ValueError:
        raise _Bad(
            f'expected a size like "512MiB" (units B, KB, MB, GB, KiB, MiB, GiB), got {_show(value)}'
        ) from None
    if size <= 0:
        raise _Bad(f"must be larger than 0, got {_show(value)}")
    return size


def _choice(*options: str, lower: bool = False) -> _Conv:
    def conv(value: Any) -> str:
        if not isinstance(value, str):
            raise _Bad(f"expected a string, got {_show(value)}")
        got = value.lower() if lower else value
        if got not in options:
            raise _Bad(f"expected one of {', '.join(repr(o) for o in options)}, got {_show(value)}")
        return got

    return conv


def _array(item: _Conv) -> _Conv:
    def conv(value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise _Bad(f"expected an array, got {_show(value)}")
        out: list[Any] = []
        for n, element in enumerate(value):
            try:
                out.append(item(element))
            except _Bad as bad:
                raise bad.under(f"[{n}]") from None
        return tuple(out)

    return conv


def _table_of(item: _Conv, *, key_check: Callable[[str], str | None] | None = None) -> _Conv:
    """A table with free keys and uniformly converted values (env, tool_timeouts)."""

    def conv(value: Any) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise _Bad(f"expected a table, got {_show(value)}")
        out: dict[str, Any] = {}
        for key, element in value.items():
            problem = key_check(key) if key_check else None
            if problem:
                raise _Bad(problem, (key,))
            try:
                out[key] = item(element)
            except _Bad as bad:
                raise bad.under(key) from None
        return MappingProxyType(out)

    return conv


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _env_name_problem(key: str) -> str | None:
    if _ENV_NAME.fullmatch(key):
        return None
    return f'invalid environment variable name "{key}": use letters, digits and "_" (no leading digit)'


def _env_value(value: Any) -> str:
    if not isinstance(value, str):
        raise _Bad(f'must be a string, got {_show(value)} (quote it: "{_show(value)}")')
    _check_refs(value)
    return value


def _env_name(value: Any) -> str:
    if not isinstance(value, str):
        raise _Bad(f"expected a string, got {_show(value)}")
    problem = _env_name_problem(value)
    if problem:
        raise _Bad(problem)
    return value


def _root(value: Any) -> str:
    text: str = _string(raw_refs=True)(value)
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", text)
    if scheme and scheme.group(1).lower() != "file":
        raise _Bad(f"expected a path or a file:// URI, got {_show(value)}")
    return text


def _package(value: Any) -> str:
    text: str = _string()(value)
    try:
        PackageSpec.parse(text)
    except PackageSpecError as exc:
        raise _Bad(f"{exc}, got {_show(value)}") from None
    return text


def _requirement(value: Any) -> str:
    """One `extra_requires` entry: an npm spec or pip requirement, never an installer option."""
    text: str = _string()(value)
    if text.lstrip().startswith("-"):
        raise _Bad(f"{_show(value)} is an option to npm or pip, not a package: refused (an option here "
                   "could make `mcpctl install` fetch from another index or run other code)")
    return text


def _anchored_command(command: str, config_dir: str | None) -> str:
    """A relative `command` with a "/" ("./server.py", "bin/srv") is relative to the config file's
    directory, so `check` and the spawn (whose cwd is the child's own) find the same file."""
    if config_dir is None or "/" not in command or command.startswith(("/", "${", "~")):
        return command
    joined = os.path.join(config_dir.replace("$", "$$"), command)
    return joined if "${" in command else os.path.normpath(joined)


def _rate_limit(value: Any) -> RateLimit:
    """`"100/min"`, or `{ rate = "100/min", burst = 20 }` to choose the burst."""
    if isinstance(value, dict):
        converted = _convert_table(value, {"rate": _string(), "burst": _integer(1)})
        if "rate" not in converted:
            raise _Bad("missing required key", ("rate",))
        try:
            return RateLimit.parse(converted["rate"], converted.get("burst"))
        except ValueError as exc:
            raise _Bad(str(exc), ("rate",)) from None
    if not isinstance(value, str):
        raise _Bad(f'expected a rate like "100/min", got {_show(value)}')
    try:
        return RateLimit.parse(value)
    except ValueError as exc:
        raise _Bad(str(exc)) from None


def _convert_table(table: Any, schema: Mapping[str, _Conv]) -> dict[str, Any]:
    """Each key of `table` through its converter; unknown keys fail with a hint."""
    if not isinstance(table, dict):
        raise _Bad(f"expected a table, got {_show(table)}")
    out: dict[str, Any] = {}
    for key, value in table.items():
        conv = schema.get(key)
        if conv is None:
            raise _Bad(_hint(key, schema), (key,))
        try:
            out[key] = conv(value)
        except _Bad as bad:
            raise bad.under(key) from None
    return out


def _sub_table(schema: Mapping[str, _Conv]) -> _Conv:
    return lambda value: _convert_table(value, schema)


_SERVER_CACHE_SCHEMA: dict[str, _Conv] = {
    "tools": _array(_string()),
    "ttl": _duration(),
    "lists": _boolean,
}

def _list_policy(kind: str) -> _Conv:
    """`[servers.NAME.tools]` and friends: globs and name maps, checked for shape and clashes."""
    schema: dict[str, _Conv] = {
        "allow": _array(_string()),
        "deny": _array(_string()),
        "describe": _table_of(_string(nonempty=False)),
    }
    if kind != "resources":  # resources are known by URI, which is never rewritten
        schema["rename"] = _table_of(_string())

    def conv(value: Any) -> ListPolicy:
        got = _convert_table(value, schema)
        rename: Mapping[str, str] = got.get("rename", {})
        seen: dict[str, str] = {}
        for old, new in rename.items():
            if new in seen:
                raise _Bad(f'"{seen[new]}" and "{old}" are both renamed to "{new}"', ("rename", old))
            if new != old and new in rename:
                raise _Bad(f'"{new}" is itself renamed: a name may be given away only once',
                           ("rename", old))
            seen[new] = old
        return ListPolicy(**got)

    return conv


_SERVER_SCHEMA: dict[str, _Conv] = {
    "command": _string(raw_refs=True),
    "args": _array(_string(nonempty=False, raw_refs=True)),
    "env": _table_of(_env_value, key_check=_env_name_problem),
    "cwd": _string(raw_refs=True),
    "requires_env": _array(_env_name),
    "env_file": _string(raw_refs=True),
    "package": _package,
    "extra_requires": _array(_requirement),
    "roots": _array(_root),
    "isolate_home": _boolean,
    "start": _choice("eager", "lazy"),
    "idle_stop_after": _duration(),
    "instances": _integer(1),
    "max_in_flight": _integer(1),
    "max_queue": _integer(0),
    "request_timeout": _duration(),
    "tool_timeouts": _table_of(_duration()),
    "init_timeout": _duration(),
    "stop_timeout": _duration(),
    "health_interval": _duration(),
    "ping_timeout": _duration(),
    "unhealthy_after": _integer(1),
    "max_restarts": _integer(0),
    "restart_window": _duration(),
    "max_start_failures": _integer(1),
    "backoff_initial": _duration(positive=False),
    "backoff_max": _duration(),
    "stable_after": _duration(positive=False),
    "breaker_errors": _integer(1),
    "breaker_window": _duration(),
    "breaker_cooldown": _duration(),
    "memory_limit": _size,
    "memory_interval": _duration(),
    "drain_timeout": _duration(positive=False),
    "rate_limit": _rate_limit,
    "stateless": _boolean,
    "min_instances": _integer(1),
    "max_instances": _integer(1),
    "scale_up_queue": _integer(1),
    "scale_up_cpu": _number(0, exclusive=True),
    "scale_down_cpu": _number(0),
    "scale_up_window": _duration(),
    "scale_down_window": _duration(),
    "cache": _sub_table(_SERVER_CACHE_SCHEMA),
    "tasks": _array(_string()),
    "tools": _list_policy("tools"),
    "prompts": _list_policy("prompts"),
    "resources": _list_policy("resources"),
    "on_tool_change": _choice("warn", "block"),
    "sharing": _choice("shared", "per-client"),
    "idle_timeout": _duration(),
}

# Keys that name one particular program (or its items): a default for them would make every
# server the same.
_NOT_DEFAULTS = frozenset({"command", "args", "package", "tools", "prompts", "resources"})

_SERVER_NAME = re.compile(r"[A-Za-z0-9_.-]+")
MAX_NAME_LENGTH = 64

_TOP_LEVEL = ("supervisor", "http", "cache", "cluster", "tracing", "defaults", "servers", "clients",
              "aggregate", "tasks")


def name_problem(name: str, kind: str = "server") -> str | None:
    """Why `name` cannot name a server (or client), or None. Names become directory names (the
    child's HOME, log file, install prefix), URL paths and metric labels, so "." and "..", a
    leading "-" or "." and anything but letters, digits, "_", "." and "-" are refused."""
    shown = orjson.dumps(name).decode()  # quotes and escapes a newline or a quote in the name
    if not _SERVER_NAME.fullmatch(name):
        return f'invalid {kind} name {shown}: use letters, digits, "_", "." and "-"'
    if not name[0].isalnum():
        return (f'invalid {kind} name {shown}: must start with a letter or digit '
                "(it names a directory: \".\", \"..\" and hidden or option-like names are refused)")
    if len(name) > MAX_NAME_LENGTH:
        return f"invalid {kind} name {shown}: longer than {MAX_NAME_LENGTH} characters"
    if "__" in name:
        return (f'invalid {kind} name {shown}: must not contain "__" '
                "(it separates server and tool names in the aggregate)")
    return None


def _separator(value: Any) -> str:
    text: str = _string()(value)
    if any(c.isspace() for c in text) or "/" in text:
        raise _Bad(f"must not contain spaces or '/', got {_show(value)}")
    return text


def _name_problem(kind: str, name: str) -> str | None:
    return name_problem(name, kind)


def _origin(value: Any) -> str:
    text: str = _string()(value)
    if not re.fullmatch(r"https?://[^/\s?#]+", text):
        raise _Bad(f'expected an origin like "https://app.example.com" (no path), got {_show(value)}')
    return text


def _host_name(value: Any) -> str:
    text: str = _string()(value)
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    if text != "*" and not re.fullmatch(r"[A-Za-z0-9._-]+|[0-9A-Fa-f:.]+", bare):
        raise _Bad(f'expected a host name or address without port, like "mcp.example.lan", '
                   f'or "*" for any, got {_show(value)}')
    return bare.lower()


def _listen(environ: Mapping[str, str]) -> _Conv:
    def conv(value: Any) -> str:
        text: str = _expanded(environ)(value)
        if text:
            try:
                _split_listen(text)
            except ValueError as exc:
                raise _Bad(str(exc)) from None
        return text

    return conv


def _redis_url(environ: Mapping[str, str]) -> _Conv:
    def conv(value: Any) -> str:
        text: str = _expanded(environ)(value)
        if not re.match(r"(rediss?|unix)://", text):
            raise _Bad(f'expected a redis://, rediss:// or unix:// URL, got {_show(value)}')
        return text

    return conv
