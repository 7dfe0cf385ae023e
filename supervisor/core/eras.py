"""Which MCP era each server spoke last time, kept in the state dir, so the next start speaks it
first and probes only when it is unknown or fails.

An old server sent `server/discover` (the 2026-07-28 probe) may answer with pages of validation
errors on stderr before the `initialize` that works; once we know it is legacy, the next start
sends `initialize` alone. The key is the server's command, arguments and pinned package (so a
package upgrade is a new key and is probed afresh); the value is "modern" or "legacy".

`STATE_DIR/eras.json`, at most MAX_ENTRIES keys (the oldest dropped first), written atomically off
the event loop. A damaged file is ignored: the worst case is one probe per server.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from supervisor.config import ServerConfig

MODERN = "modern"
LEGACY = "legacy"
MAX_ENTRIES = 512
FILE_NAME = "eras.json"


def era_key(config: ServerConfig) -> str:
    return json.dumps([config.command, list(config.args), config.package or ""], separators=(",", ":"))


class EraMemory:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._eras: dict[str, str] = {}
        self._lock = threading.Lock()  # saves run in worker threads, possibly two at once

    @classmethod
    def load(cls, state_dir: Path) -> EraMemory:
        """Blocking (once, at daemon start)."""
        memory = cls(state_dir / FILE_NAME)
        try:
            data = json.loads(memory.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return memory
        if isinstance(data, dict):
            memory._eras = {k: v for k, v in data.items()
                            if isinstance(k, str) and v in (MODERN, LEGACY)}
        return memory

    def get(self, config: ServerConfig) -> str | None:
        return self._eras.get(era_key(config))

    def remember(self, config: ServerConfig, era: str) -> bool:
        """True when this changed what we knew (a save is due)."""
        key = era_key(config)
        if self._eras.get(key) == era:
            return False
        self._eras.pop(key, None)
        self._eras[key] = era  # newest last: trimming drops the oldest
        while len(self._eras) > MAX_ENTRIES:
            del self._eras[next(iter(self._eras))]
        return True

    def save(self) -> None:
        """Blocking: write the file atomically (run it in a worker thread). A failure (full
        disk, read-only state dir) only costs a probe at the next start."""
        with self._lock:
            text = json.dumps(dict(self._eras), indent=1)
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp.write_text(text, encoding="utf-8")
                os.replace(tmp, self.path)
            except OSError:
                tmp.unlink(missing_ok=True)
