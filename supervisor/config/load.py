"""`load_config(path)` / `parse_config(text)`: TOML text → a validated `FleetConfig`.

tomllib parses (its syntax errors keep their line); `_Loader` converts each table through its
schema (`supervisor.config.convert`), merges `[defaults]` into every server (every per-server key
except command/args/package; `cache` merges key-wise), runs the cross-field checks (backoff_initial
<= backoff_max, autoscaling only when stateless, ...) and builds the dataclasses
(`supervisor.config.model`). Every failure is a `ConfigError` at `file:line: key.path`.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from supervisor.config.convert import (
    _NOT_DEFAULTS,
    _SERVER_SCHEMA,
    _TOP_LEVEL,
    _anchored_command,
    _array,
    _Bad,
    _boolean,
    _choice,
    _Conv,
    _convert_table,
    _duration,
    _expanded,
    _hint,
    _host_name,
    _integer,
    _listen,
    _name_problem,
    _origin,
    _rate_limit,
    _redis_url,
    _separator,
    _show,
    _size,
    _string,
)
from supervisor.config.lines import _LineIndex, _render_key
from supervisor.config.model import (
    AggregateSettings,
    CacheSettings,
    ClientSettings,
    ClusterSettings,
    FleetConfig,
    HttpSettings,
    ServerCache,
    ServerConfig,
    SupervisorSettings,
    TaskSettings,
    TracingSettings,
)
from supervisor.errors import ConfigError


class _Loader:
    def __init__(self, text: str, path: str | None, environ: Mapping[str, str]) -> None:
        self.path = path
        self.environ = environ
        self.index = _LineIndex(text)

    def error(self, keys: tuple[str, ...], message: str) -> ConfigError:
        return ConfigError(message, path=self.path, key=_render_key(keys), line=self.index.line_for(keys))

    def section(self, prefix: tuple[str, ...], table: Any, schema: Mapping[str, _Conv]) -> dict[str, Any]:
        try:
            return _convert_table(table, schema)
        except _Bad as bad:
            raise self.error(prefix + bad.sub, bad.message) from None

    def load(self, doc: dict[str, Any]) -> FleetConfig:
        for key in doc:
            if key not in _TOP_LEVEL:
                raise self.error((key,), _hint(key, _TOP_LEVEL))
        env = self.environ
        own = doc.get("supervisor", {})
        for key in own if isinstance(own, dict) else ():
            # Both mean something else at the daemon level (the fleet's total; the daemon's drain);
            # env_file is the daemon-wide secrets file.
            if key in _SERVER_SCHEMA and key not in ("memory_limit", "drain_timeout", "env_file"):
                raise self.error(("supervisor", key), "a per-server setting: put it under [defaults]")
        supervisor = SupervisorSettings(**self.section(("supervisor",), doc.get("supervisor", {}), {
            "memory_limit": _size,
            "watch": _boolean,
            "state_dir": _expanded(env, empty_is_none=True),
            "log_format": _choice("text", "json"),
            "log_level": _choice("debug", "info", "warning", "error", lower=True),
            "env_file": _expanded(env),
            "drain_grace": _duration(positive=False),
            "drain_timeout": _duration(positive=False),
        }))
        http = HttpSettings(**self.section(("http",), doc.get("http", {}), {
            "listen": _listen(env),
            "token": _expanded(env, empty_is_none=True),
            "allowed_origins": _array(_origin),
            "allowed_hosts": _array(_host_name),
            "max_body": _size,
            "header_timeout": _duration(),
            "body_timeout": _duration(),
            "keep_alive": _duration(),
            "max_header_bytes": _size,
            "max_connections": _integer(1),
            "max_sessions": _integer(1),
            "max_sessions_per_token": _integer(1),
            "sse_poll_after": _duration(positive=False),
        }))
        if not http.is_loopback() and http.token is None:
            raise self.error(("http", "listen"), f'"{http.listen}" is not a loopback address; set http.token')
        cache = CacheSettings(**self.section(("cache",), doc.get("cache", {}), {
            "backend": _choice("memory", "redis"),
            "url": _redis_url(env),
            "timeout": _duration(),
            "max_entries": _integer(1),
            "max_bytes": _size,
            "ttl": _duration(),
        }))
        cluster = self.cluster(doc)
        tasks = TaskSettings(**self.section(("tasks",), doc.get("tasks", {}), {
            "ttl": _duration(),
            "poll_interval": _duration(),
            "max_tasks": _integer(1),
            "max_bytes": _size,
        }))
        tracing = TracingSettings(**self.section(("tracing",), doc.get("tracing", {}), {
            "enabled": _boolean,
            "endpoint": _expanded(env),
            "service_name": _expanded(env),
        }))
        raw_defaults = doc.get("defaults", {})
        defaults_schema = {k: v for k, v in _SERVER_SCHEMA.items() if k not in _NOT_DEFAULTS}
        if isinstance(raw_defaults, dict):
            for key in raw_defaults:
                if key in _NOT_DEFAULTS:
                    what = "program" if key in ("command", "args", "package") else key
                    raise self.error(("defaults", key),
                                     f"cannot be set in [defaults]: it names one server's {what}")
        defaults = self.section(("defaults",), raw_defaults, defaults_schema)
        servers = self.servers(doc.get("servers", {}), defaults)
        clients = self.clients(doc.get("clients", {}), servers)
        aggregate = AggregateSettings(**self.section(("aggregate",), doc.get("aggregate", {}), {
            "prefix": _choice("always", "on-collision", "never"),
            "separator": _separator,
            "max_tools": _integer(1),
        }))
        if aggregate.separator != "__":
            for name in servers:
                if aggregate.separator in name:
                    raise self.error(("servers", name), f'server name "{name}" contains the '
                                     f'aggregate separator "{aggregate.separator}"')
        return FleetConfig(
            path=self.path,
            supervisor=supervisor,
            http=http,
            cache=cache,
            cluster=cluster,
            tracing=tracing,
            servers=MappingProxyType(servers),
            clients=MappingProxyType(clients),
            defaults=MappingProxyType(dict(raw_defaults)),
            aggregate=aggregate,
            tasks=tasks,
            lines=MappingProxyType(self.index.lines),
        )

    def cluster(self, doc: dict[str, Any]) -> ClusterSettings:
        if "cluster" not in doc:
            return ClusterSettings()
        keys = self.section(("cluster",), doc["cluster"], {
            "url": _redis_url(self.environ),
            "node": _expanded(self.environ, empty_is_none=True),
            "secret": _expanded(self.environ, empty_is_none=True),
            "session_ttl": _duration(),
            "heartbeat": _duration(),
            "rate_limits": _boolean,
            "rate_limit_timeout": _duration(),
        })
        node = keys.pop("node", None) or socket.gethostname()
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", node):
            raise self.error(("cluster", "node"), f"{node!r} is not a node name (letters, digits, "
                             "'.', '_', '-'; at most 63)")
        secret = keys.get("secret")
        if secret is not None and len(secret) < 16:
            raise self.error(("cluster", "secret"), "must be at least 16 characters (it signs "
                             "session ids: use a random value, e.g. `openssl rand -hex 32`)")
        return ClusterSettings(enabled=True, node=node, **keys)

    def servers(self, table: Any, defaults: dict[str, Any]) -> dict[str, ServerConfig]:
        if not isinstance(table, dict):
            raise self.error(("servers",), f"expected a table, got {_show(table)}")
        out: dict[str, ServerConfig] = {}
        for name, entry in table.items():
            problem = _name_problem("server", name)
            if problem:
                raise self.error(("servers", name), problem)
            here = ("servers", name)
            own = self.section(here, entry, _SERVER_SCHEMA)
            if "command" not in own:
                raise self.error((*here, "command"), "missing required key")
            own["command"] = _anchored_command(
                own["command"], os.path.dirname(os.path.abspath(self.path)) if self.path else None)
            # Where each effective value came from, so cross-field errors point at the right line.
            origin: dict[str, tuple[str, ...]] = {k: ("defaults", k) for k in defaults}
            origin |= {k: (*here, k) for k in own}
            merged = defaults | own
            merged["cache"] = ServerCache(**(defaults.get("cache", {}) | own.get("cache", {})))
            self.cross_check(merged, origin, name)
            out[name] = ServerConfig(name=name, **merged)
        return out

    def cross_check(self, s: dict[str, Any], origin: dict[str, tuple[str, ...]], name: str) -> None:
        def fail(key: str, message: str) -> ConfigError:
            where = origin[key]
            suffix = f" (for server '{name}')" if where[0] == "defaults" else ""
            return self.error(where, message + suffix)

        per_client = s.get("sharing") == "per-client"
        if per_client:
            clash: list[str] = [k for k in ("min_instances", "instances") if k in s and s[k] != 1]
            clash += ["stateless"] if s.get("stateless") else []
            if clash:
                raise fail(clash[0], 'not with sharing = "per-client": each client gets one '
                                     "instance of its own, capped by max_instances")
        for key in ("min_instances", "max_instances"):
            if key in s and not s.get("stateless", False) and not per_client:
                raise fail(key, "autoscaling needs stateless = true: only a stateless server "
                                "can spread its requests over several instances")
        low, high = s.get("min_instances"), s.get("max_instances")
        if per_client:
            low = high = None
        if low is not None and high is not None and low > high:
            raise fail("min_instances", f"must not exceed max_instances ({low} > {high})")
        if low is None and high is not None and s.get("instances", 1) > high:
            raise fail("max_instances", f"must not be below instances ({high} < {s['instances']}), "
                                        "which is the autoscaling floor when min_instances is unset")
        initial = s.get("backoff_initial", 0.5)
        ceiling = s.get("backoff_max", 30.0)
        if initial > ceiling:
            raise fail("backoff_initial" if "backoff_initial" in s else "backoff_max",
                       f"backoff_initial ({initial:g}s) must not exceed backoff_max ({ceiling:g}s)")
        down, up = s.get("scale_down_cpu", 0.3), s.get("scale_up_cpu", 0.8)
        if down >= up:
            raise fail("scale_down_cpu" if "scale_down_cpu" in s else "scale_up_cpu",
                       f"scale_down_cpu ({down:g}) must be below scale_up_cpu ({up:g})")

    def clients(self, table: Any, servers: Mapping[str, ServerConfig]) -> dict[str, ClientSettings]:
        if not isinstance(table, dict):
            raise self.error(("clients",), f"expected a table, got {_show(table)}")
        out: dict[str, ClientSettings] = {}
        seen: dict[str, str] = {}
        for name, entry in table.items():
            problem = _name_problem("client", name)
            if problem:
                raise self.error(("clients", name), problem)
            client = ClientSettings(name=name, **self.section(("clients", name), entry, {
                "rate_limit": _rate_limit,
                "token": _expanded(self.environ, empty_is_none=True),
                "servers": _array(_string()),
                "tools": _array(_string()),
            }))
            for n, server in enumerate(client.servers or ()):
                if server not in servers:
                    raise self.error(("clients", name, "servers", f"[{n}]"),
                                     f"no server named '{server}' (known: {', '.join(servers) or 'none'})")
            if client.token is not None:
                if client.token in seen:
                    raise self.error(("clients", name, "token"),
                                     f"same token as clients.{seen[client.token]}: tokens identify clients")
                seen[client.token] = name
            out[name] = client
        return out


_TOML_LINE = re.compile(r"at line (\d+)")


def parse_config(text: str, *, path: str | None = None,
                 environ: Mapping[str, str] | None = None) -> FleetConfig:
    """Validate the TOML `text` of a fleet file. `path` only names the file in errors. `environ`
    (default `os.environ`) expands daemon-level values. Raises `ConfigError`."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = _TOML_LINE.search(message)
        line = int(found.group(1)) if found else max(1, len(text.splitlines()))  # "at end of document"
        raise ConfigError(f"invalid TOML: {message}", path=path, line=line) from None
    return _Loader(text, path, os.environ if environ is None else environ).load(doc)


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> FleetConfig:
    """Read and validate the fleet file at `path`. Raises `ConfigError` (also when it cannot be read)."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as fh:
            text = fh.read().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", path=name) from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError("invalid TOML: not UTF-8 text", path=name, line=line) from None
    return parse_config(text, path=name, environ=environ)
