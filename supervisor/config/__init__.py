"""`fleet.toml` → frozen dataclasses, validated once, here.

    load_config(path) / parse_config(text)
        tomllib            syntax errors keep tomllib's line and column
        _LineIndex         key path → line, found by scanning the raw text (tomllib gives none)
        _convert_table     one converter per known key; unknown keys get a "did you mean" hint
        [defaults] merge   every per-server key except command/args/package; `cache` merges key-wise
        cross-field checks backoff_initial <= backoff_max, autoscaling only when stateless, ...
        → FleetConfig

Every failure is a `ConfigError` whose `str()` reads
`fleet.toml:12: servers.memory.max_inflight: unknown key (did you mean 'max_in_flight'?)`.
Nothing else in the codebase should convert config values: durations are float seconds, sizes are
int bytes, rates are `RateLimit`.

Daemon-level strings (`[http] token`, `[supervisor] state_dir`, `[cache] url`, client tokens, `listen`)
are expanded from `environ` at load time. A server's `command`, `args`, `env`, `cwd` and `roots` keep
their raw `${VAR}` text (only its syntax is checked); the daemon expands them at spawn time with
`expand`, against the environment the child will see.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import ipaddress
import math
import os
import re
import socket
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

import orjson

from supervisor.errors import ConfigError
from supervisor.units import parse_duration, parse_size

__all__ = [
    "AggregateSettings",
    "CacheSettings",
    "ClientSettings",
    "ClusterSettings",
    "FleetConfig",
    "HttpSettings",
    "ListPolicy",
    "RateLimit",
    "ServerCache",
    "ServerConfig",
    "SupervisorSettings",
    "TracingSettings",
    "expand",
    "is_loopback_host",
    "load_config",
    "name_problem",
    "parse_config",
    "referenced_vars",
    "references",
]

_MiB = 1024 * 1024

# --------------------------------------------------------------------------------------------------
# ${VAR} expansion


_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# A parsed string: literal text, or a reference (name, default); default None means `${NAME}`.
_Part = str | tuple[str, str | None]


def _closing_brace(value: str, start: int) -> int:
    """Index of the `}` that closes a `${` whose default text starts at `start` (defaults may nest)."""
    depth, k = 1, start
    while k < len(value):
        if value.startswith("$$", k):
            k += 2
        elif value.startswith("${", k):
            depth, k = depth + 1, k + 2
        elif value[k] == "}":
            depth -= 1
            if depth == 0:
                return k
            k += 1
        else:
            k += 1
    raise ValueError(f'unclosed "${{" in "{value}"')


def _parse_refs(value: str) -> list[_Part]:
    parts: list[_Part] = []
    buf: list[str] = []
    i = 0
    while i < len(value):
        if value.startswith("$$", i):
            buf.append("$")
            i += 2
            continue
        if not value.startswith("${", i):
            buf.append(value[i])
            i += 1
            continue
        name = _VAR_NAME.match(value, i + 2)
        if name is None:
            raise ValueError(
                f'bad variable reference in "{value}": expected ${{NAME}} or ${{NAME:-default}} '
                '(write "$$" for a literal "$")'
            )
        j = name.end()
        ref: tuple[str, str | None]
        if value.startswith("}", j):
            ref, i = (name.group(), None), j + 1
        elif value.startswith(":-", j):
            end = _closing_brace(value, j + 2)
            ref, i = (name.group(), value[j + 2 : end]), end + 1
        elif j >= len(value):
            raise ValueError(f'unclosed "${{" in "{value}"')
        else:
            raise ValueError(
                f'bad variable reference in "{value}": expected ${{NAME}} or ${{NAME:-default}} '
                '(write "$$" for a literal "$")'
            )
        if buf:
            parts.append("".join(buf))
            buf = []
        parts.append(ref)
    if buf:
        parts.append("".join(buf))
    return parts


def expand(value: str, environ: Mapping[str, str]) -> str:
    """`value` with `${VAR}` replaced by `environ[VAR]` ("" when unset), `${VAR:-default}` by the
    variable or, when it is unset or empty, the (itself expanded) default, and `$$` by `$`.
    A `$` not followed by `{` or `$` stays as it is. Raises `ValueError` for a malformed `${...}`."""
    out: list[str] = []
    for part in _parse_refs(value):
        if isinstance(part, str):
            out.append(part)
            continue
        name, default = part
        found = environ.get(name, "")
        out.append(found if found or default is None else expand(default, environ))
    return "".join(out)


def references(value: str) -> list[tuple[str, str | None]]:
    """Every `${NAME}` (default None) and `${NAME:-default}` in `value`, those inside defaults too,
    in order. Raises `ValueError` for a malformed `${...}`."""
    found: list[tuple[str, str | None]] = []
    for part in _parse_refs(value):
        if not isinstance(part, str):
            found.append(part)
            if part[1] is not None:
                found.extend(references(part[1]))
    return found


def referenced_vars(value: str) -> list[str]:
    """Names used as `${NAME}` (no default) in `value`, in order, each once. Names that only appear
    inside a default, or that have a default, are not listed: the string works without them."""
    names: list[str] = []
    for part in _parse_refs(value):
        if not isinstance(part, str) and part[1] is None and part[0] not in names:
            names.append(part[0])
    return names


# --------------------------------------------------------------------------------------------------
# The dataclasses


_RATE_UNITS: dict[str, float] = {
    "s": 1.0, "sec": 1.0, "second": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0,
    "h": 3600.0, "hr": 3600.0, "hour": 3600.0,
    "d": 86400.0, "day": 86400.0,
}
_RATE = re.compile(r"\s*(\d+)\s*/\s*([A-Za-z]+)\s*")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket: `rate` tokens per second, holding at most `burst`."""

    rate: float
    """Tokens added per second ("100/min" → 1.667)."""
    burst: int
    """Bucket size: how many requests may pass at once after a quiet spell."""
    text: str
    """The rate as written in fleet.toml, e.g. "100/min", for messages and status output."""

    @classmethod
    def parse(cls, text: str, burst: int | None = None) -> RateLimit:
        """`"100/min"`, `"10/s"`, `"5/sec"`, `"1000/hour"`, `"100/m"`, `"50/day"`. The burst defaults to
        the count in the text (100 for "100/min"). Raises `ValueError`."""
        match = _RATE.fullmatch(text)
        unit = match.group(2).lower() if match else ""
        if match is None or unit not in _RATE_UNITS or int(match.group(1)) < 1:
            raise ValueError(f'expected a rate like "100/min" (count per s, min, hour or day), got "{text}"')
        count = int(match.group(1))
        if burst is not None and burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        return cls(rate=count / _RATE_UNITS[unit], burst=count if burst is None else burst,
                   text=text.strip())


