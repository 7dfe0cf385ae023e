"""Where each value sits in a JSON (or JSON-with-comments) text, so one value can be replaced and
every other byte (comments, key order, indentation, trailing commas) stays as it was.

`spans(text)` parses the whole document once and maps each key path (a tuple of object keys;
arrays are not descended into) to the `(start, end)` offsets of its value. `replace(text, span,
new)` splices. Editing a client's config this way is what makes `clients link` then `unlink`
give back the original bytes.
"""

from __future__ import annotations

import json

Path = tuple[str, ...]
Span = tuple[int, int]


class JsoncError(ValueError):
    """Not JSON(C); the message gives the line and column."""


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.found: dict[Path, Span] = {}

    def fail(self, at: int, what: str) -> JsoncError:
        line = self.text.count("\n", 0, at) + 1
        column = at - (self.text.rfind("\n", 0, at) + 1) + 1
        return JsoncError(f"line {line} column {column}: {what}")

    def skip(self, i: int) -> int:
        text, n = self.text, len(self.text)
        while i < n:
            ch = text[i]
            if ch in " \t\r\n\ufeff":
                i += 1
            elif text.startswith("//", i):
                end = text.find("\n", i)
                i = n if end < 0 else end + 1
            elif text.startswith("/*", i):
                end = text.find("*/", i + 2)
                if end < 0:
                    raise self.fail(i, "unterminated /* comment")
                i = end + 2
            else:
                break
        return i

    def string(self, i: int) -> tuple[str, int]:
        text, n = self.text, len(self.text)
        j = i + 1
        while j < n and text[j] != '"':
            if text[j] == "\n":
                raise self.fail(j, "newline in a string")
            j += 2 if text[j] == "\\" else 1
        if j >= n:
            raise self.fail(i, "unterminated string")
        try:
            return json.loads(text[i : j + 1]), j + 1
        except ValueError:
            raise self.fail(i, "bad string escape") from None

    def value(self, i: int, path: Path) -> int:
        i = self.skip(i)
        if i >= len(self.text):
            raise self.fail(i, "expected a value")
        start = i
        ch = self.text[i]
        if ch == "{":
            end = self.obj(i, path)
        elif ch == "[":
            end = self.array(i, path)
        elif ch == '"':
            end = self.string(i)[1]
        else:
            j = i
            while j < len(self.text) and self.text[j] not in ",}] \t\r\n/":
                j += 1
            word = self.text[i:j]
            try:
                json.loads(word)
            except ValueError:
                raise self.fail(i, f"unexpected {word[:20] or ch!r}") from None
            end = j
        self.found[path] = (start, end)
        return end

    def obj(self, i: int, path: Path) -> int:
        i = self.skip(i + 1)
        while True:
            if i < len(self.text) and self.text[i] == "}":
                return i + 1
            if i >= len(self.text) or self.text[i] != '"':
                raise self.fail(i, "expected a key in quotes or }")
            key, i = self.string(i)
            i = self.skip(i)
            if i >= len(self.text) or self.text[i] != ":":
                raise self.fail(i, "expected :")
            i = self.skip(self.value(i + 1, (*path, key)))
            if i < len(self.text) and self.text[i] == ",":
                i = self.skip(i + 1)
            elif i < len(self.text) and self.text[i] == "}":
                return i + 1
            else:
                raise self.fail(i, "expected , or }")

    def array(self, i: int, path: Path) -> int:
        i = self.skip(i + 1)
        index = 0
        while True:
            if i < len(self.text) and self.text[i] == "]":
                return i + 1
            # Elements are not addressed by key: record them under a path no key can make.
            i = self.skip(self.value(i, (*path, f"\0{index}")))
            index += 1
            if i < len(self.text) and self.text[i] == ",":
                i = self.skip(i + 1)
            elif i < len(self.text) and self.text[i] == "]":
                return i + 1
            else:
                raise self.fail(i, "expected , or ]")


def spans(text: str) -> dict[Path, Span]:
    """Every object value's span, by key path; `()` is the whole document."""
    scanner = _Scanner(text)
    end = scanner.skip(scanner.value(0, ()))
    if end != len(text):
        raise scanner.fail(end, "text after the document")
    return scanner.found


def replace(text: str, span: Span, new: str) -> str:
    return text[: span[0]] + new + text[span[1] :]


def indent_of(text: str, offset: int) -> str:
    """The leading whitespace of the line `offset` is on."""
    line_start = text.rfind("\n", 0, offset) + 1
    line = text[line_start:offset]
    return line[: len(line) - len(line.lstrip())]


def render(value: object, indent: str, step: int) -> str:
    """`value` as JSON placed where a value starts on a line indented by `indent`."""
    if step <= 0:
        return json.dumps(value, ensure_ascii=False)
    lines = json.dumps(value, indent=step, ensure_ascii=False).split("\n")
    return "\n".join([lines[0], *(indent + line for line in lines[1:])])


def guess_step(text: str) -> int:
    """The file's indentation step (2 when it cannot tell; 0 for a one-line file)."""
    if "\n" not in text.strip():
        return 0
    widths = [len(line) - len(line.lstrip(" ")) for line in text.splitlines() if line.startswith(" ")]
    return min((w for w in widths if w), default=2)
