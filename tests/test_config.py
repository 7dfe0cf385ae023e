"""fleet.toml parsing and validation: a full valid example, `[defaults]`, expansion, units, and one
bad fixture per error message (tests/fixtures/bad/), each pinned to its key path, line and text."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import supervisor.config as config_module
import supervisor.units as units_module
from supervisor.config import (
    CacheSettings,
    FleetConfig,
    HttpSettings,
    RateLimit,
    ServerCache,
    ServerConfig,
    SupervisorSettings,
    expand,
    load_config,
    parse_config,
    referenced_vars,
)
from supervisor.errors import ConfigError
from supervisor.units import format_duration, format_size, parse_duration, parse_size

BAD = Path(__file__).parent / "fixtures" / "bad"
MiB = 1024 * 1024

FULL = """\
[supervisor]
memory_limit = "3GiB"
watch = false
state_dir = "${STATE_DIRECTORY:-/var/lib/mcp}/fleet"
log_format = "json"
log_level = "DEBUG"

[http]
listen = "[::]:9000"
token = "${FLEET_TOKEN}"
allowed_origins = ["https://app.example.com", "http://localhost:3000"]
max_body = "4MiB"

[cache]
backend = "redis"
url = "redis://:${REDIS_PASSWORD}@cache:6379/1"
timeout = "20ms"
max_entries = 500
max_bytes = "128MiB"
ttl = "10m"

[defaults]
request_timeout = "45s"
max_queue = 100
isolate_home = false
cache = { ttl = "2m" }

[servers.memory]
package = "npm:@modelcontextprotocol/server-memory@2026.8.31"
command = "mcp-server-memory"
env = { MEMORY_FILE_PATH = "${STATE_DIRECTORY}/memory.json" }
memory_limit = "256MiB"

[servers.search]
command = "search-server"
args = [
    "--index", "${HOME}/index",   # a comment
    "literal $$HOME",
]
env = { API_KEY = "${SEARCH_KEY}", REGION = "${REGION:-eu}" }
cwd = "/srv/search"
requires_env = ["SEARCH_KEY"]
package = "pypi:search-server[fast]==1.4.0"
extra_requires = ["numpy==2.0.1"]
roots = ["/srv/docs", "file:///srv/more"]
isolate_home = true
start = "lazy"
idle_stop_after = "10m"
instances = 2
max_in_flight = 4
max_queue = 0
request_timeout = 90
init_timeout = "1m"
stop_timeout = "5s"
health_interval = "30s"
ping_timeout = "2.5s"
unhealthy_after = 3
max_restarts = 10
restart_window = "1h"
max_start_failures = 1
backoff_initial = "250ms"
backoff_max = "2m"
stable_after = "90s"
breaker_errors = 7
breaker_window = "1m"
breaker_cooldown = "20s"
memory_limit = "1.5GiB"
memory_interval = "10s"
drain_timeout = "0s"
rate_limit = { rate = "100/min", burst = 10 }
stateless = true
min_instances = 1
max_instances = 6
scale_up_queue = 20
scale_up_cpu = 0.9
scale_down_cpu = 0.2

[servers.search.tool_timeouts]
reindex = "5m"
"quick.lookup" = 2

[servers.search.cache]
tools = ["get_*", "search"]
lists = false

[clients.ide]
token = "${IDE_TOKEN}"
rate_limit = "10/s"

