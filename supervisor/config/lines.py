"""Key path → line in the raw `fleet.toml` text, so every error can say `file:line: key`.

tomllib gives values but no positions, so `_LineIndex` scans the text once with a small TOML
tokenizer of its own (tables, arrays of tables, dotted and quoted keys, inline tables, multi-line
strings) and maps each key path to the line it is defined on. `_line_for` falls back to the first
line under a table, then to the nearest ancestor, for keys that are missing rather than wrong.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping


def _render_key(keys: Iterable[str]) -> str:
    out = ""
    for key in keys:
        if key.startswith("["):
            out += key
            continue
        part = key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else '"' + key.replace('"', '\\"') + '"'
        out = f"{out}.{part}" if out else part
    return out


def _line_for(lines: Mapping[tuple[str, ...], int], keys: tuple[str, ...]) -> int | None:
    """The key's own line; else the first line of anything under it (a table defined only by
    its subtables); else the line of its nearest ancestor (e.g. the header a key is missing from)."""
    keys = tuple(k for k in keys if not k.startswith("["))
    if keys in lines:
        return lines[keys]
    below = [line for path, line in lines.items() if path[: len(keys)] == keys]
    if below:
        return min(below)
    for n in range(len(keys) - 1, 0, -1):
        if keys[:n] in lines:
            return lines[keys[:n]]
    return None


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", '"': '"', "\\": "\\"}


class _LineIndex:
    """Line of every key path in a TOML text that tomllib already accepted. A small scanner: it knows
    headers, dotted and quoted keys, strings (all four kinds), arrays and inline tables, which is all
    it needs to skip values without mistaking their contents for keys."""

    def __init__(self, text: str) -> None:
        self._s = text
        self._i = 0
        self._line = 1
        self.lines: dict[tuple[str, ...], int] = {}
        # Best effort: on a construct the scanner does not know, a partial index is still useful.
        with contextlib.suppress(IndexError, ValueError):
            self._document()

    def line_for(self, keys: tuple[str, ...]) -> int | None:
        return _line_for(self.lines, keys)

    # -- scanning ----------------------------------------------------------------------------------

    def _peek(self, n: int = 1) -> str:
        return self._s[self._i : self._i + n]

    def _advance(self, n: int = 1) -> None:
        self._line += self._s.count("\n", self._i, self._i + n)
        self._i += n

    def _skip_blank(self, newlines: bool) -> None:
        while self._i < len(self._s):
            ch = self._s[self._i]
            if ch in " \t" or (newlines and ch in "\r\n"):
                self._advance()
            elif ch == "#":
                while self._i < len(self._s) and self._s[self._i] != "\n":
                    self._advance()
            else:
                return

    def _record(self, keys: tuple[str, ...], line: int) -> None:
        self.lines.setdefault(keys, line)

    def _document(self) -> None:
        table: tuple[str, ...] = ()
        while self._i < len(self._s):
            self._skip_blank(newlines=True)
            if self._i >= len(self._s):
                return
            start = self._i
            if self._peek() == "[":
                self._advance(2 if self._peek(2) == "[[" else 1)
                line = self._line
                table = self._key()
                self._record(table, line)
                while self._i < len(self._s) and self._s[self._i] != "\n":
                    self._advance()
            else:
                line = self._line
                keys = table + self._key()
                self._skip_blank(newlines=False)
                if self._peek() == "=":
                    self._advance()
                self._record(keys, line)
                self._value(keys)
            if self._i == start:
                self._advance()

    def _key(self) -> tuple[str, ...]:
        parts: list[str] = []
        while True:
            self._skip_blank(newlines=False)
            ch = self._peek()
            if ch in ('"', "'"):
                parts.append(self._string())
            else:
                match = _BARE_KEY.match(self._s, self._i)
                if match is None:
                    break
                parts.append(match.group())
                self._advance(match.end() - self._i)
            self._skip_blank(newlines=False)
            if self._peek() != ".":
                break
            self._advance()
        return tuple(parts)

    def _string(self) -> str:
        quote = self._peek()
        basic = quote == '"'
        triple = self._peek(3) == quote * 3
        self._advance(3 if triple else 1)
        out: list[str] = []
        while self._i < len(self._s):
            if triple and self._peek(3) == quote * 3:
                self._advance(3)
                while self._peek() == quote:  # up to two quotes may end the content
                    self._advance()
                return "".join(out)
            ch = self._s[self._i]
            if not triple and ch == quote:
                self._advance()
                return "".join(out)
            if basic and ch == "\\":
                out.append(_ESCAPES.get(self._peek(2)[1:], ""))
                self._advance(2)
                continue
            out.append(ch)
            self._advance()
        return "".join(out)

    def _value(self, keys: tuple[str, ...]) -> None:
        self._skip_blank(newlines=False)
        ch = self._peek()
        if ch in ('"', "'"):
            self._string()
        elif ch == "[":
            self._advance()
            while self._i < len(self._s):
                self._skip_blank(newlines=True)
                start = self._i
                if self._peek() == "]":
                    self._advance()
                    return
                if self._peek() == ",":
                    self._advance()
                else:
                    self._value(keys)
                if self._i == start:
                    self._advance()
        elif ch == "{":
            self._advance()
            while self._i < len(self._s):
                self._skip_blank(newlines=True)
                start = self._i
                if self._peek() == "}":
                    self._advance()
                    return
                if self._peek() == ",":
                    self._advance()
                else:
                    line = self._line
                    sub = keys + self._key()
                    self._skip_blank(newlines=False)
                    if self._peek() == "=":
                        self._advance()
                    self._record(sub, line)
                    self._value(sub)
                if self._i == start:
                    self._advance()
        else:
            while self._i < len(self._s) and self._s[self._i] not in ",]}\n#":
                self._advance()
