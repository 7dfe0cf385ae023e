"""Widgets that redraw only what changed: ServerTable (cells) and LogTail (log lines).

ServerTable: a DataTable whose cell updates re-render only the cells that changed.

Textual's DataTable keys every render cache (cells, rows, lines) on one table-wide update counter
that `update_cell` bumps, so changing one cell throws away the rendering of every cell. With 27
servers and a stats push a second, re-rendering ~300 cells through Rich was most of the dashboard's
CPU (profiled with py-spy: `python -m bench.tui_cpu --profile`), though only uptime, calls/s and
latency of the busy rows actually change.

`set_cells` writes the values and evicts the cached renders of just those cells, and of the rows
and lines that show them; the rest of the table is drawn from cache. This leans on DataTable's
private caches; if a Textual release renames them, `set_cells` falls back to
`update_cell`, which is always correct, just slower (and `tests/test_tui_app.py` says so).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from rich.style import Style
from rich.text import Text
from textual.cache import LRUCache
from textual.geometry import Size
from textual.reactive import Reactive
from textual.strip import Strip
from textual.widgets import DataTable, Log
from textual.widgets.data_table import CellDoesNotExist, ColumnKey, RowKey

K = TypeVar("K")

_CACHES = (
    "_cell_render_cache",
    "_row_renderable_cache",
    "_row_render_cache",
    "_line_cache",
    "_row_locations",
    "_column_locations",
)


class ServerTable(DataTable[Text]):
    @property
    def incremental(self) -> bool:
        """Whether `set_cells` can keep unchanged cells' renders (this Textual has the caches)."""
        return isinstance(getattr(self, "_data", None), dict) and all(hasattr(self, c) for c in _CACHES)

    def set_cells(self, changes: Iterable[tuple[str, str, Text]]) -> None:
        """Set (row key, column key, value) cells; one refresh, and only those cells re-render."""
        changes = list(changes)
        if not changes:
            return
        if not self.incremental:
            for row, column, value in changes:
                self.update_cell(row, column, value)
            return
        dirty: set[tuple[Any, Any]] = set()
        rows: set[Any] = set()
        for row, column, value in changes:
            row_key, column_key = RowKey(row), ColumnKey(column)
            cells = self._data.get(row_key)
            if cells is None or column_key not in self._column_locations:
                raise CellDoesNotExist(f"No cell exists for row_key={row!r}, column_key={column!r}.")
            cells[column_key] = value
            dirty.add((row, column))
            rows.add(row)
        # Every cache below is keyed on what it renders: a (row key, column key) cell, a row key, a
        # (update count, row index) row, a y line. StringKeys hash and compare as their str.
        _evict(self._cell_render_cache, lambda key: (key[0], key[1]) in dirty)
        _evict(self._row_render_cache, lambda key: key[0] in rows)
        indices = {self._row_locations.get(RowKey(row)) for row in rows}
        _evict(self._row_renderable_cache, lambda key: key[1] in indices)
        _evict(self._line_cache, lambda key: self._line_row(key[0]) in rows)
        self.refresh()

    def _line_row(self, y: int) -> Any:
        try:
            return self._get_offsets(y)[0]
        except LookupError:
            return None


def _evict(cache: LRUCache[K, Any], doomed: Callable[[K], bool]) -> None:
    for key in [key for key in cache.keys() if doomed(key)]:  # noqa: SIM118 (an LRUCache is not iterable)
        cache.discard(key)


class LogTail(Log):
    """A Log whose new lines cost a repaint of the log, not a layout of the whole screen.

    Log grows its `virtual_size` per line, and `virtual_size` is a layout reactive: every line
    until `max_lines` made Textual reflow and repaint the screen, table included (about half the
    dashboard's CPU while a followed server logs once a second). A Log shows both scrollbars
    always (`overflow: scroll`), so a new line never moves anything else: updating its own
    scrollbars is all the layout it needs. And rendered lines are kept (see `_render_line_strip`).
    """

    virtual_size: Reactive[Size] = Reactive(Size(0, 0), layout=False)

    def _render_line_strip(self, y: int, rich_style: Style) -> Strip:
        # Log keeps a cache of rendered lines but (Textual 8.2) fills it only while text is
        # selected, so every visible line went through Rich on every frame. It drops entries
        # itself when lines change, are pruned, or the style or selection changes.
        line = super()._render_line_strip(y, rich_style)
        if self.text_selection is None:
            self._render_line_cache[y] = line
        return line

    def watch_virtual_size(self, size: Size) -> None:
        if self.styles.overflow_x == "scroll" and self.styles.overflow_y == "scroll":
            self._scroll_update(size)
        else:  # scrollbars may appear or go: that does move things
            self.refresh(layout=True)
