"""`${VAR}` references in config strings: parse, check, expand, list.

`${NAME}` and `${NAME:-default}` (the default may itself hold references). Daemon-level values are
expanded at load time (`supervisor.config.load`); a server's `command`, `args`, `env`, `cwd` and
`roots` keep their raw text and are expanded at spawn time with `expand`, against the environment
the child will see. `references` / `referenced_vars` say which variables a value needs, for
`mcpctl check --prerequisites` and `mcpctl secret`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# A parsed string: literal text, or a reference (name, default); default None means `${NAME}`.
_Part = str | tuple[str, str | None]


def _closing_brace(value: str, start: int) -> int:
    """Index of the `}` that closes a `${` whose default text starts at `start` (defaults may nest)."""
    depth, k = 1, start
    while k < len(value):
        if value.startswith("$$", k):
            k += 2
        elif value.startswith("${", k):
            depth, k = depth + 1, k + 2
        elif value[k] == "}":
            depth -= 1
            if depth == 0:
                return k
            k += 1
        else:
            k += 1
    raise ValueError(f'unclosed "${{" in "{value}"')


def _parse_refs(value: str) -> list[_Part]:
    parts: list[_Part] = []
    buf: list[str] = []
    i = 0
    while i < len(value):
        if value.startswith("$$", i):
            buf.append("$")
            i += 2
            continue
        if not value.startswith("${", i):
            buf.append(value[i])
            i += 1
            continue
        name = _VAR_NAME.match(value, i + 2)
        if name is None:
            raise ValueError(
                f'bad variable reference in "{value}": expected ${{NAME}} or ${{NAME:-default}} '
                '(write "$$" for a literal "$")'
            )
        j = name.end()
        ref: tuple[str, str | None]
        if value.startswith("}", j):
            ref, i = (name.group(), None), j + 1
        elif value.startswith(":-", j):
            end = _closing_brace(value, j + 2)
            ref, i = (name.group(), value[j + 2 : end]), end + 1
        elif j >= len(value):
            raise ValueError(f'unclosed "${{" in "{value}"')
        else:
            raise ValueError(
                f'bad variable reference in "{value}": expected ${{NAME}} or ${{NAME:-default}} '
                '(write "$$" for a literal "$")'
            )
        if buf:
            parts.append("".join(buf))
            buf = []
        parts.append(ref)
    if buf:
        parts.append("".join(buf))
    return parts


def expand(value: str, environ: Mapping[str, str]) -> str:
    """`value` with `${VAR}` replaced by `environ[VAR]` ("" when unset), `${VAR:-default}` by the
    variable or, when it is unset or empty, the (itself expanded) default, and `$$` by `$`.
    A `$` not followed by `{` or `$` stays as it is. Raises `ValueError` for a malformed `${...}`."""
    out: list[str] = []
    for part in _parse_refs(value):
        if isinstance(part, str):
            out.append(part)
            continue
        name, default = part
        found = environ.get(name, "")
        out.append(found if found or default is None else expand(default, environ))
    return "".join(out)


def references(value: str) -> list[tuple[str, str | None]]:
    """Every `${NAME}` (default None) and `${NAME:-default}` in `value`, those inside defaults too,
    in order. Raises `ValueError` for a malformed `${...}`."""
    found: list[tuple[str, str | None]] = []
    for part in _parse_refs(value):
        if not isinstance(part, str):
            found.append(part)
            if part[1] is not None:
                found.extend(references(part[1]))
    return found


def referenced_vars(value: str) -> list[str]:
    """Names used as `${NAME}` (no default) in `value`, in order, each once. Names that only appear
    inside a default, or that have a default, are not listed: the string works without them."""
    names: list[str] = []
    for part in _parse_refs(value):
        if not isinstance(part, str) and part[1] is None and part[0] not in names:
            names.append(part[0])
    return names
