"""The MCP clients on this machine, and rewriting their entries to go through the daemon.

    find(home, cwd, environ)            every client config found (user and project), per client
    entries(config_file, fleet)         each server entry: through the daemon, direct, or not ours
    link(config_file, fleet, make)      text with the fleet's entries replaced by `make(name)`
    unlink(config_file, backup_text)    text with those entries put back as the backup has them

Only the entries' values are replaced, by their exact spans (`jsonc.spans`), so comments, key
order, indentation and unrelated keys stay byte for byte; the first `link` that changes a file
keeps a copy of it beside it (`FILE.mcp-supervisor.bak`), and `unlink` restores each entry from
that copy: link then unlink gives back the original bytes. Linking twice changes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import jsonc as jsonc_spans
from .importer import _LABELS, discover, fleet_name, strip_jsonc

CLIENTS = ("claude-desktop", "claude-code", "cursor", "vscode", "windsurf")
BACKUP_SUFFIX = ".mcp-supervisor.bak"


@dataclass(frozen=True)
class ConfigFile:
    client: str
    path: Path
    scope: str  # "user" or "project"
    table: tuple[str, ...]  # key path of the servers object: ("mcpServers",), ("servers",), ...

    @property
    def label(self) -> str:
        return _LABELS.get(self.client, self.client)

    @property
    def backup(self) -> Path:
        return self.path.with_name(self.path.name + BACKUP_SUFFIX)


@dataclass(frozen=True)
class Entry:
    name: str
    status: str  # "daemon", "direct" (in the fleet, not linked), "other" (not in the fleet), "remote"
    fleet_server: str | None


def _tables(client: str, doc: Mapping[str, Any], cwd: Path) -> list[tuple[str, ...]]:
    if client == "vscode":
        if isinstance(doc.get("servers"), dict):
            return [("servers",)]
        mcp = doc.get("mcp")
        return [("mcp", "servers")] if isinstance(mcp, dict) and isinstance(mcp.get("servers"), dict) else []
    found: list[tuple[str, ...]] = [("mcpServers",)] if isinstance(doc.get("mcpServers"), dict) else []
    projects = doc.get("projects")
    if client == "claude-code" and isinstance(projects, dict):
        project = projects.get(str(cwd))
        if isinstance(project, dict) and isinstance(project.get("mcpServers"), dict):
            found.append(("projects", str(cwd), "mcpServers"))
    return found


def load_doc(path: Path) -> tuple[str, dict[str, Any]]:
    import json

    text = path.read_text(encoding="utf-8")
    doc = json.loads(strip_jsonc(text)) if text.strip() else {}
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a JSON object at the top")
    return text, doc


def find(home: Path, cwd: Path, environ: Mapping[str, str]) -> list[ConfigFile]:
    """Every config file of a client we know, with the server tables it holds."""
    found: list[ConfigFile] = []
    for where in discover(home, cwd, environ):
        path, fmt = where.path, where.fmt
        if fmt not in CLIENTS:
            continue
        try:
            _text, doc = load_doc(path)
        except (OSError, ValueError):
            continue
        scope = _scope(path, home, cwd)
        found.extend(ConfigFile(fmt, path, "project" if table[0] == "projects" else scope, table)
                     for table in _tables(fmt, doc, cwd))
    return found


def _scope(path: Path, home: Path, cwd: Path) -> str:
    """"project" for the files a project carries (`.mcp.json`, `.cursor/` and `.vscode/` in the
    working directory), "user" for the rest."""
    if cwd.resolve() == home.resolve():
        return "user"
    parent = path.resolve().parent
    here = cwd.resolve()
    if parent == here or (parent.parent == here and parent.name in (".cursor", ".vscode")):
        return "project"
    return "user"


def through_daemon(entry: Any) -> bool:
    """An entry that runs `mcpctl connect ...`."""
    if not isinstance(entry, dict):
        return False
    command = str(entry.get("command") or "")
    args = entry.get("args") or []
    return os.path.basename(command) == "mcpctl" and isinstance(args, list) and "connect" in args


def servers_of(text: str, table: tuple[str, ...]) -> dict[str, Any]:
    import json

    node: Any = json.loads(strip_jsonc(text))
    for key in table:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def entries(config: ConfigFile, fleet: Mapping[str, Any]) -> list[Entry]:
    text, _doc = load_doc(config.path)
    out = []
    for name, entry in servers_of(text, config.table).items():
        ours = fleet_name(name) if fleet_name(name) in fleet else None
        if through_daemon(entry):
            status = "daemon"
        elif isinstance(entry, dict) and "url" in entry and "command" not in entry:
            status = "remote"
        else:
            status = "direct" if ours else "other"
        out.append(Entry(name, status, ours))
    return out


def link_text(text: str, config: ConfigFile, fleet: Mapping[str, Any],
              make: Callable[[str], dict[str, Any]]) -> tuple[str, list[str]]:
    """`text` with each entry for a fleet server replaced by `make(fleet_name)`; the names linked."""
    found = servers_of(text, config.table)
    step = jsonc_spans.guess_step(text)
    linked = []
    # Right to left, so earlier spans stay valid while later ones are replaced.
    places = jsonc_spans.spans(text)
    todo = []
    for name, entry in found.items():
        target = fleet_name(name)
        if target not in fleet or through_daemon(entry) or not isinstance(entry, dict):
            continue
        if "url" in entry and "command" not in entry:
            continue  # a remote server: nothing of ours to run
        new: dict[str, Any] = {"type": "stdio"} if "type" in entry or config.client == "vscode" else {}
        new.update(make(target))
        todo.append((places[(*config.table, name)], new))
        linked.append(name)
    for span, new in sorted(todo, key=lambda item: item[0][0], reverse=True):
        indent = jsonc_spans.indent_of(text, span[0])
        text = jsonc_spans.replace(text, span, jsonc_spans.render(new, indent, step))
    return text, linked


def unlink_text(text: str, backup: str, config: ConfigFile) -> tuple[str, list[str]]:
    """`text` with each entry that goes through the daemon put back as `backup` has it."""
    now = servers_of(text, config.table)
    before_spans = jsonc_spans.spans(backup)
    places = jsonc_spans.spans(text)
    todo = []
    for name, entry in now.items():
        key = (*config.table, name)
        if through_daemon(entry) and key in before_spans:
            start, end = before_spans[key]
            todo.append((places[key], backup[start:end], name))
    for span, original, _name in sorted(todo, key=lambda item: item[0][0], reverse=True):
        text = jsonc_spans.replace(text, span, original)
    return text, [name for _span, _original, name in todo]


def write_atomic(path: Path, text: str, mode: int | None = None) -> None:
    """Replace `path` with `text`, keeping its mode (a client config may hold tokens)."""
    if mode is None:
        try:
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = 0o600
    tmp = path.with_name(f".{path.name}.mcp-supervisor.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