@dataclass(frozen=True, slots=True)
class ServerCache:
    """Which tool results of one server may be cached (lists are always cached)."""

    tools: tuple[str, ...] = ()
    """Glob patterns of tool names whose results are cached ("get_*", "search"); empty: none."""
    ttl: float | None = None
    """Seconds a cached tool result lives; None: the `[cache] ttl`."""
    lists: bool = True
    """Cache tools/prompts/resources lists (invalidated on list_changed and restart)."""


@dataclass(frozen=True, slots=True)
class ListPolicy:
    """`[servers.NAME.tools]` (or `.prompts`, `.resources`): what clients see of one kind of item.

    Patterns and keys are the child's own names (URIs and URI templates for resources)."""

    allow: tuple[str, ...] = ()
    """Glob patterns of items shown; empty: all (before `deny`)."""
    deny: tuple[str, ...] = ()
    """Glob patterns of items hidden; deny wins over allow."""
    rename: Mapping[str, str] = field(default_factory=dict)
    """Child name → the name clients see (not for resources: URIs are never rewritten)."""
    describe: Mapping[str, str] = field(default_factory=dict)
    """Child name → the description clients see."""

    @property
    def active(self) -> bool:
        return bool(self.allow or self.deny or self.rename or self.describe)


# Keys that shape what clients see, not how the child runs: a change applies without a restart.
POLICY_KEYS = ("tools", "prompts", "resources", "on_tool_change")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """One `[servers.NAME]` entry, with `[defaults]` already applied."""

    name: str
    """The table name: `[servers.memory]` → "memory". Also the URL path and aggregate prefix."""
    command: str
    """Program to run (raw `${VAR}` text; expanded at spawn time)."""
    args: tuple[str, ...] = ()
    """Arguments after the command (raw `${VAR}` text)."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Extra environment for the child, on top of the scrubbed base (raw `${VAR}` text)."""
    cwd: str | None = None
    """Working directory of the child; None: its own HOME under the state directory (with
    `isolate_home`), else the daemon's working directory."""
    requires_env: tuple[str, ...] = ()
    """Variables that must be set, else the server is `unavailable` instead of crash-looping."""
    env_file: str | None = None
    """A dotenv file of variables for this server only (raw `${VAR}` text), read at every spawn;
    refused when other users can read it (see supervisor.config.envfiles)."""
    package: str | None = None
    """Pinned package for `mcpctl install`: "npm:NAME@VERSION" or "pypi:NAME==VERSION"."""
    extra_requires: tuple[str, ...] = ()
    """Further packages installed into the same private prefix (npm specs or pip requirements)."""
    roots: tuple[str, ...] = ()
    """Answer to the child's roots/list: paths or file:// URIs."""
    isolate_home: bool = True
    """Give the child its own HOME and TMPDIR under the state dir."""
    start: str = "eager"
    """"eager": start with the daemon; "lazy": start on the first request."""
    idle_stop_after: float | None = None
    """Seconds without requests after which the server is stopped; None: never."""
    instances: int = 1
    """Child processes to run (more than one only makes sense for stateless servers)."""
    max_in_flight: int = 8
    """Requests sent to one instance at a time."""
    max_queue: int = 256
    """Requests that may wait for a slot; beyond that callers get "server busy" at once."""
    request_timeout: float = 60.0
    """Seconds a request may take before it is cancelled."""
    tool_timeouts: Mapping[str, float] = field(default_factory=dict)
    """Per-tool `request_timeout` overrides in seconds, by tool name."""
    init_timeout: float = 30.0
    """Seconds the child has to answer initialize (or server/discover)."""
    stop_timeout: float = 10.0
    """Seconds from closing stdin to SIGKILL of the process group."""
    health_interval: float = 15.0
    """Seconds between health pings."""
    ping_timeout: float = 5.0
    """Seconds a health ping may take."""
    unhealthy_after: int = 2
    """Consecutive failed pings that trigger a restart."""
    max_restarts: int = 5
    """Crash restarts allowed within `restart_window` before the server goes `failed`."""
    restart_window: float = 300.0
    """Seconds over which `max_restarts` is counted."""
    max_start_failures: int = 3
    """Exits before the handshake allowed in a row before the server goes `failed`."""
    backoff_initial: float = 0.5
    """First restart delay in seconds; doubles (with jitter) up to `backoff_max`."""
    backoff_max: float = 30.0
    """Largest restart delay in seconds."""
    stable_after: float = 60.0
    """Seconds of uptime after which the backoff resets."""
    breaker_errors: int = 5
    """Errors or timeouts within `breaker_window` that open the circuit breaker."""
    breaker_window: float = 30.0
    """Seconds over which `breaker_errors` is counted."""
    breaker_cooldown: float = 10.0
    """Seconds the breaker stays open before one probe request is let through."""
    memory_limit: int | None = None
    """Bytes of resident memory (whole process tree) above which the server is restarted."""
    memory_interval: float = 5.0
    """Seconds between memory samples."""
    drain_timeout: float = 10.0
    """Seconds in-flight requests get to finish before a graceful restart stops the child."""
    rate_limit: RateLimit | None = None
    """Requests admitted per second for this server across all clients; None: unlimited."""
    stateless: bool = False
    """The server keeps no per-session state, so requests may go to any instance."""
    min_instances: int | None = None
    """Autoscaling floor (only with stateless = true)."""
    max_instances: int | None = None
    """Autoscaling ceiling (only with stateless = true)."""
    scale_up_queue: int = 50
    """Queued requests that add an instance when autoscaling."""
    scale_up_cpu: float = 0.8
    """Mean CPU share per instance (1.0 = one core) above which an instance is added."""
    scale_down_cpu: float = 0.3
    """Mean CPU share per instance below which an instance is removed."""
    scale_up_window: float = 5.0
    """Seconds the queue or CPU must stay above its threshold before an instance is added."""
    scale_down_window: float = 60.0
    """Seconds the server must stay quiet (empty queue, low CPU) before an instance is removed."""
    cache: ServerCache = ServerCache()
    """Tool result caching for this server."""
    tasks: tuple[str, ...] = ()
    """Glob patterns of tools whose calls become tasks for clients that declare the tasks
    extension (besides tools whose definition says `execution.taskSupport`)."""
    tools: ListPolicy = ListPolicy()
    """`[servers.NAME.tools]`: allow/deny/rename/describe of the child's tools."""
    prompts: ListPolicy = ListPolicy()
    """`[servers.NAME.prompts]`: the same for prompts."""
    resources: ListPolicy = ListPolicy()
    """`[servers.NAME.resources]`: allow/deny (URIs and URI templates) and describe (by URI)."""
    on_tool_change: str = "warn"
    """A pinned tool definition changed: "warn" (event, still served) or "block" (hidden until
    `mcpctl tools approve`)."""
    sharing: str = "shared"
    """"shared": every client uses the same children; "per-client": each client identity gets a
    child of its own (for servers that keep per-session state), capped by `max_instances`."""
    idle_timeout: float = 600.0
    """Seconds a per-client instance may go unused before it is stopped (its state with it)."""

    def fingerprint(self) -> str:
        """16 hex chars of the sha256 of this entry's canonical content, without the client-facing
        policy keys (`POLICY_KEYS`): equal entries give equal fingerprints on any machine. Reload
        diffs and cache key prefixes use it, so a policy edit restarts nothing."""
        content = {k: v for k, v in _canonical(self).items() if k not in POLICY_KEYS}
        blob = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(blob).hexdigest()[:16]

    def policy_fingerprint(self) -> str:
        """The same for the policy keys alone: a reload re-applies a policy whose print changed."""
        content = {k: v for k, v in _canonical(self).items() if k in POLICY_KEYS}
        blob = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(blob).hexdigest()[:16]


