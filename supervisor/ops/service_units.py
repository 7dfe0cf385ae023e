"""systemd units for the daemon, rendered from one template for both the system and the user manager.

`systemd/mcp-supervisor.service` and `systemd/user/mcp-supervisor.service` in the repository are
this module's output with the default `mcpctl` paths (a test keeps them identical);
`mcpctl service install` renders them again with the path of the `mcpctl` that runs it.

Paths use systemd specifiers so one text fits both managers: `%E` is /etc (system) or
$XDG_CONFIG_HOME (user), `%t` is /run or $XDG_RUNTIME_DIR, `%S` is /var/lib or $XDG_STATE_HOME.
"""

from __future__ import annotations

SYSTEM_MCPCTL = "/opt/mcp-supervisor/bin/mcpctl"
USER_MCPCTL = "%h/.local/bin/mcpctl"
SERVICE_USER = "mcp-supervisor"
UNIT_NAME = "mcp-supervisor.service"

_HEAD = """\
# mcp-supervisor: {what}.
# Written by `mcpctl service install{flag}`; edit with `systemctl {ctl}edit mcp-supervisor`
# rather than here, so a reinstall keeps your changes.
[Unit]
Description=mcp-supervisor: a fleet of local MCP servers behind one daemon
{order}# Five failed starts in five minutes: stop trying (`systemctl reset-failed` to try again).
StartLimitIntervalSec=300
StartLimitBurst=5

[Service]
Type=notify
# Only the daemon itself may talk to systemd; its MCP children cannot claim READY or ping.
NotifyAccess=main
ExecStart={mcpctl} --config {config} serve
# SIGHUP: re-read fleet.toml and apply it as a diff; RELOADING=1/READY=1 bracket it.
ExecReload=/bin/kill -HUP $MAINPID
Environment=MCP_SUPERVISOR_SOCKET=%t/mcp-supervisor/control.sock
Environment=PYTHONUNBUFFERED=1
# API keys: {secrets}
# or a systemd credential, `LoadCredential=BRAVE_API_KEY:/path/to/file` (`systemctl {ctl}edit`),
# read from $CREDENTIALS_DIRECTORY. Both are read at every server start: `mcpctl restart NAME`
# picks a new key up without restarting the daemon.
# The daemon pings from its event loop every WatchdogSec/2; a stuck loop gets restarted.
WatchdogSec=30s
# READY=1 comes once every eager server has settled (at most 90 s in).
TimeoutStartSec=120s
# SIGTERM to the daemon only: it stops every child tree in order (stdin, SIGTERM, SIGKILL).
# Whatever is left when TimeoutStopSec runs out gets SIGKILL from systemd (KillMode=mixed).
KillMode=mixed
TimeoutStopSec=60s
Restart=on-failure
RestartSec=2s
# MCP children are many processes with many pipes.
LimitNOFILE=65536
UMask=0077
"""

_SYSTEM = """\
User={user}
Group={user}
# /run/mcp-supervisor (control socket, pid records), /var/lib/mcp-supervisor (children's homes,
# state, logs/NAME.log), /etc/mcp-supervisor (fleet.toml, read-only for the service).
RuntimeDirectory=mcp-supervisor
RuntimeDirectoryMode=0700
StateDirectory=mcp-supervisor
StateDirectoryMode=0700
ConfigurationDirectory=mcp-supervisor
# Packages from `mcpctl install` live in the state dir too, so ProtectSystem=strict can stay on.
Environment=MCP_SUPERVISOR_DATA=%S/mcp-supervisor/packages
Environment=HOME=%S/mcp-supervisor

# Hardening that node and python children still run under. Not set, on purpose:
#   MemoryDenyWriteExecute (V8 and other JITs need W+X pages),
#   PrivateNetwork / IPAddressDeny (servers call their APIs),
#   ProtectHome=yes (a filesystem server serving /home needs to read it; read-only is the default
#   here, and `systemctl edit` can add ProtectHome=yes or ReadWritePaths= for your fleet).
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=read-only
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
SystemCallArchitectures=native
SystemCallFilter=@system-service
CapabilityBoundingSet=
AmbientCapabilities=

[Install]
WantedBy=multi-user.target
"""

_USER = """\
# A user manager cannot apply most sandboxing without user namespaces, and a personal fleet
# works on your files, so this unit keeps to what always works.
NoNewPrivileges=yes
RestrictSUIDSGID=yes
LockPersonality=yes

[Install]
WantedBy=default.target
"""


DEFAULT_CONFIG = "%E/mcp-supervisor/fleet.toml"
_USER_SECRETS = ("`mcpctl secret set NAME VAR` writes them (mode 0600) to\n"
                 "# ~/.config/mcp-supervisor/secrets.env, the daemon's [supervisor] env_file;")
_SYSTEM_SECRETS = (f"a dotenv file owned by {SERVICE_USER}, mode 0600, named by\n"
                   "# [supervisor] env_file in fleet.toml (`mcpctl secret set NAME VAR` writes it);")


def _quote(value: str) -> str:
    """A literal path as one systemd command-line word: `%` and `$` escaped, quoted when needed."""
    value = value.replace("%", "%%").replace("$", "$$")
    if any(c.isspace() or c in "\"\\" for c in value):
        value = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def render(*, user: bool, mcpctl: str | None = None, config: str | None = None) -> str:
    """The unit file text. `mcpctl`: absolute path of the executable (or a %-specifier path);
    `config`: fleet.toml to use (default: mcp-supervisor/fleet.toml in the manager's config dir)."""
    if mcpctl is not None:
        mcpctl = _quote(mcpctl)
    config = _quote(config) if config is not None else DEFAULT_CONFIG
    if user:
        head = _HEAD.format(what="per-user service (systemctl --user)", flag=" --user", ctl="--user ",
                            order="", mcpctl=mcpctl or USER_MCPCTL, config=config,
                            secrets=_USER_SECRETS)
        return head + _USER
    head = _HEAD.format(what="system service, run as the dedicated user " + SERVICE_USER, flag="",
                        ctl="", order="After=network-online.target\nWants=network-online.target\n",
                        mcpctl=mcpctl or SYSTEM_MCPCTL, config=config,
                        secrets=_SYSTEM_SECRETS)
    return head + _SYSTEM.format(user=SERVICE_USER)


__all__ = ["DEFAULT_CONFIG", "SERVICE_USER", "SYSTEM_MCPCTL", "UNIT_NAME", "USER_MCPCTL", "render"]
