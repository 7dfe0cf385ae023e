"""FleetGrid: the fleet table, a Line API widget that redraws only the rows that changed.

Why not Textual's DataTable: with 27 servers and a stats push a second, most rows change every
second (calls/s, latency, uptime), and DataTable renders a changed row cell by cell through Rich
with per-cell styles, padding and cursor handling; profiled (`python -m bench.tui_cpu --profile`)
that was most of the dashboard's CPU even with its caches kept warm. Here a row is one `Text`
(its cells padded to the column widths and joined) drawn from segments rendered once per distinct
cell and background (a stats push changes a few numbers per row; the other cells of the row are
cache hits), kept as a `Strip` per row and background (cursor, zebra); drawing a frame is handing
out cached strips. A change repaints only the changed rows' lines.

What it does: a header line, rows by key, a row cursor (arrows, j/k via the app, page keys,
home/end, mouse click), scrolling that keeps the cursor in view, and two messages, `Highlighted`
(the cursor moved to another row) and `Selected` (Enter or a double click).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import Reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tui.columns import Column

GAP = " "
"""Each cell has one column of padding on each side (see `columns.CELL_PADDING`)."""
CELL_CACHE = 4096
"""Rendered cells kept: a 27-server fleet shows about 450 at a time, most unchanged for minutes."""


def row_text(columns: Sequence[Column], cells: Sequence[Text]) -> Text:
    """One line: every cell padded (or cut) to its column's width, numbers right-aligned."""
    line = Text(no_wrap=True, end="")
    for column, value in zip(columns, cells, strict=True):
        cell = value.copy()
        cell.truncate(column.width)
        pad = " " * (column.width - cell.cell_len)
        line.append(GAP)
        if column.right:
            line.append(pad)
            line.append_text(cell)
        else:
            line.append_text(cell)
            line.append(pad)
        line.append(GAP)
    return line


