"""mcpctl clients [link CLIENT | unlink CLIENT] [--dry-run]: the MCP clients on this machine.

Without an action: each client config found (Claude Desktop, Claude Code, Cursor, VS Code,
Windsurf; user and project files) and, per server entry, whether it goes through the daemon.
`link CLIENT` rewrites that client's entries for servers the fleet has, to `mcpctl connect NAME`
(the same entry `config-snippet` prints: absolute path, `--socket` when needed); a copy of the file
is kept beside it (FILE.mcp-supervisor.bak), comments and unrelated keys are kept, and running it
twice changes nothing. `unlink CLIENT` puts the original entries back from that copy. `--dry-run`
prints the unified diff and writes nothing. With `mcpctl import` and `mcpctl install`, this is the
whole migration: import, install, link.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from supervisor.client_configs.known import ConfigFile

NAME = "clients"
HELP = "list the MCP clients on this machine; link or unlink them to the daemon"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    for action, help_text in (("link", "point CLIENT's entries for fleet servers at the daemon"),
                              ("unlink", "put CLIENT's original entries back")):
        verb = sub.add_parser(action, help=help_text)
        verb.add_argument("client", metavar="CLIENT",
                          help="claude-desktop, claude-code, cursor, vscode or windsurf")
        verb.add_argument("--dry-run", action="store_true", help="print the diff, write nothing")


def env_notes(text: str, table: ConfigFile, names: list[str]) -> list[str]:
    """The variables a linked entry set for its server: the daemon needs them now."""
    from supervisor.client_configs.importer import fleet_name
    from supervisor.client_configs.known import servers_of

    before = servers_of(text, table.table)
    notes: list[str] = []
    for name in names:
        env = before.get(name, {}).get("env") if isinstance(before.get(name), dict) else None
        notes.extend(f"note: {name} had {var} in this client's config; give it to the daemon: "
                     f"mcpctl secret set {fleet_name(name)} {var}"
                     for var in (env if isinstance(env, dict) else {}))
    return notes


def mask_entries(diff: str, texts: list[str], tables: list[ConfigFile]) -> str:
    """The diff with every `env` value and secret-looking argument of the entries shown as `***`:
    a client config often holds API keys literally, and a dry run must not print them."""
    from supervisor.client_configs.importer import _looks_secret_value
    from supervisor.client_configs.known import servers_of
    from supervisor.config.secrets_mask import Masker

    values: list[str] = []
    for text in texts:
        for table in tables:
            for entry in servers_of(text, table.table).values():
                if not isinstance(entry, dict):
                    continue
                env = entry.get("env")
                values += [v for v in (env.values() if isinstance(env, dict) else ()) if isinstance(v, str)]
                args = entry.get("args") or []
                values += [a for a in args if isinstance(a, str) and _looks_secret_value(a)]
    redact = Masker()
    redact.update(values)
    return redact(diff)


def run(args: argparse.Namespace) -> int:
    import difflib
    import os
    from pathlib import Path

    from supervisor import paths
    from supervisor.client_configs.entry import stdio_entry
    from supervisor.client_configs.jsonc import JsoncError
    from supervisor.client_configs.known import CLIENTS, entries, find, link_text, unlink_text, write_atomic
    from supervisor.config import load_config
    from supervisor.errors import ConfigError

    from ._client import err, out

    try:
        config = load_config(paths.resolve_config(getattr(args, "config", None)))
    except (ConfigError, FileNotFoundError) as exc:
        err(f"mcpctl clients: {exc}")
        return 1
    home = Path(os.environ.get("HOME") or Path.home())
    files = find(home, Path.cwd(), os.environ)
    if args.action is None:
        if not files:
            out("No MCP client configs found (Claude Desktop, Claude Code, Cursor, VS Code, Windsurf).")
            return 0
        words = {"daemon": "through the daemon", "direct": "direct (in the fleet: link it)",
                 "other": "direct (not in the fleet: mcpctl import)", "remote": "remote URL"}
        for file in files:
            out(f"{file.label} ({file.client}, {file.scope}): {file.path}")
            rows = entries(file, config.servers)
            width = max([len(e.name) for e in rows] + [4])
            for entry in rows:
                out(f"  {entry.name:<{width}}  {words[entry.status]}")
            if not rows:
                out("  (no servers)")
        return 0
    if args.client not in CLIENTS:
        err(f"mcpctl clients: unknown client {args.client!r} (one of: {', '.join(CLIENTS)})")
        return 2
    chosen = [f for f in files if f.client == args.client]
    if not chosen:
        err(f"mcpctl clients: no {args.client} config found")
        return 1
    socket = paths.resolve_socket(getattr(args, "socket", None))
    code = 0
    # One file may hold two tables (~/.claude.json: user and project servers): edit in sequence.
    by_path: dict[Path, list[ConfigFile]] = {}
    for file in chosen:
        by_path.setdefault(file.path, []).append(file)
    for path, tables in by_path.items():
        try:
            original = path.read_text(encoding="utf-8")
            text = original
            changed: list[str] = []
            notes: list[str] = []
            backup_path = tables[0].backup
            if args.action == "link":
                for table in tables:
                    text, names = link_text(text, table, config.servers,
                                            lambda name: stdio_entry(name, socket, os.environ))
                    changed += names
                    notes += env_notes(original, table, names)
            else:
                if not backup_path.exists():
                    out(f"{path}: no backup ({backup_path.name}) to restore from; nothing to do")
                    continue
                backup = backup_path.read_text(encoding="utf-8")
                for table in tables:
                    text, names = unlink_text(text, backup, table)
                    changed += names
        except (OSError, ValueError, JsoncError) as exc:
            err(f"mcpctl clients: {path}: {exc}")
            code = 1
            continue
        if text == original:
            out(f"{path}: already {'linked' if args.action == 'link' else 'unlinked'}; nothing to change")
            continue
        if args.dry_run:
            diff = "".join(difflib.unified_diff(original.splitlines(keepends=True),
                                                text.splitlines(keepends=True),
                                                fromfile=str(path), tofile=f"{path} ({args.action}ed)"))
            out(mask_entries(diff, [original, text], tables))
            continue
        if args.action == "link" and not backup_path.exists():
            write_atomic(backup_path, original, path.stat().st_mode & 0o777)
        write_atomic(path, text)
        if args.action == "unlink" and text == backup_path.read_text(encoding="utf-8"):
            backup_path.unlink()
        for note in notes:
            out(note)
        verb = ("now go" if len(changed) > 1 else "now goes") + " through the daemon" \
            if args.action == "link" else "restored"
        out(f"{path}: {', '.join(changed)} {verb}" + (f" (backup: {backup_path})"
                                                       if args.action == "link" else ""))
    if args.action == "link" and code == 0 and not args.dry_run:
        out("Restart the client (or reload its MCP servers) to use them.")
    return code
