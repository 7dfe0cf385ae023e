"""mcpctl import [PATH...] [--write [--force]] [--format F] [--offline]: client configs → fleet.toml.

Reads Claude Desktop, Cursor, Windsurf, VS Code and Claude Code MCP configs (with no PATH: the
usual places, and says which it found) and prints equivalent `[servers.NAME]` entries on stdout.
Project-local configs in the current directory (`.mcp.json`, `.vscode/mcp.json`, `.cursor/mcp.json`)
come with the repository, which may be a fresh clone: without a PATH they are listed but only
imported with `--project` (naming one as a PATH imports it too).
`npx -y PKG` / `uvx PKG` entries become pinned `package` entries (one registry lookup each, unless
`--offline`); remote (`url`) entries are listed as skipped. Literal secrets become `${NAME}`
placeholders and are never printed. `--write` merges the entries into the config file, refusing
on name clashes unless `--force`. Exit 1 when nothing could be read or the write was refused.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

NAME = "import"
HELP = "convert MCP client configs (Claude Desktop, Cursor, VS Code, Claude Code) into fleet.toml entries"


def configure(parser: argparse.ArgumentParser) -> None:
    from supervisor.client_configs.importer import FORMATS

    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="client config files (default: look in the usual places)")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="read every PATH as this client's format (default: from the file)")
    parser.add_argument("--write", action="store_true", help="merge the entries into the config file")
    parser.add_argument("--force", action="store_true", help="with --write: replace servers of the same name")
    parser.add_argument("--project", action="store_true",
                        help="with no PATH: also import the current directory's .mcp.json, "
                             ".vscode/mcp.json and .cursor/mcp.json (they come with the repository)")
    parser.add_argument("--offline", action="store_true",
                        help="no registry lookups: npx/uvx entries get a pin to fill in")


def _say(message: str) -> None:
    sys.stderr.write(message + "\n")


def run(args: argparse.Namespace) -> int:
    from supervisor import paths
    from supervisor.client_configs import importer

    found: list[tuple[Path, str | None]]
    if args.paths:
        found = [(Path(p), args.format) for p in args.paths]
    else:
        discovered = importer.discover(Path.home(), Path.cwd(), os.environ)
        found = [(d.path, d.fmt) for d in discovered if args.project or not d.project]
        for held in (d for d in discovered if d.project and not args.project):
            _say(f"found project config {held.path}: not imported (it comes with the repository; "
                 "pass --project or name it as a PATH to import it)")
        if not found:
            _say("mcpctl import: no MCP client config found in the usual places "
                 "(Claude Desktop, Cursor, Windsurf, VS Code, Claude Code); pass a PATH")
            return 1
    sources = []
    failed = False
    for path, fmt in found:
        try:
            source = importer.load_source(path, fmt)
        except importer.UnreadableClientConfig as exc:
            _say(f"mcpctl import: {exc}")
            failed = True
            continue
        count = len(source.servers)
        _say(f"found {source.label} config: {path} ({count} server{'' if count == 1 else 's'})")
        sources.append(source)
    if not sources:
        return 1
    items: list[importer.Imported] = []
    skipped: list[importer.Skipped] = []
    for source in sources:
        got, left = importer.convert(source)
        items.extend(got)
        skipped.extend(left)
    for skip in skipped:
        _say(f"skipped {skip.name} ({skip.source}): {skip.reason}")
    importer.resolve_pins(items, offline=args.offline)
    items = importer.dedupe(items)
    if not args.write:
        sys.stdout.write(importer.render_toml(items, skipped, sources))
        return 1 if failed else 0
    if not items:
        _say("mcpctl import: nothing to write")
        return 1
    target = paths.resolve_config(getattr(args, "config", None))
    try:
        replaced = importer.merge_into(target, items, force=args.force)
    except (importer.MergeRefused, OSError) as exc:
        _say(f"mcpctl import: refusing to write {target}: {exc}")
        return 1
    names = " ".join(item.name for item in items)
    also = f" (replaced: {', '.join(replaced)})" if replaced else ""
    _say(f"wrote {len(items)} servers to {target}{also}")
    _say(f"next: mcpctl install {names}; mcpctl secret set NAME VAR for each variable it needs; "
         "then mcpctl clients link CLIENT to point the client at the daemon")
    return 1 if failed else 0
