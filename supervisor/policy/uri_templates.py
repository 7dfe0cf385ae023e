"""Does a URI match a resource's URI template? An RFC 6570 matcher in linear time, no regex.

A child's `uriTemplate` is peer data and so is the URI a client reads: a template compiled into a
backtracking regex (`.*` per variable) let a 3 kB URI freeze the event loop for 24 s. Here a
template is cut into literals and variables once, and a URI is matched left to right: each
variable takes the text up to the first occurrence of the literal after it, so every byte of the
URI is looked at a bounded number of times.

Semantics (RFC 6570 level 1, with the operators of level 2 and 3 read as their expansions allow):
a simple `{var}` never spans a `/` (its expansion percent-encodes it), nor do `{.var}`, `{;var}`,
`{?var}` and `{&var}`; reserved expansions `{+var}` and `{#var}` and path segments `{/var}` may. A
variable may match the empty string. URIs longer than MAX_URI and templates longer than
MAX_TEMPLATE match nothing.
"""

from __future__ import annotations

import functools
from typing import Final

MAX_URI: Final = 8192
MAX_TEMPLATE: Final = 1024
_SPANS_SLASH: Final = frozenset("+#/")


class Template:
    """A parsed template: literal, then (may-span-slash, literal) per variable."""

    __slots__ = ("first", "steps")

    def __init__(self, first: str, steps: tuple[tuple[bool, str], ...]) -> None:
        self.first = first
        self.steps = steps

    def matches(self, uri: str) -> bool:
        if len(uri) > MAX_URI or not uri.startswith(self.first):
            return False
        pos = len(self.first)
        last = len(self.steps) - 1
        for index, (spans_slash, literal) in enumerate(self.steps):
            if index == last and not literal:
                end = len(uri)  # a variable at the end takes the rest
            elif not literal:
                end = pos  # two variables in a row: the first takes nothing (any split would do)
            else:
                end = uri.find(literal, pos) if index != last else len(uri) - len(literal)
                if end < pos or (index == last and not uri.endswith(literal)):
                    return False
            if not spans_slash and "/" in uri[pos:end]:
                return False
            pos = end + len(literal)
        return pos == len(uri)


@functools.lru_cache(maxsize=1024)
def parse(template: str) -> Template | None:
    """The template, or None when it is too long or not well formed (an unclosed brace)."""
    if len(template) > MAX_TEMPLATE:
        return None
    first, brace, rest = template.partition("{")
    if "}" in first:
        return None
    steps: list[tuple[bool, str]] = []
    while brace:
        expression, closed, rest = rest.partition("}")
        if not closed or "{" in expression:
            return None
        literal, brace, rest = rest.partition("{")
        if "}" in literal:
            return None
        steps.append((expression[:1] in _SPANS_SLASH, literal))
    return Template(first, tuple(steps))


def matches(template: str, uri: str) -> bool:
    """True when `uri` is an expansion of `template` (see the module docstring)."""
    parsed = parse(template)
    return parsed is not None and parsed.matches(uri)