[clients.agent]
rate_limit = "1000/hour"
"""

ENV = {
    "STATE_DIRECTORY": "/state",
    "FLEET_TOKEN": "t0ken",
    "REDIS_PASSWORD": "pw",
    "IDE_TOKEN": "ide-token",
}


def test_full_example_covers_every_key() -> None:
    cfg = parse_config(FULL, path="fleet.toml", environ=ENV)
    assert cfg.path == "fleet.toml"
    assert cfg.supervisor == SupervisorSettings(
        memory_limit=3 * 1024**3, watch=False, state_dir="/state/fleet", log_format="json", log_level="debug"
    )
    assert cfg.http == HttpSettings(
        listen="[::]:9000",
        token="t0ken",
        allowed_origins=("https://app.example.com", "http://localhost:3000"),
        max_body=4 * MiB,
    )
    assert cfg.http.host_port() == ("::", 9000)
    assert not cfg.http.is_loopback()
    assert cfg.cache == CacheSettings(
        backend="redis", url="redis://:pw@cache:6379/1", timeout=0.02, max_entries=500,
        max_bytes=128 * MiB, ttl=600.0,
    )
    assert list(cfg.servers) == ["memory", "search"]

    search = cfg.servers["search"]
    assert search.command == "search-server"
    assert search.args == ("--index", "${HOME}/index", "literal $$HOME")  # raw: expanded at spawn
    assert dict(search.env) == {"API_KEY": "${SEARCH_KEY}", "REGION": "${REGION:-eu}"}
    assert search.cwd == "/srv/search"
    assert search.requires_env == ("SEARCH_KEY",)
    assert search.package == "pypi:search-server[fast]==1.4.0"
    assert search.extra_requires == ("numpy==2.0.1",)
    assert search.roots == ("/srv/docs", "file:///srv/more")
    assert search.isolate_home is True
    assert search.start == "lazy"
    assert search.idle_stop_after == 600.0
    assert (search.instances, search.max_in_flight, search.max_queue) == (2, 4, 0)
    assert search.request_timeout == 90.0
    assert dict(search.tool_timeouts) == {"reindex": 300.0, "quick.lookup": 2.0}
    assert (search.init_timeout, search.stop_timeout) == (60.0, 5.0)
    assert (search.health_interval, search.ping_timeout, search.unhealthy_after) == (30.0, 2.5, 3)
    assert (search.max_restarts, search.restart_window, search.max_start_failures) == (10, 3600.0, 1)
    assert (search.backoff_initial, search.backoff_max, search.stable_after) == (0.25, 120.0, 90.0)
    assert (search.breaker_errors, search.breaker_window, search.breaker_cooldown) == (7, 60.0, 20.0)
    assert search.memory_limit == 1536 * MiB
    assert (search.memory_interval, search.drain_timeout) == (10.0, 0.0)
    assert search.rate_limit == RateLimit(rate=100 / 60, burst=10, text="100/min")
    assert search.stateless is True
    assert (search.min_instances, search.max_instances, search.scale_up_queue) == (1, 6, 20)
    assert (search.scale_up_cpu, search.scale_down_cpu) == (0.9, 0.2)
    # [defaults.cache] ttl merged key-wise under the server's own cache table.
    assert search.cache == ServerCache(tools=("get_*", "search"), ttl=120.0, lists=False)

    ide, agent = cfg.clients["ide"], cfg.clients["agent"]
    assert (ide.name, ide.token, ide.rate_limit) == ("ide", "ide-token", RateLimit(10.0, 10, "10/s"))
    assert (agent.token, agent.rate_limit) == (None, RateLimit(1000 / 3600, 1000, "1000/hour"))
    assert cfg.defaults == {"request_timeout": "45s", "max_queue": 100, "isolate_home": False,
                            "cache": {"ttl": "2m"}}


def test_defaults_apply_where_the_server_is_silent() -> None:
    cfg = parse_config(FULL, environ=ENV)
    memory = cfg.servers["memory"]
    assert memory.request_timeout == 45.0  # from [defaults]
    assert memory.max_queue == 100  # from [defaults]
    assert memory.isolate_home is False  # from [defaults]
    assert memory.cache == ServerCache(ttl=120.0)  # from [defaults.cache]
    assert memory.memory_limit == 256 * MiB
    assert dict(memory.env) == {"MEMORY_FILE_PATH": "${STATE_DIRECTORY}/memory.json"}
    assert cfg.servers["search"].request_timeout == 90.0  # the server's own value wins


def test_minimal_file_gets_documented_defaults() -> None:
    cfg = parse_config('[servers.echo]\ncommand = "echo"\n', environ={})
    assert cfg.path is None
    assert cfg.supervisor == SupervisorSettings()
    assert cfg.http == HttpSettings()
    assert cfg.http.host_port() == ("127.0.0.1", 8765)
    assert cfg.http.is_loopback()
    assert cfg.cache == CacheSettings()
    assert cfg.cache.max_bytes == 64 * MiB
    assert cfg.servers["echo"] == ServerConfig(name="echo", command="echo")
    assert dict(cfg.clients) == {}
    assert dict(cfg.defaults) == {}
    echo = cfg.servers["echo"]
    assert (echo.max_in_flight, echo.max_queue) == (8, 256)
    assert (echo.request_timeout, echo.init_timeout) == (60.0, 30.0)
    assert echo.cache == ServerCache()


def test_empty_file_is_an_empty_fleet() -> None:
    cfg = parse_config("", environ={})
    assert dict(cfg.servers) == {}


def test_dataclasses_are_frozen() -> None:
    cfg = parse_config('[servers.echo]\ncommand = "echo"\nenv = { A = "1" }\n', environ={})
    echo = cfg.servers["echo"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        echo.command = "other"  # type: ignore[misc]  # writing a frozen field is what must fail
    with pytest.raises(TypeError):
        echo.env["B"] = "2"  # type: ignore[index]  # env is a read-only mapping: what must fail
    assert isinstance(cfg, FleetConfig)


@pytest.mark.parametrize(
    ("listen", "host_port", "loopback"),
    [
        ("127.0.0.1:8765", ("127.0.0.1", 8765), True),
        ("127.10.0.1:80", ("127.10.0.1", 80), True),
        ("[::1]:8765", ("::1", 8765), True),
        ("localhost:0", ("localhost", 0), True),
        ("0.0.0.0:8765", ("0.0.0.0", 8765), False),
        ("[::]:8765", ("::", 8765), False),
        ("myhost.lan:8765", ("myhost.lan", 8765), False),
    ],
)
def test_http_listen(listen: str, host_port: tuple[str, int], loopback: bool) -> None:
    http = HttpSettings(listen=listen, token="t")
    assert http.host_port() == host_port
    assert http.is_loopback() is loopback


def test_http_listen_empty_disables() -> None:
    cfg = parse_config('[http]\nlisten = ""\n', environ={})
    assert not cfg.http.enabled
    assert cfg.http.is_loopback()
    with pytest.raises(ValueError, match="disabled"):
        cfg.http.host_port()


def test_nonloopback_with_token_is_accepted() -> None:
    cfg = parse_config('[http]\nlisten = "0.0.0.0:8765"\ntoken = "${T}"\n', environ={"T": "x"})
    assert cfg.http.token == "x"


def test_token_expanding_to_empty_is_none() -> None:
    cfg = parse_config('[http]\ntoken = "${UNSET}"\n', environ={})
    assert cfg.http.token is None


def test_environ_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCPS_TEST_TOKEN", "from-env")
    cfg = parse_config('[http]\ntoken = "${MCPS_TEST_TOKEN}"\n')
    assert cfg.http.token == "from-env"


def test_load_config_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(FULL)
    cfg = load_config(path, ENV)
    assert cfg.path == str(path)
    assert cfg.servers["memory"].package == "npm:@modelcontextprotocol/server-memory@2026.8.31"


def test_load_config_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert str(info.value) == f"{path}: cannot read: No such file or directory"


def test_load_config_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    path.write_bytes(b'[servers.a]\ncommand = "\xff"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert (info.value.line, info.value.detail) == (2, "invalid TOML: not UTF-8 text")


def test_shipped_fleet_loads() -> None:
    """The repository's own fleet.toml (27 real servers) must always validate."""
    shipped = Path(__file__).parent.parent / "fleet.toml"
    if not shipped.exists():
        pytest.skip("no shipped fleet.toml in this checkout")
    cfg = load_config(shipped, {})
    assert cfg.servers


