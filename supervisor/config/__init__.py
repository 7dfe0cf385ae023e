"""`fleet.toml` → frozen dataclasses, validated once, here.

    load_config(path) / parse_config(text)                              load.py
        tomllib            syntax errors keep tomllib's line and column
        _LineIndex         key path → line, found by scanning the raw text   lines.py
        _convert_table     one converter per known key; unknown keys get a   convert.py
                           "did you mean" hint
        [defaults] merge   every per-server key except command/args/package; `cache` merges key-wise
        cross-field checks backoff_initial <= backoff_max, autoscaling only when stateless, ...
        → FleetConfig      and the other frozen dataclasses                  model.py

    expand(value, environ), references, referenced_vars: `${VAR}`      expand.py
    PackageSpec: the `npm:NAME@VERSION` / `pypi:NAME==VERSION` pin grammar  package.py

Every failure is a `ConfigError` whose `str()` reads
`fleet.toml:12: servers.memory.max_inflight: unknown key (did you mean 'max_in_flight'?)`.
Nothing else in the codebase should convert config values: durations are float seconds, sizes are
int bytes, rates are `RateLimit`.

Daemon-level strings (`[http] token`, `[supervisor] state_dir`, `[cache] url`, client tokens, `listen`)
are expanded from `environ` at load time. A server's `command`, `args`, `env`, `cwd` and `roots` keep
their raw `${VAR}` text (only its syntax is checked); the daemon expands them at spawn time with
`expand`, against the environment the child will see.

The public names are re-exported here: import them from `supervisor.config`, not from the modules.
"""

from __future__ import annotations

from supervisor.config.convert import name_problem
from supervisor.config.expand import expand, referenced_vars, references
from supervisor.config.load import load_config, parse_config
from supervisor.config.model import (
    AggregateSettings,
    CacheSettings,
    ClientSettings,
    ClusterSettings,
    FleetConfig,
    HttpSettings,
    ListPolicy,
    RateLimit,
    ServerCache,
    ServerConfig,
    SupervisorSettings,
    TaskSettings,
    TracingSettings,
    is_loopback_host,
)

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
    "TaskSettings",
    "TracingSettings",
    "expand",
    "is_loopback_host",
    "load_config",
    "name_problem",
    "parse_config",
    "referenced_vars",
    "references",
]