class FleetGrid(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    FleetGrid { overflow-y: auto; overflow-x: hidden; }
    FleetGrid > .fleet-grid--header { text-style: bold; background: $panel; color: $text; }
    FleetGrid > .fleet-grid--cursor { background: $block-cursor-background; color: $block-cursor-foreground;
                                      text-style: $block-cursor-text-style; }
    FleetGrid > .fleet-grid--even { background: $surface-lighten-1 20%; }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {"fleet-grid--header", "fleet-grid--cursor", "fleet-grid--even"}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select", "detail"),
        Binding("up", "move(-1)", "up", show=False),
        Binding("down", "move(1)", "down", show=False),
        Binding("pageup", "page(-1)", "page up", show=False),
        Binding("pagedown", "page(1)", "page down", show=False),
        Binding("home", "move(-1000000)", "first", show=False),
        Binding("end", "move(1000000)", "last", show=False),
    ]

    # Rows come and go with a filter or a reload only; a layout then is fine, but not per cell.
    virtual_size: Reactive[Size] = Reactive(Size(0, 0), layout=False)

    class Highlighted(Message):
        def __init__(self, grid: FleetGrid, key: str | None) -> None:
            super().__init__()
            self.grid = grid
            self.key = key

        @property
        def control(self) -> FleetGrid:
            return self.grid

    class Selected(Message):
        def __init__(self, grid: FleetGrid, key: str) -> None:
            super().__init__()
            self.grid = grid
            self.key = key

        @property
        def control(self) -> FleetGrid:
            return self.grid

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.columns: list[Column] = []
        self.keys: list[str] = []
        self.cells: dict[str, tuple[Text, ...]] = {}
        self.cursor = 0
        self._index: dict[str, int] = {}
        self._cells: LRUCache[tuple[object, ...], list[Segment]] = LRUCache(CELL_CACHE)
        """Each distinct cell rendered once per background (see `_cell`)."""
        self._bases: dict[str, Style] = {}
        """The row background of each variant, from the CSS (until focus, size or theme change)."""
        self._styled: dict[tuple[str, str], Strip] = {}
        """Each row with its background, by (key, "cursor" | "even" | "odd")."""
        self._header: Strip | None = None
        self._width = 0
        self.resized: Callable[[], None] | None = None
        """Called after the grid changed size (the app picks the columns for the new width)."""

    # -- content ------------------------------------------------------------------------------

    @property
    def selected(self) -> str | None:
        return self.keys[self.cursor] if self.keys else None

    def set_columns(self, columns: Sequence[Column]) -> None:
        self.columns = list(columns)
        self.cells.clear()
        self.keys = []
        self._forget()

    def set_rows(self, rows: Iterable[tuple[str, tuple[Text, ...]]], *, select: str | None = None) -> None:
        """Replace every row; keep the cursor on `select` when it is still there."""
        self.cells = dict(rows)
        self.keys = list(self.cells)
        self._index = {key: i for i, key in enumerate(self.keys)}
        self._forget()
        self.cursor = self._index.get(select, min(self.cursor, max(0, len(self.keys) - 1))) if select else 0
        self.virtual_size = Size(self.size.width, len(self.keys) + 1)
        self._scroll_update(self.virtual_size)
        self._keep_cursor_visible()
        self.refresh()

    def set_cells(self, changes: Iterable[tuple[str, str, Text]]) -> None:
        """Set (row key, column key, value) cells; only their rows are drawn again."""
        positions = {column.key: i for i, column in enumerate(self.columns)}
        touched: dict[str, list[Text]] = {}
        for key, column, value in changes:
            if key not in self.cells or column not in positions:
                continue
            cells = touched.setdefault(key, list(self.cells[key]))
            cells[positions[column]] = value
        if not touched:
            return
        top, width = round(self.scroll_y), max(self.virtual_size.width, self.size.width)
        lines = []
        for key, cells in touched.items():
            self.cells[key] = tuple(cells)
            for variant in ("cursor", "even", "odd"):
                self._styled.pop((key, variant), None)
            lines.append(Region(0, self._index[key] + 1 - top, width, 1))
        self.refresh(*lines)  # one refresh for every changed row, not one per row

    def cell_text(self, key: str, column: str) -> str:
        """What a cell shows (for tests and the app's own checks)."""
        positions = [c.key for c in self.columns]
        return self.cells[key][positions.index(column)].plain

    def _forget(self) -> None:
        self._cells.clear()
        self._bases.clear()
        self._styled.clear()
        self._header = None

    # -- cursor -------------------------------------------------------------------------------

    def move_to(self, index: int) -> None:
        if not self.keys:
            return
        index = max(0, min(len(self.keys) - 1, index))
        if index == self.cursor:
            return
        old = self.cursor
        self.cursor = index
        self.refresh_line(old + 1)
        self.refresh_line(index + 1)
        self._keep_cursor_visible()
        self.post_message(self.Highlighted(self, self.selected))

    def action_move(self, step: int) -> None:
        self.move_to(self.cursor + step)

    def action_page(self, step: int) -> None:
        self.move_to(self.cursor + step * max(1, self.size.height - 2))

    def action_select(self) -> None:
        if self.selected is not None:
            self.post_message(self.Selected(self, self.selected))

    def _keep_cursor_visible(self) -> None:
        rows = max(1, self.scrollable_content_region.height - 1)
        top = round(self.scroll_y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + rows:
            self.scroll_to(y=self.cursor - rows + 1, animate=False, immediate=True)

    def on_click(self, event: events.Click) -> None:
        y = event.y
        if y < 1:
            return
        index = round(self.scroll_y) + y - 1
        if index < len(self.keys):
            self.move_to(index)
            if event.chain >= 2:
                self.action_select()

    # -- drawing ------------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        if width != self._width:
            self._width = width
            self._forget()
        if y == 0:
            if self._header is None:
                header = [Text(c.heading) for c in self.columns]
                self._header = self._strip(row_text(self.columns, header), "fleet-grid--header", width)
            return self._header
        index = round(self.scroll_y) + y - 1
        if index >= len(self.keys):
            return Strip.blank(width, self.rich_style)
        key = self.keys[index]
        variant = "cursor" if index == self.cursor else ("even" if index % 2 else "odd")
        styled = self._styled.get((key, variant))
        if styled is None:
            styled = self._styled[(key, variant)] = self._row(self.cells[key], variant, width)
        return styled

    def _row(self, cells: Sequence[Text], variant: str, width: int) -> Strip:
        """One row: each cell's segments (rendered once per distinct cell and background, see
        `_cell`) one after the other, cut or padded to the width in the row's background."""
        base = self._bases.get(variant)
        if base is None:
            component = {"cursor": "fleet-grid--cursor", "even": "fleet-grid--even", "odd": ""}[variant]
            base = self.rich_style + (self.get_component_rich_style(component) if component else Style())
            self._bases[variant] = base
        segments: list[Segment] = []
        used = 0
        for column, value in zip(self.columns, cells, strict=True):
            segments += self._cell(column, value, variant, base)
            used += column.width + 2 * len(GAP)
        if used < width:
            segments.append(Segment(" " * (width - used), base))
            return Strip(segments, width)
        return Strip(segments, used).crop(0, width) if used > width else Strip(segments, width)

    def _cell(self, column: Column, value: Text, variant: str, base: Style) -> list[Segment]:
        """The segments of one padded cell on one background. A stats push changes a few numbers
        per row; every other cell of the row is this cache's hit, not a Rich render."""
        key = (column.width, column.right, variant, value.plain, value.style, tuple(value.spans))
        found = self._cells.get(key)
        if found is None:
            line = row_text([column], [value])
            plain = list(line.render(self.app.console))
            if variant == "cursor":  # the cursor's colours win over the cell's
                found = [Segment(s.text, (s.style or Style()) + base) for s in plain]
            else:
                found = [Segment(s.text, base + s.style if s.style else base) for s in plain]
            self._cells[key] = found
        return found

    def _segments(self, text: Text, width: int) -> Strip:
        segments = list(text.render(self.app.console))
        return Strip(segments).crop_extend(0, width, None)

    def _strip(self, text: Text, component: str, width: int) -> Strip:
        style = self.rich_style + self.get_component_rich_style(component)
        return self._segments(text, width).apply_style(style)

    def notify_style_update(self) -> None:
        """The CSS changed (a theme, a pseudo-class): every cached background may be stale."""
        super().notify_style_update()
        self._forget()

    def on_focus(self) -> None:
        self._forget()
        self.refresh()

    def on_blur(self) -> None:
        self._forget()
        self.refresh()

    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, len(self.keys) + 1)
        self._scroll_update(self.virtual_size)
        self._keep_cursor_visible()
        if self.resized is not None:
            self.resized()