# -- bad configs: one fixture per error message ------------------------------------------------------

BAD_CASES = [
    ("not_toml.toml", None, 3, "invalid TOML: Invalid value (at line 3, column 9)"),
    ("unknown_key.toml", "servers.memory.max_inflight", 5, "unknown key (did you mean 'max_in_flight'?)"),
    ("unknown_table.toml", "server", 4, "unknown key (did you mean 'servers'?)"),
    ("missing_command.toml", "servers.memory.command", 4, "missing required key"),
    ("bad_duration.toml", "servers.memory.request_timeout", 3,
     'expected a duration like "15s" (units ms, s, m, h, d), got "12.5.3"'),
    ("bad_size.toml", "servers.memory.memory_limit", 6,
     'expected a size like "512MiB" (units B, KB, MB, GB, KiB, MiB, GiB), got "512 parsecs"'),
    ("wrong_type.toml", "servers.memory.max_in_flight", 3, 'expected an integer, got "8"'),
    ("bad_package.toml", "servers.memory.package", 2,
     'npm package "@modelcontextprotocol/server-memory" must pin an exact version, like '
     '"npm:@modelcontextprotocol/server-memory@1.2.3", got "npm:@modelcontextprotocol/server-memory"'),
    ("unknown_package_source.toml", "servers.fetch.package", 3,
     'expected "npm:NAME@VERSION" or "pypi:NAME==VERSION", got "pip:mcp-server-fetch==2025.4.7"'),
    ("bad_server_name.toml", "servers.git__hub", 4,
     'invalid server name "git__hub": must not contain "__" (it separates server and tool names in the '
     "aggregate)"),
    ("nonloopback_without_token.toml", "http.listen", 3,
     '"0.0.0.0:8765" is not a loopback address; set http.token'),
    ("min_instances_without_stateless.toml", "servers.fetch.min_instances", 4,
     "autoscaling needs stateless = true: only a stateless server can spread its requests over several "
     "instances"),
    ("bad_rate_limit.toml", "servers.brave.rate_limit", 3,
     'expected a rate like "100/min" (count per s, min, hour or day), got "100 per minute"'),
    ("env_not_string.toml", "servers.memory.env.PORT", 3, 'must be a string, got 8080 (quote it: "8080")'),
    ("command_in_defaults.toml", "defaults.command", 3,
     "cannot be set in [defaults]: it names one server's program"),
    ("bad_listen.toml", "http.listen", 2,
     'expected "host:port" (or "[ipv6]:port", or "" to disable), got "localhost"'),
    ("bad_expansion.toml", "servers.github.env.GITHUB_TOKEN", 3, 'unclosed "${" in "${GITHUB_TOKEN"'),
    ("unknown_cache_key.toml", "servers.fetch.cache.ttll", 4, "unknown key (did you mean 'ttl'?)"),
    ("bad_tool_timeout.toml", "servers.fetch.tool_timeouts.crawl", 6,
     'expected a duration like "15s" (units ms, s, m, h, d), got "forever"'),
    ("min_above_max.toml", "servers.fetch.min_instances", 4, "must not exceed max_instances (5 > 2)"),
    ("backoff_inverted.toml", "defaults.backoff_initial", 2,
     "backoff_initial (60s) must not exceed backoff_max (30s) (for server 'fetch')"),
    ("duplicate_client_token.toml", "clients.agent.token", 5,
     "same token as clients.ide: tokens identify clients"),
    ("bad_arg_type.toml", "servers.filesystem.args[1]", 3, "expected a string, got 42"),
]


