"""Pinned tool definitions: a server's tools as first seen (or last approved), kept in the state dir.

The first time a tool is seen its definition (name, title, description, input and output schema,
annotations) is stored in `STATE/tool-pins/SERVER.json`. A later list that differs from the pin is
a change (the "rug pull": a server quietly rewording what a tool does after it was trusted): the
server logs it, counts it, shows it in status, and with `on_tool_change = "block"` hides the tool
until `mcpctl tools approve SERVER [TOOL]` pins the new definition. Changes are not stored: after a
daemon restart the child lists again, and a definition still differing from its pin is a change
again, so a block survives restarts.

The file is small (one server's tool definitions) and written rarely (new tools, approvals), with
a temporary file and a rename, mode 0600.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from .clock import SYSTEM_CLOCK, Clock

log = logging.getLogger("mcp_supervisor.pins")

FIELDS = ("name", "title", "description", "inputSchema", "outputSchema", "annotations")
MAX_FILE = 16 * 1024 * 1024  # a pin file larger than this is not read (and not trusted)


def definition(tool: dict[str, Any]) -> dict[str, Any]:
    """The parts of a tool a client relies on (what pinning compares)."""
    return {key: tool[key] for key in FIELDS if key in tool}


def fingerprint(defn: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(defn, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def _pretty(defn: dict[str, Any]) -> list[str]:
    return orjson.dumps(defn, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2).decode().splitlines()


class ToolPins:
    """The pins of one server, and the tools whose current definition differs from its pin."""

    def __init__(self, path: Path, clock: Clock = SYSTEM_CLOCK) -> None:
        self.path = path
        self.clock = clock  # a change's "since" is wall time
        self.pinned: dict[str, dict[str, Any]] = {}
        self._prints: dict[str, str] = {}
        self.changes: dict[str, dict[str, Any]] = {}  # tool -> {pinned, current, since}
        self._load()

    def _load(self) -> None:
        try:
            if self.path.stat().st_size > MAX_FILE:
                log.warning("%s is over %d bytes: ignored (tools are pinned anew)", self.path, MAX_FILE)
                return
            doc = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return
        except (OSError, orjson.JSONDecodeError) as exc:
            log.warning("cannot read tool pins %s: %s (tools are pinned anew)", self.path, exc)
            return
        tools = doc.get("tools") if isinstance(doc, dict) else None
        if isinstance(tools, dict):
            for name, defn in tools.items():
                if isinstance(name, str) and isinstance(defn, dict):
                    self.pinned[name] = defn
                    self._prints[name] = fingerprint(defn)

    def _save(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(orjson.dumps({"tools": self.pinned}, option=orjson.OPT_SORT_KEYS))
            os.replace(tmp, self.path)
        except OSError as exc:  # the pins stay in memory; the next save tries again
            log.warning("cannot write tool pins %s: %s", self.path, exc)

    def matches(self, tool: dict[str, Any]) -> bool:
        """True unless `tool` differs from its pin (a tool never pinned matches: first use)."""
        pinned = self._prints.get(str(tool.get("name")))
        return pinned is None or pinned == fingerprint(definition(tool))

    def observe(self, tools: Iterable[dict[str, Any]]) -> list[str]:
        """A fresh list from the child: pin new tools; return the names newly seen as changed."""
        newly: list[str] = []
        offered: set[str] = set()
        added = False
        for tool in tools:
            name = tool.get("name")
            if not isinstance(name, str):
                continue
            offered.add(name)
            defn = definition(tool)
            if name not in self.pinned:
                self.pinned[name] = defn
                self._prints[name] = fingerprint(defn)
                added = True
            elif self._prints[name] != fingerprint(defn):
                known = self.changes.get(name)
                if known is None or known["current"] != defn:
                    self.changes[name] = {"pinned": self.pinned[name], "current": defn,
                                          "since": self.clock.time()}
                    newly.append(name)
            else:
                self.changes.pop(name, None)  # changed back
        for name in [n for n in self.changes if n not in offered]:
            del self.changes[name]
        if added:
            self._save()
        return newly

    def approve(self, tool: str | None = None) -> list[str]:
        """Pin the current definition of `tool` (or of every changed tool); the names approved."""
        names = [tool] if tool is not None else list(self.changes)
        approved = []
        for name in names:
            change = self.changes.pop(name, None)
            if change is not None:
                self.pinned[name] = change["current"]
                self._prints[name] = fingerprint(change["current"])
                approved.append(name)
        if approved:
            self._save()
        return approved

    def diff(self, name: str) -> str:
        """A unified diff from the pinned definition of `name` to the one the child offers now."""
        change = self.changes.get(name)
        if change is None:
            return ""
        return "\n".join(difflib.unified_diff(_pretty(change["pinned"]), _pretty(change["current"]),
                                              f"{name} (pinned)", f"{name} (now)", lineterm=""))