def _canonical(value: object) -> Any:
    if isinstance(value, (ServerConfig, ServerCache, RateLimit, ListPolicy)):
        return {f.name: _canonical(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_canonical(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class SupervisorSettings:
    """`[supervisor]`: the daemon itself."""

    memory_limit: int | None = None
    """Bytes for the whole fleet; above it the largest server is restarted first. None: no limit."""
    watch: bool = True
    """Reload when fleet.toml changes on disk."""
    state_dir: str | None = None
    """Where servers' state, homes and logs live; None: the XDG default (see supervisor.paths)."""
    log_format: str = "text"
    """"text" or "json" (one object per line)."""
    log_level: str = "info"
    """"debug", "info", "warning" or "error"."""
    env_file: str | None = None
    """Daemon-wide dotenv secrets file read at every spawn; None: the default
    `$XDG_CONFIG_HOME/mcp-supervisor/secrets.env`; "": none."""
    drain_grace: float = 0.0
    """After SIGTERM or `mcpctl drain`: how long the daemon keeps serving while /healthz says 503,
    so a load balancer's health check takes it out of rotation before its door closes."""
    drain_timeout: float = 10.0
    """Then: how long calls already in flight get to finish before the children are stopped."""


def _split_listen(listen: str) -> tuple[str, int]:
    """`"127.0.0.1:8765"` → ("127.0.0.1", 8765); `"[::1]:8765"` → ("::1", 8765). Raises ValueError."""
    bad = ValueError(f'expected "host:port" (or "[ipv6]:port", or "" to disable), got "{listen}"')
    if listen.startswith("["):
        end = listen.find("]")
        host, rest = listen[1:end], listen[end + 1 :]
        if end < 0 or not rest.startswith(":"):
            raise bad
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise bad from None
        port = rest[1:]
    else:
        host, sep, port = listen.rpartition(":")
        if not sep or not host or ":" in host or any(c.isspace() for c in host):
            raise bad
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise bad
    return host, int(port)


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 and "localhost": addresses only this machine can reach."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """`[http]`: the Streamable HTTP front door, /metrics and /healthz."""

    listen: str = "127.0.0.1:8765"
    """"host:port" or "[ipv6]:port" to bind; "" disables the HTTP door."""
    token: str | None = None
    """Bearer token clients must send (expanded from the environment at load); None: no token."""
    allowed_origins: tuple[str, ...] = ()
    """Origins accepted besides loopback ones ("https://app.example.com")."""
    allowed_hosts: tuple[str, ...] = ()
    """`Host` names accepted besides the listen host and loopback names ("mcp.example.lan");
    "*" accepts any (turns the DNS-rebinding check off)."""
    max_body: int = 16 * _MiB
    """Largest request body in bytes."""
    header_timeout: float = 10.0
    """Seconds from a request's first byte (or the connection's opening) to its last header byte."""
    body_timeout: float = 30.0
    """Seconds from the end of the headers to the last body byte (the first one included)."""
    max_header_bytes: int = 32 * 1024
    """Largest request head (request line and headers) in bytes; a bigger one gets 431."""
    max_connections: int = 4096
    """Open HTTP connections at most; also kept below the daemon's open-file limit."""
    max_sessions: int = 10000
    """Legacy (`Mcp-Session-Id`) sessions at most; when full, the longest idle one is ended."""
    max_sessions_per_token: int = 1000
    """Legacy sessions one bearer token (or, with no token, everyone) may hold; same eviction."""
    sse_poll_after: float = 0.0
    """Seconds a call of a 2025-11-25 session may hold its POST response open; then the daemon
    closes that connection after a priming event with `retry`, and the client resumes with GET +
    Last-Event-ID (SSE polling). 0: the POST response stays open until the answer."""

    @property
    def enabled(self) -> bool:
        """False when `listen` is ""."""
        return bool(self.listen)

    def host_port(self) -> tuple[str, int]:
        """(host, port) to bind; the host without IPv6 brackets. Raises ValueError when disabled."""
        if not self.listen:
            raise ValueError("the HTTP door is disabled (http.listen = \"\")")
        return _split_listen(self.listen)

    def is_loopback(self) -> bool:
        """True for 127.0.0.0/8, ::1 and "localhost" (and when disabled: nothing is exposed)."""
        return not self.listen or is_loopback_host(self.host_port()[0])


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """`[cache]`: where cached results live."""

    backend: str = "memory"
    """"memory" (in the daemon, LRU + TTL) or "redis"."""
    url: str = "redis://127.0.0.1:6379/0"
    """Redis URL (redis://, rediss:// or unix://), expanded from the environment at load."""
    timeout: float = 0.05
    """Seconds a Redis call may take before the call goes on to the child without it."""
    max_entries: int = 10000
    """Entries the memory backend keeps."""
    max_bytes: int = 64 * _MiB
    """Bytes the memory backend keeps."""
    ttl: float = 300.0
    """Default seconds a cached tool result lives."""


@dataclass(frozen=True, slots=True)
class TaskSettings:
    """`[tasks]`: tasks the daemon runs on behalf of children (the io.modelcontextprotocol/tasks
    extension, see `supervisor/tasks.py`)."""

    ttl: float = 3600.0
    """Seconds a task (and its result) is kept after it was created."""
    poll_interval: float = 1.0
    """The polling interval suggested to clients."""
    max_tasks: int = 1000
    """Tasks kept at once, running or finished; a call beyond it is refused (-32000)."""
    max_bytes: int = 64 * _MiB
    """Bytes of results kept; past it the oldest finished tasks are forgotten first."""


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """`[cluster]`: this daemon is one of several behind a load balancer (docs/scaling.md)."""

    enabled: bool = False
    """True when the file has a `[cluster]` table."""
    url: str | None = None
    """The Redis every node shares (node heartbeats); None: the `[cache]` URL when it is Redis."""
    node: str = ""
    """This daemon's name among the nodes (default: the host name)."""
    secret: str | None = None
    """Signs legacy HTTP session ids so that any node can resume them; None: ids stay local."""
    session_ttl: float = 86400.0
    """How long a signed session id is honoured after its `initialize`."""
    heartbeat: float = 5.0
    """How often a node says it is alive (its entry expires after three missed beats)."""
    rate_limits: bool = True
    """Rate limits spend from buckets in the shared Redis, so they hold for the whole cluster."""
    rate_limit_timeout: float = 0.1
    """Seconds a shared bucket may take to answer before this node's own bucket decides."""


@dataclass(frozen=True, slots=True)
class TracingSettings:
    """`[tracing]`: OpenTelemetry spans for every call (needs the `otel` extra)."""

    enabled: bool = False
    """Off by default; off costs nothing per call."""
    endpoint: str = "http://127.0.0.1:4318/v1/traces"
    """The OTLP/HTTP traces endpoint of a collector (Jaeger, Tempo, the OpenTelemetry Collector)."""
    service_name: str = "mcp-supervisor"
    """`service.name` of the spans."""


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """`[clients.NAME]`: a known client of the HTTP door, recognised by its token."""

    name: str
    """The table name, shown in logs and metrics."""
    rate_limit: RateLimit | None = None
    """Requests this client may make; None: unlimited."""
    token: str | None = None
    """Bearer token identifying the client (expanded from the environment at load)."""
    servers: tuple[str, ...] | None = None
    """The servers this client may reach (per-server doors and the aggregate); None: all."""
    tools: tuple[str, ...] = ()
    """Glob patterns on aggregate tool names this client sees; empty: all."""

    @property
    def has_view(self) -> bool:
        """True when the client sees less than everything."""
        return self.servers is not None or bool(self.tools)


@dataclass(frozen=True, slots=True)
class AggregateSettings:
    """`[aggregate]`: how the aggregate (`/mcp`, `connect --all`) names what it merges."""

    prefix: str = "always"
    """"always": every name is SERVER + separator + name; "on-collision": only names two servers
    share are prefixed (for every party); "never": no prefix, and a collision is a config error."""
    separator: str = "__"
    """Between the server name and the item name."""
    max_tools: int = 128
    """Status and the aggregate's log warn when a view exposes more tools than this."""


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """A whole validated fleet.toml."""

    path: str | None
    """The file it came from (None when parsed from a string)."""
    supervisor: SupervisorSettings
    """`[supervisor]`."""
    http: HttpSettings
    """`[http]`."""
    cache: CacheSettings
    """`[cache]`."""
    cluster: ClusterSettings
    """`[cluster]`."""
    tracing: TracingSettings
    """`[tracing]`."""
    servers: Mapping[str, ServerConfig]
    """Servers by name, in file order, with `[defaults]` applied."""
    clients: Mapping[str, ClientSettings]
    """Known HTTP clients by name."""
    defaults: Mapping[str, object]
    """The raw `[defaults]` table, for diagnostics (already merged into `servers`)."""
    aggregate: AggregateSettings = AggregateSettings()
    """`[aggregate]`."""
    tasks: TaskSettings = TaskSettings()
    """`[tasks]`."""
    lines: Mapping[tuple[str, ...], int] = field(default_factory=dict, compare=False, repr=False)
    """Key path → line in the file, for errors found after loading (see `error_at`)."""

    def error_at(self, keys: tuple[str, ...], message: str) -> ConfigError:
        """A `ConfigError` at `keys` (file:line:key), for checks that need more than the file,
        such as an aggregate name collision found among the children's tools."""
        return ConfigError(message, path=self.path, key=_render_key(keys),
                           line=_line_for(self.lines, keys))


# --------------------------------------------------------------------------------------------------
# Key path → line, by scanning the raw text


def _render_key(keys: Iterable[str]) -> str:
    out = ""
    for key in keys:
        if key.startswith("["):
            out += key
            continue
        part = key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else '"' + key.replace('"', '\\"') + '"'
        out = f"{out}.{part}" if out else part
    return out


def _line_for(lines: Mapping[tuple[str, ...], int], keys: tuple[str, ...]) -> int | None:
    """The key's own line; else the first line of anything under it (a table defined only by
    its subtables); else the line of its nearest ancestor (e.g. the header a key is missing from)."""
    keys = tuple(k for k in keys if not k.startswith("["))
    if keys in lines:
        return lines[keys]
    below = [line for path, line in lines.items() if path[: len(keys)] == keys]
    if below:
        return min(below)
    for n in range(len(keys) - 1, 0, -1):
        if keys[:n] in lines:
            return lines[keys[:n]]
    return None


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", '"': '"', "\\": "\\"}


class _LineIndex:
    """Line of every key path in a TOML text that tomllib already accepted. A small scanner: it knows
    headers, dotted and quoted keys, strings (all four kinds), arrays and inline tables, which is all
    it needs to skip values without mistaking their contents for keys."""

    def __init__(self, text: str) -> None:
        self._s = text
        self._i = 0
        self._line = 1
        self.lines: dict[tuple[str, ...], int] = {}
        # Best effort: on a construct the scanner does not know, a partial index is still useful.
        with contextlib.suppress(IndexError, ValueError):
            self._document()

    def line_for(self, keys: tuple[str, ...]) -> int | None:
        return _line_for(self.lines, keys)

    # -- scanning ----------------------------------------------------------------------------------

    def _peek(self, n: int = 1) -> str:
        return self._s[self._i : self._i + n]

    def _advance(self, n: int = 1) -> None:
        self._line += self._s.count("\n", self._i, self._i + n)
        self._i += n

    def _skip_blank(self, newlines: bool) -> None:
        while self._i < len(self._s):
            ch = self._s[self._i]
            if ch in " \t" or (newlines and ch in "\r\n"):
                self._advance()
            elif ch == "#":
                while self._i < len(self._s) and self._s[self._i] != "\n":
                    self._advance()
            else:
                return

    def _record(self, keys: tuple[str, ...], line: int) -> None:
        self.lines.setdefault(keys, line)

    def _document(self) -> None:
        table: tuple[str, ...] = ()
        while self._i < len(self._s):
            self._skip_blank(newlines=True)
            if self._i >= len(self._s):
                return
            start = self._i
            if self._peek() == "[":
                self._advance(2 if self._peek(2) == "[[" else 1)
                line = self._line
                table = self._key()
                self._record(table, line)
                while self._i < len(self._s) and self._s[self._i] != "\n":
                    self._advance()
            else:
                line = self._line
                keys = table + self._key()
                self._skip_blank(newlines=False)
                if self._peek() == "=":
                    self._advance()
                self._record(keys, line)
                self._value(keys)
            if self._i == start:
                self._advance()

    def _key(self) -> tuple[str, ...]:
        parts: list[str] = []
        while True:
            self._skip_blank(newlines=False)
            ch = self._peek()
            if ch in ('"', "'"):
                parts.append(self._string())
            else:
                match = _BARE_KEY.match(self._s, self._i)
                if match is None:
                    break
                parts.append(match.group())
                self._advance(match.end() - self._i)
            self._skip_blank(newlines=False)
            if self._peek() != ".":
                break
            self._advance()
        return tuple(parts)

    def _string(self) -> str:
        quote = self._peek()
        basic = quote == '"'
        triple = self._peek(3) == quote * 3
        self._advance(3 if triple else 1)
        out: list[str] = []
        while self._i < len(self._s):
            if triple and self._peek(3) == quote * 3:
                self._advance(3)
                while self._peek() == quote:  # up to two quotes may end the content
                    self._advance()
                return "".join(out)
            ch = self._s[self._i]
            if not triple and ch == quote:
                self._advance()
                return "".join(out)
            if basic and ch == "\\":
                out.append(_ESCAPES.get(self._peek(2)[1:], ""))
                self._advance(2)
                continue
            out.append(ch)
            self._advance()
        return "".join(out)

    def _value(self, keys: tuple[str, ...]) -> None:
        self._skip_blank(newlines=False)
        ch = self._peek()
        if ch in ('"', "'"):
            self._string()
        elif ch == "[":
            self._advance()
            while self._i < len(self._s):
                self._skip_blank(newlines=True)
                start = self._i
                if self._peek() == "]":
                    self._advance()
                    return
                if self._peek() == ",":
                    self._advance()
                else:
                    self._value(keys)
                if self._i == start:
                    self._advance()
        elif ch == "{":
            self._advance()
            while self._i < len(self._s):
                self._skip_blank(newlines=True)
                start = self._i
                if self._peek() == "}":
                    self._advance()
                    return
                if self._peek() == ",":
                    self._advance()
                else:
                    line = self._line
                    sub = keys + self._key()
                    self._skip_blank(newlines=False)
                    if self._peek() == "=":
                        self._advance()
                    self._record(sub, line)
                    self._value(sub)
                if self._i == start:
                    self._advance()
        else:
            while self._i < len(self._s) and self._s[self._i] not in ",]}\n#":
                self._advance()


# --------------------------------------------------------------------------------------------------
# Converters: one per key kind. Each takes the TOML value and returns the typed value, or raises
# _Bad with a message (and the path below the key, for nested values).


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


_NPM = re.compile(r"npm:((?:@[a-z0-9][\w.-]*/)?[a-z0-9][\w.-]*)(?:@(.*))?", re.IGNORECASE)
_PYPI = re.compile(r"pypi:([A-Za-z0-9][A-Za-z0-9._-]*(?:\[[A-Za-z0-9._,\s-]+\])?)(?:\s*==\s*(.*))?")
_PIN = re.compile(r"\d[0-9A-Za-z.+_-]*")


def _package(value: Any) -> str:
    text: str = _string()(value)
    npm, pypi = _NPM.fullmatch(text), _PYPI.fullmatch(text)
    if npm:
        if not npm.group(2) or not _PIN.fullmatch(npm.group(2)):
            raise _Bad(f'npm package "{npm.group(1)}" must pin an exact version, '
                       f'like "npm:{npm.group(1)}@1.2.3", got {_show(value)}')
    elif pypi:
        if not pypi.group(2) or not _PIN.fullmatch(pypi.group(2)):
            raise _Bad(f'pypi package "{pypi.group(1)}" must pin an exact version, '
                       f'like "pypi:{pypi.group(1)}==1.2.3", got {_show(value)}')
    else:
        raise _Bad(f'expected "npm:NAME@VERSION" or "pypi:NAME==VERSION", got {_show(value)}')
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


# --------------------------------------------------------------------------------------------------
# Loading


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