def test_every_bad_fixture_has_a_case() -> None:
    assert sorted(p.name for p in BAD.glob("*.toml")) == sorted(case[0] for case in BAD_CASES)


@pytest.mark.parametrize(("fixture", "key", "line", "message"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_config(fixture: str, key: str | None, line: int, message: str) -> None:
    path = BAD / fixture
    with pytest.raises(ConfigError) as info:
        load_config(path, {"IDE_TOKEN": "s3cret"})
    err = info.value
    assert (err.key, err.line, err.detail) == (key, line, message)
    assert err.path == str(path)
    prefix = f"{key}: " if key else ""
    assert str(err) == f"{path}:{line}: {prefix}{message}"


def test_error_str_reads_file_line_key_message() -> None:
    text = '[servers.memory]\ncommand = "m"\nmax_inflight = 4\n'
    with pytest.raises(ConfigError) as info:
        parse_config(text, path="fleet.toml", environ={})
    assert str(info.value) == (
        "fleet.toml:3: servers.memory.max_inflight: unknown key (did you mean 'max_in_flight'?)"
    )


def test_line_scanner_is_not_fooled_by_strings_and_arrays() -> None:
    text = '''\
[servers.a]
command = "a"
args = [
  """
max_inflight = 1
[servers.b]
""",
  'x = 1', "y]",  # ] inside strings
]
env = { A = "}", B = "2" }
max_inflight = 1
'''
    with pytest.raises(ConfigError) as info:
        parse_config(text, environ={})
    assert (info.value.key, info.value.line) == ("servers.a.max_inflight", 11)


def test_dotted_keys_get_their_line() -> None:
    text = '[servers]\nfetch.command = "f"\nfetch.max_queue = -1\n'
    with pytest.raises(ConfigError) as info:
        parse_config(text, environ={})
    assert (info.value.key, info.value.line, info.value.detail) == (
        "servers.fetch.max_queue", 3, "must be at least 0, got -1")


def test_unknown_key_without_near_miss_lists_choices() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("[cache]\nzzz = 1\n", environ={})
    assert info.value.detail == (
        "unknown key (expected one of: backend, max_bytes, max_entries, timeout, ttl, url)"
    )


@pytest.mark.parametrize(
    ("text", "key", "detail"),
    [
        ('[servers.a]\ncommand = "a"\nstart = "later"', "servers.a.start",
         "expected one of 'eager', 'lazy', got \"later\""),
        ('[servers.a]\ncommand = "a"\nstateless = "yes"', "servers.a.stateless",
         'expected true or false, got "yes"'),
        ('[servers.a]\ncommand = "a"\nrequest_timeout = "0s"', "servers.a.request_timeout",
         'must be longer than 0s, got "0s"'),
        ('[servers.a]\ncommand = "a"\nrequest_timeout = true', "servers.a.request_timeout",
         'expected a duration like "15s", got true'),
        ('[servers.a]\ncommand = ""', "servers.a.command", "must not be empty"),
        ('[servers.a]\ncommand = "a"\nroots = ["https://x"]', "servers.a.roots[0]",
         'expected a path or a file:// URI, got "https://x"'),
        ('[servers.a]\ncommand = "a"\nrequires_env = ["1X"]', "servers.a.requires_env[0]",
         'invalid environment variable name "1X": use letters, digits and "_" (no leading digit)'),
        ('[servers.a]\ncommand = "a"\npackage = "pypi:x>=1"', "servers.a.package",
         'expected "npm:NAME@VERSION" or "pypi:NAME==VERSION", got "pypi:x>=1"'),
        ('[servers.a]\ncommand = "a"\npackage = "npm:x@latest"', "servers.a.package",
         'npm package "x" must pin an exact version, like "npm:x@1.2.3", got "npm:x@latest"'),
        ('[servers.a]\ncommand = "a"\nscale_down_cpu = 0.9', "servers.a.scale_down_cpu",
         "scale_down_cpu (0.9) must be below scale_up_cpu (0.8)"),
        ('[servers.a]\ncommand = "a"\nrate_limit = { burst = 3 }', "servers.a.rate_limit.rate",
         "missing required key"),
        ('[servers."a b"]\ncommand = "a"', 'servers."a b"',
         'invalid server name "a b": use letters, digits, "_", "." and "-"'),
        ('servers = 3', "servers", "expected a table, got 3"),
        ("[supervisor]\nhealth_interval = \"15s\"", "supervisor.health_interval",
         "a per-server setting: put it under [defaults]"),
        ('[supervisor]\nlog_format = "xml"', "supervisor.log_format",
         "expected one of 'text', 'json', got \"xml\""),
        ('[cache]\nurl = "http://cache"', "cache.url",
         'expected a redis://, rediss:// or unix:// URL, got "http://cache"'),
        ('[http]\nallowed_origins = ["https://a.example/path"]', "http.allowed_origins[0]",
         'expected an origin like "https://app.example.com" (no path), got "https://a.example/path"'),
    ],
)
def test_more_precise_messages(text: str, key: str, detail: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, environ={})
    assert (info.value.key, info.value.detail) == (key, detail)
    assert info.value.line is not None


# -- expansion ---------------------------------------------------------------------------------------

EXPAND_ENV = {"HOME": "/home/me", "EMPTY": "", "A": "a", "B": "b"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "plain"),
        ("${HOME}/x", "/home/me/x"),
        ("${UNSET}", ""),
        ("${EMPTY}", ""),
        ("${UNSET:-fallback}", "fallback"),
        ("${EMPTY:-fallback}", "fallback"),
        ("${HOME:-fallback}", "/home/me"),
        ("${UNSET:-}", ""),
        ("${UNSET:-${A}-${B}}", "a-b"),
        ("${A}${B}", "ab"),
        ("$$", "$"),
        ("$${HOME}", "${HOME}"),
        ("$$$${A}", "$${A}"),
        ("$$${A}", "$a"),
        ("cost: $5", "cost: $5"),
        ("$HOME", "$HOME"),
        ("${UNSET:-a}}", "a}"),
    ],
)
def test_expand(value: str, expected: str) -> None:
    assert expand(value, EXPAND_ENV) == expected


