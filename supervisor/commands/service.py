"""mcpctl service install [--user] | service print [--user]: run the daemon under systemd.

`install` writes mcp-supervisor.service with the path of this very `mcpctl` (the one in your venv)
and prints the commands that finish the job; it runs none of them. Without --user: a system
service (/etc/systemd/system) running as the dedicated user `mcp-supervisor`, with fleet.toml in
/etc/mcp-supervisor, state and packages in /var/lib/mcp-supervisor and the control socket in
/run/mcp-supervisor. With --user: a per-user service (~/.config/systemd/user) reading
~/.config/mcp-supervisor/fleet.toml. `print` shows the unit without writing anything.

Both units are Type=notify with a watchdog: systemd knows when the fleet is up, restarts a daemon
whose event loop is stuck, and `systemctl reload` re-reads fleet.toml (SIGHUP).
"""

from __future__ import annotations

import argparse

from ._client import err, out

NAME = "service"
HELP = "install the systemd unit (system or --user) and say how to enable it"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("install", "print"))
    parser.add_argument("--user", action="store_true", help="a per-user unit (systemctl --user)")
    parser.add_argument("--unit-dir", metavar="DIR",
                        help="where to write the unit (default: /etc/systemd/system, or "
                             "$XDG_CONFIG_HOME/systemd/user with --user)")
    parser.add_argument("--mcpctl", metavar="PATH", help="the mcpctl the unit runs (default: this one)")


def _this_mcpctl() -> str:
    import shutil
    import sys
    from pathlib import Path

    beside = Path(sys.executable).with_name("mcpctl")
    if beside.is_file():
        return str(beside.absolute())
    found = shutil.which("mcpctl")
    return str(Path(found).absolute()) if found else str(Path(sys.argv[0]).absolute())


def _unit_dir(args: argparse.Namespace) -> str:
    import os
    from pathlib import Path

    if args.unit_dir:
        return str(args.unit_dir)
    if not args.user:
        return "/etc/systemd/system"
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return str(Path(config) / "systemd" / "user")


def _next_steps(args: argparse.Namespace, mcpctl: str, config: str | None) -> list[str]:
    from supervisor.ops.service_units import SERVICE_USER

    if args.user:
        fleet = config or "~/.config/mcp-supervisor/fleet.toml"
        return [
            f"# put your fleet.toml at {fleet} first",
            f"{mcpctl} --config {fleet} install",
            "systemctl --user daemon-reload",
            "systemctl --user enable --now mcp-supervisor",
            "loginctl enable-linger \"$USER\"   # keeps it running while you are logged out",
            "systemctl --user status mcp-supervisor; journalctl --user -u mcp-supervisor -f",
        ]
    fleet = config or "/etc/mcp-supervisor/fleet.toml"
    state = "/var/lib/mcp-supervisor"
    return [
        f"useradd --system --create-home --home-dir {state} --shell /usr/sbin/nologin {SERVICE_USER}",
        f"install -d -m 0755 /etc/mcp-supervisor && install -m 0644 fleet.toml {fleet}",
        f"sudo -u {SERVICE_USER} env HOME={state} MCP_SUPERVISOR_DATA={state}/packages "
        f"{mcpctl} --config {fleet} install",
        "systemctl daemon-reload",
        "systemctl enable --now mcp-supervisor",
        "systemctl status mcp-supervisor; journalctl -u mcp-supervisor -f",
        "mcpctl status   # as root it finds /run/mcp-supervisor/control.sock",
    ]


def run(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from supervisor.ops.service_units import SERVICE_USER, UNIT_NAME, render

    mcpctl = args.mcpctl or _this_mcpctl()
    config = str(Path(args.config).absolute()) if args.config else None
    text = render(user=args.user, mcpctl=mcpctl, config=config)
    if args.action == "print":
        out(text.rstrip("\n"))
        return 0
    target = Path(_unit_dir(args)) / UNIT_NAME
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{UNIT_NAME}.tmp")
        tmp.write_text(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        hint = "" if args.user else " (a system unit needs root: sudo, or --user for your own)"
        err(f"mcpctl service: cannot write {target}: {exc.strerror or exc}{hint}")
        return 1
    out(f"wrote {target}")
    out(f"  ExecStart={mcpctl} serve")
    if not args.user and mcpctl.startswith(("/home/", "/root/")):
        out(f"  note: the {SERVICE_USER} user must be able to read {mcpctl}; a venv under "
            "/opt/mcp-supervisor is the usual place (ProtectHome=read-only allows reading it)")
    out("")
    out("then run" + ("" if args.user else " as root") + ":")
    for step in _next_steps(args, mcpctl, config):
        out(f"  {step}")
    return 0
