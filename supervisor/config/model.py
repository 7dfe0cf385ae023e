"""What a loaded `fleet.toml` is: frozen dataclasses, one per table, with typed values.

Durations are float seconds, sizes int bytes, rates `RateLimit`: nothing outside `supervisor.config`
converts a config value. Reload compares them: a server whose `fingerprint()` changed restarts,
one whose `policy_fingerprint()` alone changed keeps running under its new tool policy, and the
daemon-level tables compare by equality; the fingerprint also keys a server's cache entries.
`supervisor.config.load` builds them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import orjson

from supervisor.config.lines import _line_for, _render_key
from supervisor.errors import ConfigError

_MiB = 1024 * 1024


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
    keep_alive: float = 60.0
    """Seconds an idle keep-alive connection (its last answer sent, no new request begun) stays
    open. uvicorn's 5 s default raced clients that reuse a connection a little later (the close
    and their next POST cross, and a POST is not retried): under load that showed as ReadErrors in
    the 500-client test. Idle connections are cheap, and `max_connections` bounds them."""
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