@pytest.mark.parametrize("value", ["${", "${HOME", "${1X}", "${A-b}", "${A:-b", "${}"])
def test_expand_rejects_malformed(value: str) -> None:
    with pytest.raises(ValueError, match=r"\$\{"):
        expand(value, EXPAND_ENV)


@pytest.mark.parametrize(
    ("value", "names"),
    [
        ("plain", []),
        ("${A}/${B}/${A}", ["A", "B"]),
        ("${A:-x}", []),
        ("${A:-${B}}", []),
        ("$${A}", []),
    ],
)
def test_referenced_vars(value: str, names: list[str]) -> None:
    assert referenced_vars(value) == names


# -- units -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("500ms", 0.5),
        ("15s", 15.0),
        ("1.5s", 1.5),
        ("10m", 600.0),
        ("1h", 3600.0),
        ("2d", 172800.0),
        ("2h30m", 9000.0),
        ("1m 30s", 90.0),
        ("15", 15.0),
        ("0.25", 0.25),
        (15, 15.0),
        (2.5, 2.5),
        ("0s", 0.0),
    ],
)
def test_parse_duration(value: str | int | float, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value", ["", "12.5.3", "15 sec", "s", "-1s", -1, "1y", "forever", True, float("inf")]
)
def test_parse_duration_rejects(value: str | int | float) -> None:
    with pytest.raises(ValueError, match='expected a duration like "15s"'):
        parse_duration(value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.5, "500ms"),
        (0.0, "0ms"),
        (15, "15s"),
        (1.5, "1.5s"),
        (600, "10m"),
        (3600, "1h"),
        (3720, "1h2m"),
        (90, "1m30s"),
        (90061, "1d1h1m1s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(round(seconds, 3))


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("512MiB", 512 * MiB),
        ("3GiB", 3 * 1024**3),
        ("100MB", 100_000_000),
        ("1024", 1024),
        (1024, 1024),
        ("64KiB", 65536),
        ("1.5GiB", 1536 * MiB),
        ("256mib", 256 * MiB),
        ("2Gi", 2 * 1024**3),
        ("10 B", 10),
    ],
)
def test_parse_size(value: str | int, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize("value", ["", "MiB", "12 parsecs", "1.2.3MiB", "-5", -5, "5k", True, 1.5])
def test_parse_size_rejects(value: str | int) -> None:
    with pytest.raises(ValueError, match='expected a size like "512MiB"'):
        parse_size(value)


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0B"),
        (512, "512B"),
        (64 * 1024, "64KiB"),
        (612 * MiB, "612MiB"),
        (1536 * MiB, "1.5GiB"),
        (3 * 1024**3, "3GiB"),
        (2 * 1024**4, "2TiB"),
    ],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text
    assert parse_size(text) == size


