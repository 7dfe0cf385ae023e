"""Which table columns fit a terminal width, and text that fits a cell without a cut word.

The columns have one display order (left to right) and one priority order (what stays longest).
`choose()` takes columns in priority order while they fit and shows them in display order, so as
the terminal narrows they go in a fixed order, the least useful first, and `name` and `state`
never go. The `reason` column is elastic: it takes the width that is left over.

Pure and Textual-free: tested as a table of widths (tests/test_tui_model.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

CELL_PADDING = 2
"""A DataTable cell has one space of padding on each side."""
SCROLLBAR = 2
"""Kept free at the right for the table's vertical scrollbar, so a long fleet never pushes a
column off the edge."""


@dataclass(frozen=True)
class Column:
    key: str
    heading: str
    width: int
    """Text columns of the cell (without padding); for `reason`, the least it is worth showing."""
    priority: int
    """0 is kept longest; a column goes before every column with a smaller number."""
    right: bool = True
    """Numbers are right-aligned, words left."""
    history: bool = False
    """A sparkline of the last minutes (only where there is room)."""


NAME_MIN, NAME_MAX = 6, 20
REASON = "reason"
SPARK_WIDTH = 12

COLUMNS: tuple[Column, ...] = (
    Column("name", "SERVER", NAME_MAX, 0, right=False),
    Column("state", "STATE", 15, 0, right=False),
    Column("pid", "PID", 7, 13),
    Column("uptime", "UPTIME", 6, 7),
    Column("restarts", "RST", 3, 5),
    Column("memory", "MEM", 5, 1),
    Column("limit", "OF LIMIT", 10, 12, right=False),
    Column("memory_hist", "MEM HISTORY", SPARK_WIDTH, 14, right=False, history=True),
    Column("cpu", "CPU", 5, 2),
    Column("load", "INFL/Q", 6, 9),
    Column("calls", "CALL/S", 6, 3),
    Column("calls_hist", "CALLS HISTORY", SPARK_WIDTH + 1, 15, right=False, history=True),
    Column("p50", "P50", 6, 10),
    Column("p95", "P95", 6, 4),
    Column("p95_hist", "P95 HISTORY", SPARK_WIDTH, 16, right=False, history=True),
    Column("cache", "CACHE", 5, 17),
    Column("tools", "TOOLS", 6, 8),
    Column(REASON, "REASON", 24, 6, right=False),
)
"""Display order. Widths are fixed, so a cell update never re-measures the table."""


def choose(width: int, name_width: int, columns: tuple[Column, ...] = COLUMNS) -> list[Column]:
    """The columns that fit `width` terminal columns, in display order, with final widths: the
    name column as wide as the longest name (within NAME_MIN..NAME_MAX), `reason` widened to use
    what is left. Always at least `name` and `state`, even when they do not fit."""
    name_width = max(NAME_MIN, min(NAME_MAX, name_width))
    sized = [replace(c, width=name_width) if c.key == "name" else c for c in columns]
    room = width - SCROLLBAR
    kept: set[str] = set()
    for column in sorted(sized, key=lambda c: c.priority):
        need = column.width + CELL_PADDING
        if column.priority > 0 and need > room:
            break  # strictly by priority: nothing of lower priority comes back in a gap
        kept.add(column.key)
        room -= need
    shown = [c for c in sized if c.key in kept]
    return [replace(c, width=c.width + max(0, room)) if c.key == REASON else c for c in shown]


def fit_words(text: str, width: int) -> str:
    """`text` if it fits in `width` columns; otherwise as many whole words as fit, then `…`.
    A single word longer than the cell is the one case that is cut (with the `…`)."""
    if len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    cut = text[: width - 1]
    if text[width - 1] != " ":  # the cut is inside a word: go back to the space before it
        space = cut.rfind(" ")
        if space > 0:
            cut = cut[:space]
    return cut.rstrip(" ,;:.-—(") + "…"
