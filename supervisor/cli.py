"""`mcpctl`: the command line. Each verb lives in its own module under `supervisor.commands`.

Exit codes: 0 success, 1 the operation failed (or the daemon is not running), 2 usage errors and
unknown servers.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from types import ModuleType

from . import __version__, commands


def _verbs() -> list[ModuleType]:
    modules = []
    for info in pkgutil.iter_modules(commands.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        if hasattr(module, "NAME") and hasattr(module, "run"):
            modules.append(module)
    return sorted(modules, key=lambda m: str(m.NAME))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcpctl", description="Run, share and watch a fleet of local MCP servers.")
    parser.add_argument("--version", action="version", version=f"mcp-supervisor {__version__}")
    parser.add_argument("--socket", metavar="PATH",
                        help="control socket (default: $MCP_SUPERVISOR_SOCKET, "
                             "$XDG_RUNTIME_DIR/mcp-supervisor/control.sock, /run/mcp-supervisor/...)")
    parser.add_argument("--config", metavar="PATH",
                        help="fleet.toml (default: $MCP_SUPERVISOR_CONFIG, ./fleet.toml, "
                             "$XDG_CONFIG_HOME/mcp-supervisor/fleet.toml, /etc/mcp-supervisor/fleet.toml)")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND")
    sub.required = True
    for module in _verbs():
        doc = (module.__doc__ or "").strip()
        verb = sub.add_parser(module.NAME, help=module.HELP, description=doc,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
        module.configure(verb)
        verb.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