# -- rate limits and fingerprints --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rate", "burst"),
    [
        ("100/min", 100 / 60, 100),
        ("10/s", 10.0, 10),
        ("5/sec", 5.0, 5),
        ("1000/hour", 1000 / 3600, 1000),
        ("100/m", 100 / 60, 100),
        ("50/day", 50 / 86400, 50),
    ],
)
def test_rate_limit_parse(text: str, rate: float, burst: int) -> None:
    limit = RateLimit.parse(text)
    assert limit.rate == pytest.approx(rate)
    assert (limit.burst, limit.text) == (burst, text)


@pytest.mark.parametrize("text", ["100", "0/s", "10/fortnight", "ten/s", "100 per minute"])
def test_rate_limit_rejects(text: str) -> None:
    with pytest.raises(ValueError, match='expected a rate like "100/min"'):
        RateLimit.parse(text)


def test_fingerprint_equal_for_equal_entries() -> None:
    a = parse_config(FULL, environ=ENV).servers["search"]
    other_env = {**ENV, "FLEET_TOKEN": "other", "STATE_DIRECTORY": "/elsewhere"}
    b = parse_config(FULL, environ=other_env).servers["search"]  # servers keep raw ${VAR}
    assert a == b
    assert a.fingerprint() == b.fingerprint()
    assert len(a.fingerprint()) == 16
    int(a.fingerprint(), 16)


