"""LogLines: stderr lines with their time and coloured level, searchable, following or not.

A Line API widget (it draws only the lines on screen, from a bounded deque): the log pane of the
main screen and the full-screen log view are both one of these. A new line costs a repaint of the
widget, never a layout of the screen: `virtual_size` is not a layout reactive here, and the
vertical scrollbar is always there (`overflow-y: scroll`), so a line never moves anything else.

Search: `search(text)` marks every line containing `text` (case-insensitive), `next_match(+1/-1)`
moves to the next or previous one (wrapping) and scrolls it into view; the current match is drawn
reversed. Follow: while on, every new line scrolls to the end; scrolling up turns it off.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from rich.segment import Segment
from rich.text import Text
from textual.cache import LRUCache
from textual.geometry import Size
from textual.reactive import Reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tui.client import LogLine
from tui.levels import LEVEL_STYLES, LEVEL_TAGS
from tui.render import fmt_clock

MAX_LINES = 2000
_CONTROL = str.maketrans({"\t": "    ", "\r": " ", "\x1b": "␛"})


def line_text(entry: LogLine, *, server_width: int = 0, search: str = "") -> Text:
    """`14:03:27 ERR git  message`: time, level tag, (server), message in the level's colour,
    with every match of `search` highlighted."""
    style = LEVEL_STYLES.get(entry.level, "")
    text = Text.assemble(
        (fmt_clock(entry.at), "dim"), " ",
        (LEVEL_TAGS.get(entry.level, "INF"), style or "dim"), " ",
    )  # fmt: skip
    if server_width:
        text.append(entry.server[:server_width].ljust(server_width) + " ", style="cyan")
    start = len(text)
    text.append(entry.line.translate(_CONTROL), style=style)
    if search:
        needle, haystack = search.lower(), entry.line.translate(_CONTROL).lower()
        at = haystack.find(needle)
        while at >= 0:
            text.stylize("black on yellow", start + at, start + at + len(needle))
            at = haystack.find(needle, at + len(needle))
    return text


class LogLines(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    LogLines { overflow-y: scroll; overflow-x: hidden; }
    """

    virtual_size: Reactive[Size] = Reactive(Size(0, 0), layout=False)

    def __init__(self, *, max_lines: int = MAX_LINES, show_server: bool = False,
                 id: str | None = None) -> None:  # fmt: skip
        super().__init__(id=id)
        self.entries: deque[LogLine] = deque(maxlen=max_lines)
        self.show_server = show_server
        self.follow = True
        self.needle = ""
        self.current: int | None = None
        """Index in `entries` of the current search match."""
        self._server_width = 0
        self._strips: LRUCache[tuple[int, bool], Strip] = LRUCache(1024)

    # -- content ------------------------------------------------------------------------------

    def clear(self) -> None:
        follow = self.follow  # the scroll position snapping back to 0 is not the reader's doing
        self.entries.clear()
        self.current = None
        self._strips.clear()
        self._resize()
        self.scroll_to(y=0, animate=False, immediate=True)
        self.follow = follow

    def add(self, entries: Iterable[LogLine]) -> None:
        added = list(entries)
        if not added:
            return
        full = len(self.entries) + len(added) - (self.entries.maxlen or 0)
        if full > 0:  # lines fall off the top: every cached index moves
            self._strips.clear()
            if self.current is not None:
                self.current = self.current - full if self.current >= full else None
        self.entries.extend(added)
        if self.show_server:
            widest = min(20, max(len(e.server) for e in added))
            if widest > self._server_width:
                self._server_width = widest
                self._strips.clear()
        self._resize()
        if self.follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        self.refresh()

    def _resize(self) -> None:
        self.virtual_size = Size(self.size.width, len(self.entries))

    def watch_virtual_size(self, size: Size) -> None:
        self._scroll_update(size)

    def set_follow(self, follow: bool) -> None:
        self.follow = follow
        if follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if new_value < old_value:
            self.follow = False  # the reader went back to look: stop pulling them to the end

    # -- search -------------------------------------------------------------------------------

    def search(self, needle: str) -> int:
        """Highlight `needle`; jump to its last match (the newest). Returns the number of matches."""
        self.needle = needle
        self._strips.clear()
        found = self.matches()
        self.current = found[-1] if found else None
        if self.current is not None:
            self._show(self.current)
        self.refresh()
        return len(found)

    def matches(self) -> list[int]:
        if not self.needle:
            return []
        needle = self.needle.lower()
        return [i for i, entry in enumerate(self.entries) if needle in entry.line.lower()]

    def next_match(self, step: int) -> int | None:
        """Move to the next (`step` 1) or previous (-1) match, wrapping around."""
        found = self.matches()
        if not found:
            self.current = None
            return None
        if self.current is None:
            self.current = found[-1] if step < 0 else found[0]
        elif step > 0:
            self.current = next((i for i in found if i > self.current), found[0])
        else:
            self.current = next((i for i in reversed(found) if i < self.current), found[-1])
        self._strips.clear()
        self._show(self.current)
        self.refresh()
        return self.current

    def _show(self, index: int) -> None:
        self.follow = False
        height = self.scrollable_content_region.height or 1
        if not self.scroll_y <= index < self.scroll_y + height:
            self.scroll_to(y=max(0, index - height // 2), animate=False, immediate=True)

    # -- drawing ------------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        index = round(self.scroll_y) + y
        width = self.scrollable_content_region.width
        if index >= len(self.entries):
            return Strip.blank(width, self.rich_style)
        key = (index, index == self.current)
        strip = self._strips.get(key)
        if strip is None or strip.cell_length != width:
            text = line_text(self.entries[index], server_width=self._server_width if self.show_server else 0,
                             search=self.needle)  # fmt: skip
            if index == self.current:
                text.stylize("reverse")
            segments = [Segment(s.text.replace("\n", " "), s.style) for s in text.render(self.app.console)]
            strip = Strip(segments).crop_extend(0, width, None).apply_style(self.rich_style)
            self._strips[key] = strip
        return strip