def test_fingerprint_changes_with_any_field() -> None:
    base = ServerConfig(name="x", command="run")
    variants = [
        dataclasses.replace(base, command="walk"),
        dataclasses.replace(base, args=("-v",)),
        dataclasses.replace(base, env={"A": "1"}),
        dataclasses.replace(base, tool_timeouts={"t": 1.0}),
        dataclasses.replace(base, max_in_flight=9),
        dataclasses.replace(base, rate_limit=RateLimit.parse("1/s")),
        dataclasses.replace(base, cache=ServerCache(tools=("t",))),
        dataclasses.replace(base, name="y"),
    ]
    prints = {v.fingerprint() for v in variants}
    assert base.fingerprint() not in prints
    assert len(prints) == len(variants)


def test_fingerprint_ignores_mapping_order() -> None:
    one = ServerConfig(name="x", command="run", env={"A": "1", "B": "2"})
    two = ServerConfig(name="x", command="run", env={"B": "2", "A": "1"})
    assert one.fingerprint() == two.fingerprint()


# -- public surface ----------------------------------------------------------------------------------


def test_public_surface_is_pinned() -> None:
    assert config_module.__all__ == sorted(config_module.__all__)
    assert units_module.__all__ == sorted(units_module.__all__)
    for name in config_module.__all__:
        assert hasattr(config_module, name)
    assert set(units_module.__all__) == {"format_duration", "format_size", "parse_duration", "parse_size"}
