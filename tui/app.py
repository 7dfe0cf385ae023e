"""TopApp: the `mcpctl top` dashboard.

Data flow. One worker (`_feed`) owns the connection: `supervisor/status` once, then a
`supervisor/events` subscription whose pushes (state changes, once-a-second stats, restarts) are
folded into a `FleetModel`. The model says which servers changed, and only those table cells are
updated in place (and only those rows repainted); rows are rebuilt only when the set or order of
visible servers changes (filter, sort, fleet reload). Log lines come on their own subscriptions
(`_follow_logs`): one for the bottom pane's selected server, one for the log view; changing what
they follow never drops the main feed, and a superseded one is closed between two events, never
cancelled in the middle of a socket read (see `_follow_logs`).

Any size. The columns that fit the width are chosen by `tui.columns.choose` (a fixed priority:
name and state always), and the bottom pane (detail and log tail of the selected server) is shown
only when the height leaves room for it after every row (`pane_height`); `p` shows or hides it
anyway, `l` opens the full log view and Enter the detail screen at any size.

Cheap (`python -m bench.tui_cpu`). A stats push recomputes only the cells whose status fields
changed (`CELL_SOURCES`), the grid renders only changed cells (`tui.table`), the pane's log tail
is drawn with the stats push rather than per line, nothing is drawn for the fleet while a full
screen covers it, and `mcpctl top` freezes its start-up heap out of the collector's full passes.

Failure. Any `DaemonUnavailable` from the feed hides the table and shows "daemon not running at
PATH — retrying", then retries with capped exponential backoff. Workers catch everything they can
raise, so the user never sees a traceback.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Awaitable, Callable, Iterable
from contextlib import aclosing, suppress
from typing import Any, ClassVar

import anyio
from rich.text import Text
from textual import events, on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.screen import ModalScreen, Screen
from textual.timer import Timer
from textual.widgets import Footer, Input, Label, Sparkline, Static

from tui.client import DaemonClient, DaemonUnavailable, LogLine, RemoteError
from tui.columns import SPARK_WIDTH, Column, choose, fit_words
from tui.keys import APP_KEYS, MAIN_KEYS
from tui.logview import LogLines
from tui.model import SORTS, Change, FleetModel, matches, sort_key
from tui.render import (
    BLOCKED_MARK,
    BREAKER_MARKS,
    CHANGED_MARK,
    STATE_MARKS,
    STATE_ORDER,
    STATE_STYLES,
    UNKNOWN,
    breaker_state,
    changed_tools,
    fmt_bytes,
    fmt_cpu,
    fmt_duration,
    fmt_ms,
    fmt_pct,
    fmt_rate,
    is_lazy,
    limit_bar,
    retry_delay,
    spark,
    state_text,
    tools_text,
    usage_style,
)
from tui.screens import ConfirmScreen, DetailScreen, HelpScreen, LogScreen
from tui.table import FleetGrid

LOG_BACKFILL = 200
ALL_BACKFILL = 40
"""Lines per server when the log view shows every server interleaved."""
PANE_LOG_EVERY = 1.0
"""Longest a new line waits to be drawn in the pane's tail (it is drawn with the next stats push)."""
STDERR_KEPT = 50
"""Last stderr lines kept for the detail screen of the server in the pane."""

PANE_MIN, PANE_MAX = 8, 20
"""Heights of the bottom pane: below PANE_MIN lines of room it is hidden (`p` shows it anyway)."""
INFO_WIDTH = 44
CHARTS_FROM = 150
"""The pane's sparklines only from this width on: narrower, the log tail needs the room."""

RUNNING = frozenset({"ready", "degraded", "starting", "stopping"})

NAME_STYLES = {"degraded": "yellow", "failed": "red"}
"""A server that needs a look stands out by name too, not only by its state cell."""


def _right(value: str, style: str = "") -> Text:
    return Text(value, style=style, justify="right")


CELL_SOURCES: dict[str, frozenset[str]] = {
    key: frozenset(fields)
    for key, fields in {
        "name": ("name", "state"),
        "state": ("state", "breaker", "reason", "start", "calls_total"),
        "pid": ("pid",),
        "uptime": ("uptime_s",),
        "restarts": ("restarts",),
        "memory": ("memory_bytes", "memory_limit"),
        "limit": ("memory_bytes", "memory_limit"),
        "memory_hist": ("memory_bytes", "memory_limit", "state"),
        "cpu": ("cpu_percent",),
        "load": ("in_flight", "queued"),
        "calls": ("calls_per_s",),
        "calls_hist": ("calls_per_s", "state"),
        "p50": ("p50_ms",),
        "p95": ("p95_ms",),
        "p95_hist": ("p95_ms", "state"),
        "cache": ("cache_hit_rate",),
        "tools": ("tools", "state", "changed_tools", "on_tool_change"),
        "reason": ("reason", "state"),
    }.items()
}
"""The status fields each column's cell is made of (`cell` reads nothing else): a stats push
that changed only `calls_per_s` recomputes the CALL/S cell, not the row."""


def cell(column: Column, server: dict[str, Any], model: FleetModel) -> Text:
    """The text of one table cell."""
    key = column.key
    state = str(server.get("state", "?"))
    if key == "name":
        return Text(fit_words(str(server["name"]), column.width), style=NAME_STYLES.get(state, ""))
    if key == "state":
        return state_text(state, breaker_state(server.get("breaker")), lazy=is_lazy(server))
    if key == "pid":
        return _right(str(server.get("pid") or UNKNOWN))
    if key == "uptime":
        return _right(fmt_duration(server.get("uptime_s")))
    if key == "restarts":
        restarts = int(server.get("restarts") or 0)
        return _right(str(restarts), "yellow" if restarts else "dim")
    memory, limit = server.get("memory_bytes"), server.get("memory_limit")
    if key == "memory":
        style = usage_style(memory / limit) if isinstance(memory, int) and limit else ""
        return _right(fmt_bytes(memory) if memory is not None else UNKNOWN, style)
    if key == "limit":
        return limit_bar(memory, limit)
    if key in ("memory_hist", "calls_hist", "p95_hist"):
        current = {"memory_hist": memory, "calls_hist": server.get("calls_per_s"),
                   "p95_hist": server.get("p95_ms")}
        if current[key] is None or state not in RUNNING:
            return Text("")  # a history of zeros for a server that is not running says nothing
        series = model.series_of(str(server["name"]), key.removesuffix("_hist"))
        values = series.recent(column.width) if series else []
        top = limit if key == "memory_hist" and isinstance(limit, int) else None
        return Text(spark(values, column.width, top), style="cyan" if key != "p95_hist" else "magenta")
    if key == "cpu":
        return _right(fmt_cpu(server.get("cpu_percent")))
    if key == "load":
        queued = server.get("queued")
        return _right(f"{server.get('in_flight', 0)}/{queued or 0}", "bold yellow" if queued else "")
    if key == "calls":
        return _right(fmt_rate(server.get("calls_per_s")))
    if key == "p50":
        return _right(fmt_ms(server.get("p50_ms")))
    if key == "p95":
        return _right(fmt_ms(server.get("p95_ms")))
    if key == "cache":
        return _right(fmt_pct(server.get("cache_hit_rate")))
    if key == "tools":
        changed, blocked = changed_tools(server)
        count = str(server.get("tools") or 0) if state in ("ready", "degraded") else UNKNOWN
        return tools_text(count, len(changed), blocked, column.width)
    reason = str(server.get("reason") or "")
    return Text(
        fit_words(reason, column.width), style="dim" if state == "ready" else STATE_STYLES.get(state, "")
    )


def freeze_startup_heap() -> None:
    """Take what start-up built (Textual's widgets, styles and CSS, some 60 000 objects that live
    as long as the app) out of the garbage collector's full passes: `gc.freeze()` after one
    collection. Measured with `bench.tui_cpu`: 3.1% → 2.5% of a core, the full passes over that
    heap being most of the difference. Objects made later are collected as usual."""
    gc.collect()
    gc.freeze()


def pane_height(height: int, rows: int, *, filter_shown: bool = False) -> int:
    """Lines for the bottom pane in a terminal `height` lines tall with `rows` table rows: what is
    left after the header, the table (with its heading) and the footer, at most PANE_MAX; 0 (no
    pane) when that is under PANE_MIN."""
    left = height - 3 - rows - (1 if filter_shown else 0)
    return min(PANE_MAX, left) if left >= PANE_MIN else 0


def fit_text(text: Text, width: int) -> Text:
    """One line cut at a word boundary with `…` when it is wider than `width`."""
    if text.cell_len <= width:
        return text
    keep = len(fit_words(text.plain, width)) - 1
    text.truncate(keep)
    text.append("…")
    return text


def header_parts(model: FleetModel, sort: str, filter_text: str) -> list[tuple[int, Text]]:
    """(priority, part) of the one-line header; the narrower the terminal, the fewer parts."""
    t = model.totals()
    counts: dict[str, int] = {}
    for server in model.servers.values():
        counts[str(server.get("state"))] = counts.get(str(server.get("state")), 0) + 1
    ready = Text.assemble(
        (f"{t.ready}/{t.total}", "bold green" if t.ready == t.total else "bold yellow"), " ready"
    )
    trouble = Text(" ").join(
        Text(f"{STATE_MARKS[s]}{counts[s]} {s if s != 'unavailable' else 'unavail'}", STATE_STYLES[s])
        for s in ("failed", "backoff", "degraded", "unavailable")
        if counts.get(s)
    )
    changes = [changed_tools(server) for server in model.servers.values()]
    changed = sum(len(names) for names, _ in changes)
    blocked = sum(len(names) for names, block in changes if block)
    warned = changed - blocked
    tool_changes = Text.assemble(
        (f"{CHANGED_MARK}{warned} ", "yellow") if warned else "",
        (f"{BLOCKED_MARK}{blocked} ", "bold red") if blocked else "",
        f"tool{'s' if changed != 1 else ''}" if changed else "",
    )
    memory = Text(f"mem {fmt_bytes(t.memory_bytes)}")
    if t.memory_limit:
        memory = Text.assemble(
            "mem ",
            (fmt_bytes(t.memory_bytes), usage_style(t.memory_bytes / t.memory_limit)),
            f"/{fmt_bytes(t.memory_limit)}",
        )
    daemon = model.daemon
    parts = [
        (0, Text("mcp-supervisor", "bold")),
        (0, ready),
        (1, trouble),
        (2, Text.assemble((fmt_rate(t.calls_per_s), "bold"), " calls/s")),
        (3, memory),
        (4, Text(f"sort {sort}", "cyan") if sort != "name" else Text("")),
        (5, tool_changes),  # the TOOLS column marks them too, where there is room for it
        (0, Text(f"filter “{filter_text}”", "bold cyan") if filter_text else Text("")),
        (5, Text.assemble((fmt_rate(t.errors_per_s), "red" if t.errors_per_s else ""), " err/s")),
        (6, Text(f"cache {fmt_pct(t.cache_hit_rate)}")),
        (7, Text(f"up {fmt_duration(t.uptime_s)}")),
        (8, Text(f"pid {daemon.get('pid', UNKNOWN)} v{daemon.get('version', '?')}", "dim")),
    ]
    return [(p, part) for p, part in parts if part.plain]


def header_line(parts: list[tuple[int, Text]], width: int) -> Text:
    """The parts that fit `width`, dropped whole (most optional first), never cut."""
    keep = list(parts)
    while keep and sum(part.cell_len + 2 for _, part in keep) - 2 > width:
        worst = max(range(len(keep)), key=lambda i: (keep[i][0], i))
        if keep[worst][0] == 0 and all(p == 0 for p, _ in keep):
            break
        del keep[worst]
    return Text("  ").join(part for _, part in keep)


class FleetTable(FleetGrid):
    """The fleet table, which holds the keys that act on its selection."""

    BINDINGS: ClassVar[list[BindingType]] = [
        *FleetGrid.BINDINGS,
        *(key.binding("app.") for key in MAIN_KEYS),
    ]


class TopApp(App[int]):
    """The live dashboard. `client` is the only way to the daemon; `clock` is injectable so
    snapshots of relative times ("3m ago") are stable."""

    TITLE = "mcpctl top"
    CSS = """
    Screen { layout: vertical; }
    #fleet { height: 1; width: 1fr; background: $panel; padding: 0 1; }
    #main { height: 1fr; }
    #filter, #log-search { display: none; height: 1; border: none; padding: 0 1; background: $boost; }
    #filter.-active, #log-search.-active { display: block; }
    #servers { height: 1fr; }
    #pane { height: 10; border-top: solid $primary-darken-2; display: none; }
    #pane.-shown { display: block; }
    #info { width: 46; height: 1fr; padding: 0 1; }
    #charts { width: 30; padding: 0 1; display: none; }
    #charts.-shown { display: block; }
    #charts Label { width: 1fr; color: $text-muted; }
    #charts Sparkline { height: 1; margin-bottom: 1; }
    #log { width: 1fr; border-left: solid $panel-lighten-1; }
    #log:focus { border-left: solid $accent; }
    #gone { display: none; height: 1fr; content-align: center middle; text-align: center; }
    HelpScreen, ConfirmScreen { align: center middle; }
    #help { width: 96; max-width: 100%; height: auto; max-height: 90%; padding: 1 2; border: round $accent;
            background: $surface; }
    #help Static { width: 1fr; height: auto; }
    #confirm { width: auto; max-width: 90; height: auto; padding: 1 2; border: round $accent;
               background: $surface; }
    #log-head { height: 1; background: $panel; padding: 0 1; }
    #log-lines { height: 1fr; }
    #detail-body { height: 1fr; padding: 0 1; }
    #d-head { margin-bottom: 1; }
    #d-columns { height: auto; }
    #d-left { width: 1fr; height: auto; }
    #d-right { width: 1fr; height: auto; padding-left: 2; }
    #d-left Static, #d-right Static { margin-bottom: 1; }
    #d-right Sparkline { height: 2; margin-bottom: 1; }
    #d-stderr { margin-top: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [key.binding() for key in APP_KEYS]

    def __init__(
        self,
        client: DaemonClient,
        *,
        clock: Callable[[], float] = time.time,
        retry_base: float = 0.5,
        retry_cap: float = 5.0,
        freeze_heap: bool = False,
    ) -> None:
        super().__init__()
        self.freeze_heap = freeze_heap
        """Freeze the start-up heap after the first draw (`freeze_startup_heap`): for the
        `mcpctl top` process, never in a test process that runs many apps (frozen cycles leak)."""
        self.client = client
        self.clock = clock
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self.model = FleetModel()
        self.connected = False
        self.gone_reason: str | None = None
        """Why the daemon is unreachable, while it is."""
        self.selected: str | None = None
        self.filter_text = ""
        self.sort = SORTS[0]
        self.pane_forced: bool | None = None
        """`p` pressed: the pane shown (True) or hidden (False) whatever the height."""
        self.tools: dict[str, list[dict[str, Any]] | str] = {}
        """Tools per server, or why they could not be listed; refetched when the server gets ready."""
        self.details: dict[str, dict[str, Any]] = {}
        """`status {detail: true}` per server, fetched when its detail screen opens."""
        self.tool_diffs: dict[str, list[dict[str, Any]]] = {}
        """What changed in each changed tool of a server (`supervisor/tools {diff: true}`), fetched
        with the detail and again when a `tool_change` event says it moved."""
        self.stderr: dict[str, list[LogLine]] = {}
        """The last stderr lines of the server the pane follows (for its detail screen)."""
        self.columns: list[Column] = []
        self._rendered: dict[str, tuple[Text, ...]] = {}
        self._shown: dict[str, Text] = {}
        """What each Static shows, by selector (see `_put`)."""
        self._order: list[str] = []
        self._pane_height = 0
        self._logs_for: str | None = None
        self._stale = False
        """Stats came while a full screen covered the fleet (see `_covered`)."""
        self._pane_pending: list[LogLine] = []
        """Tail lines not drawn yet (see `_pane_lines`)."""
        self._pane_timer: Timer | None = None
        self._tails = {"pane": 0, "screen": 0}
        """The number of each log follower; an older follower stops at its next event."""

    # -- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(id="fleet")
        with Vertical(id="main"):
            yield Input(placeholder="filter by name, state or reason", id="filter")
            yield FleetTable(id="servers")
            with Horizontal(id="pane"):
                yield Static(id="info")
                with Vertical(id="charts"):
                    for metric, label in (
                        ("memory", "memory"),
                        ("cpu", "CPU"),
                        ("calls", "calls/s"),
                        ("p95", "p95"),
                    ):
                        yield Label(label, id=f"{metric}-label")
                        yield Sparkline([], id=f"{metric}-spark")
                yield LogLines(id="log", max_lines=500)
        yield Static(id="gone")
        yield Footer()

    def on_mount(self) -> None:
        self._table.focus()
        self._table.resized = self._resized
        self._relayout()
        self._show_fleet()
        self._feed()

    def _resized(self) -> None:
        """The terminal changed size (the table is as wide as the terminal)."""
        self._relayout()
        self._shown.pop("#fleet", None)
        self._show_fleet()

    @property
    def _table(self) -> FleetGrid:
        return self.query_one("#servers", FleetGrid)

    def _relayout(self) -> None:
        """Columns for the width, the pane for the height; rebuilds the table only if the
        columns changed (a resize, or a fleet whose longest name changed)."""
        try:
            table = self._table
        except NoMatches:
            return
        width = self.size.width
        names = self.model.servers or {"": {}}
        columns = choose(width, max(len(name) for name in names))
        if columns != self.columns:
            self.columns = columns
            table.set_columns(columns)
            self._rebuild_rows()
        else:
            self._relayout_pane()
        self.query_one("#charts").set_class(width >= CHARTS_FROM, "-shown")

    def _relayout_pane(self) -> None:
        """Show the pane when the height leaves it room after every row (or `p` said so)."""
        try:
            pane = self.query_one("#pane")
        except NoMatches:
            return
        filter_shown = self.query_one("#filter").has_class("-active")
        room = pane_height(self.size.height, len(self._order), filter_shown=filter_shown)
        show = self.pane_forced if self.pane_forced is not None else room > 0
        if show and self._pane_height != (room or PANE_MIN):
            self._pane_height = room or PANE_MIN
            pane.styles.height = self._pane_height
        was = pane.has_class("-shown")
        pane.set_class(show, "-shown")
        if show != was:
            self._selection_changed(force=True)

    @property
    def pane_shown(self) -> bool:
        return self.query_one("#pane").has_class("-shown")

    # -- the feed -----------------------------------------------------------------------------

    @work(exclusive=True, group="feed")
    async def _feed(self) -> None:
        attempt = 0
        while True:
            try:
                self._apply(self.model.load_status(await self.client.status()))
                self._set_connected(None)
                if self.freeze_heap:
                    self.freeze_heap = False
                    self.call_after_refresh(freeze_startup_heap)
                attempt = 0
                async with aclosing(self.client.events()) as stream:
                    async for event in stream:
                        self._apply(self.model.apply(event))
                        if event.get("type") == "tool_change":
                            self._tools_moved(event.get("server"))
                reason = "the event stream ended"
            except DaemonUnavailable as exc:
                reason = exc.reason
            except RemoteError as exc:
                reason = f"the daemon refused the subscription: {exc.message}"
            except Exception as exc:  # never a traceback: say it and retry
                reason = f"unexpected {type(exc).__name__}: {exc}"
            delay = retry_delay(attempt, self.retry_base, self.retry_cap)
            attempt += 1
            self._set_connected(f"{reason}; next try in {delay:g} s")
            await anyio.sleep(delay)

    def _set_connected(self, gone_reason: str | None) -> None:
        was = self.connected
        self.connected = gone_reason is None
        self.gone_reason = gone_reason
        try:
            main = self.query_one("#main")
            fleet = self.query_one("#fleet")
            gone = self.query_one("#gone", Static)
        except NoMatches:  # the app is shutting down and its screen is gone: nothing to show
            return
        main.display = self.connected
        fleet.display = self.connected
        gone.display = not self.connected
        if not self.connected:
            self._logs_for = None
            self._tails["pane"] += 1  # its follower ends with the connection, or at its next event
            gone.update(
                Text.assemble(
                    (f"daemon not running at {self.client.socket_path} — retrying\n\n", "bold"),
                    (f"({gone_reason})\n\n", "dim"),
                    ("start it with ", "dim"),
                    ("mcpctl serve", "bold"),
                    ("  ·  q quits", "dim"),
                )
            )
        elif not was:
            self.tools.clear()
            self._table.focus()
            self._selection_changed(force=True)

    def _apply(self, change: Change) -> None:
        if change.membership:
            self._relayout()  # the longest name may have changed
        covered = self._covered()
        if change.membership or self._visible() != self._order:
            self._rebuild_rows()
        elif covered:
            self._stale = True  # nobody sees the table: `_catch_up` when it shows again
        else:
            self._table.set_cells(
                cell for name in change.servers for cell in self._changed_cells(name, change.fields.get(name))
            )
        if change.fleet:
            if not covered:
                self._show_fleet()
            self._flush_pane()  # the tail's new lines in the same frame as the stats
        if self.selected in change.servers or (self.selected and change.fleet):
            server = self.model.servers.get(self.selected)
            if server and server.get("state") == "ready" and isinstance(self.tools.get(self.selected), str):
                self._fetch_tools(self.selected)  # it was down when we asked; ask again
            if self.pane_shown and not covered:
                self._show_detail()
        screen = self.screen
        if isinstance(screen, DetailScreen) and (screen.server in change.servers or change.membership):
            screen.refresh_view()

    def _covered(self) -> bool:
        """A full screen (detail, log view) hides the fleet; a modal one (help, a question) does not."""
        return any(not isinstance(screen, ModalScreen) for screen in self.screen_stack[1:])

    def _catch_up(self) -> None:
        """Back on the fleet: show what changed while another screen covered it."""
        if not self._stale or self._covered():
            return
        self._stale = False
        self._table.set_cells(cell for name in self._order for cell in self._changed_cells(name))
        self._show_fleet()
        if self.pane_shown:
            self._show_detail()

    def _visible(self) -> list[str]:
        needle = self.filter_text.lower()
        shown = [s for s in self.model.servers.values() if matches(s, needle)]
        if self.sort != "name":  # by name is the daemon's order: the order of fleet.toml
            shown.sort(key=sort_key(self.sort, STATE_ORDER))
        return [str(s["name"]) for s in shown]

    def _rebuild_rows(self) -> None:
        self._rendered.clear()
        self._order = self._visible()
        for name in self._order:
            self._rendered[name] = self._cells(name)
        self._table.set_rows(self._rendered.items(), select=self.selected)
        self._relayout_pane()
        self._selection_changed()

    def _cells(self, name: str) -> tuple[Text, ...]:
        server = self.model.servers[name]
        return tuple(cell(column, server, self.model) for column in self.columns)

    def _changed_cells(self, name: str, fields: set[str] | None = None) -> list[tuple[str, str, Text]]:
        """The (row, column, value) cells of `name` that differ from what the table shows; with
        `fields` (the status fields that changed) only the columns that show one of them (and the
        histories, which move with every sample) are computed again."""
        old = self._rendered.get(name)
        server = self.model.servers.get(name)
        if old is None or server is None:
            return []
        cells = list(old)
        changed = []
        for i, column in enumerate(self.columns):
            if fields is not None and not column.history and not (CELL_SOURCES[column.key] & fields):
                continue
            value = cell(column, server, self.model)
            if value != old[i]:
                cells[i] = value
                changed.append((name, column.key, value))
        self._rendered[name] = tuple(cells)
        return changed

    # -- header and pane ----------------------------------------------------------------------

    def _show_fleet(self) -> None:
        parts = header_parts(self.model, self.sort, self.filter_text)
        self._put("#fleet", header_line(parts, max(20, self.size.width - 2)))

    def _put(self, selector: str, content: Text) -> None:
        """Show `content` in a Static whose size the CSS fixes: nothing when it is what is shown
        already, and never a layout pass (which would repaint the whole screen, table and all)."""
        if self._shown.get(selector) == content:
            return
        self._shown[selector] = content
        self.query_one(selector, Static).update(content, layout=False)

    def _show_detail(self) -> None:
        name = self.selected
        server = self.model.servers.get(name) if name else None
        if name is None or server is None:
            self._put("#info", Text("no server selected", style="dim"))
            return
        width = INFO_WIDTH
        now = self.clock()
        state = str(server.get("state"))
        since = server.get("since")
        held = f" for {fmt_duration(now - since)}" if isinstance(since, int | float) else ""
        breaker = breaker_state(server.get("breaker"))
        lines: list[Text] = [
            Text.assemble(
                (name, "bold"), "  ", state_text(state, breaker, lazy=is_lazy(server)), (held, "dim")
            ),
            Text(fit_words(str(server.get("reason") or ""), width), style=STATE_STYLES.get(state, "")),
            Text.assemble(
                ("pid ", "dim"),
                str(server.get("pid") or UNKNOWN),
                ("  up ", "dim"),
                fmt_duration(server.get("uptime_s")),
                ("  cpu ", "dim"),
                fmt_cpu(server.get("cpu_percent")),
                ("  mem ", "dim"),
                fmt_bytes(server.get("memory_bytes")),
            ),
            Text.assemble(
                ("calls ", "dim"),
                str(server.get("calls_total", 0)),
                ("  errors ", "dim"),
                str(server.get("errors_total", 0)),
                ("  in-flight ", "dim"),
                str(server.get("in_flight", 0)),
                ("  queued ", "dim"),
                str(server.get("queued", 0)),
            ),
        ]
        if breaker and breaker != "closed":
            lines.append(
                Text.assemble(("breaker ", "dim"), (breaker, BREAKER_MARKS.get(breaker, ("", ""))[1]))
            )
        reasons = server.get("restart_reasons") or {}
        summary = ", ".join(f"{why} {n}" for why, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
        lines.append(
            Text.assemble(
                ("restarts ", "dim"), str(server.get("restarts", 0)), f" ({summary})" if summary else ""
            )
        )
        for restart in list(self.model.restarts.get(name, ()))[-2:][::-1]:
            detail = f": {restart.detail}" if restart.detail and restart.detail != restart.reason else ""
            lines.append(Text(f"  {fmt_duration(now - restart.at)} ago: {restart.reason}{detail}", "yellow"))
        tools = self.tools.get(name)
        count = str(len(tools)) if isinstance(tools, list) else str(server.get("tools", UNKNOWN))
        changed, blocked = changed_tools(server)
        if changed:
            mark, style = (BLOCKED_MARK, "bold red") if blocked else (CHANGED_MARK, "yellow")
            what = f"{mark}{len(changed)} {'blocked' if blocked else 'changed'}: {', '.join(changed)}"
            lines.append(Text.assemble(("tools ", "dim"), count, "  ", (what, style)))
        else:
            lines.append(Text.assemble(("tools ", "dim"), count, ("  enter: detail  l: log", "dim")))
        self._put("#info", Text("\n").join(fit_text(line, width) for line in lines))
        if self.query_one("#charts").has_class("-shown"):
            for metric, fmt in (
                ("memory", fmt_bytes),
                ("cpu", fmt_cpu),
                ("calls", fmt_rate),
                ("p95", fmt_ms),
            ):
                series = self.model.series_of(name, metric)
                values = series.recent(SPARK_WIDTH * 2) if series else []
                chart = self.query_one(f"#{metric}-spark", Sparkline)
                if chart.data != values:  # a bar is 10 s: most seconds change none
                    chart.data = values
                label = {"memory": "memory", "cpu": "CPU", "calls": "calls/s", "p95": "p95"}[metric]
                self._put(
                    f"#{metric}-label",
                    Text(
                        f"{label}  now {fmt(series.last if series else None)}"
                        f"  max {fmt(max(values, default=None))}"
                    ),
                )

    # -- selection, logs, tools ---------------------------------------------------------------

    @on(FleetGrid.Highlighted, "#servers")
    def _row_highlighted(self, event: FleetGrid.Highlighted) -> None:
        self._selection_changed()

    @on(FleetGrid.Selected, "#servers")
    def _row_selected(self, event: FleetGrid.Selected) -> None:
        self.action_detail()

    def _selection_changed(self, force: bool = False) -> None:
        name = self._table.selected
        if name == self.selected and not force:
            return
        self.selected = name
        if not self.pane_shown:
            if self._logs_for is not None:  # nothing shows the tail: stop following it
                self._logs_for = None
                self._tails["pane"] += 1
            return
        self._show_detail()
        if name is not None and self.connected and (force or self._logs_for != name):
            self._logs_for = name
            self._tails["pane"] += 1
            with suppress(NoMatches):  # the app is closing: its widgets are gone one by one
                self.query_one("#log", LogLines).clear()
            self._pane_pending = []
            self.stderr[name] = []
            self._follow_logs([name], "pane", self._tails["pane"], self._pane_lines)
            if name not in self.tools:
                self._fetch_tools(name)

    def _pane_lines(self, entries: list[LogLine]) -> None:
        """New lines for the pane's tail: the backfill at once, then drawn with the next stats push
        (or within PANE_LOG_EVERY if none comes), so a line costs no frame of its own and a child
        writing a hundred lines a second costs one repaint a second, not a hundred."""
        for entry in entries:
            kept = self.stderr.setdefault(entry.server, [])
            kept.append(entry)
            del kept[:-STDERR_KEPT]
        self._pane_pending += entries
        try:
            empty = not self.query_one("#log", LogLines).entries
        except NoMatches:  # the app is closing
            return
        if len(entries) > 1 or empty:
            self._flush_pane()
        elif self._pane_timer is None:
            self._pane_timer = self.set_timer(PANE_LOG_EVERY, self._flush_pane)

    def _flush_pane(self) -> None:
        if self._pane_timer is not None:
            self._pane_timer.stop()
            self._pane_timer = None
        if self._pane_pending:
            pending, self._pane_pending = self._pane_pending, []
            with suppress(NoMatches):  # the app is closing
                self.query_one("#log", LogLines).add(pending)

    @work(group="logs")
    async def _follow_logs(
        self, names: list[str], which: str, tail: int, write: Callable[[list[LogLine]], None]
    ) -> None:
        """Backfill and follow the stderr of `names` until follower `which` moves on.

        Never cancelled (not `exclusive`): cancelling a task while it reads a Unix socket, in the
        loop iteration where data arrives, makes anyio's reader callback set a result on the
        cancelled future (InvalidStateError in the event loop's exception handler), and a
        selection change is exactly "while a line arrives". Instead, a superseded follower writes
        nothing more and closes its subscription between two events: within a second, as the
        daemon pushes stats to every subscriber once a second.
        """
        wanted = set(names)
        try:
            backfill: list[LogLine] = []
            per_server = LOG_BACKFILL if len(names) == 1 else ALL_BACKFILL
            for name in names:
                backfill += await self.client.logs(name, per_server)
                if tail != self._tails[which]:
                    return
            if len(names) > 1:  # interleave by time; lines without one keep their place at the start
                backfill.sort(key=lambda e: e.at if e.at is not None else 0.0)
            write(backfill)
            async with aclosing(self.client.events(names)) as stream:
                async for event in stream:
                    if tail != self._tails[which]:
                        return  # aclosing ends the subscription here, between two reads
                    if event.get("type") == "log" and event.get("server") in wanted:
                        write([LogLine.from_event(event)])
        except DaemonUnavailable:
            pass  # the main feed noticed too, and says so
        except RemoteError as exc:
            if tail == self._tails[which]:
                write([LogLine("-", f"(no log: {exc.message})", level="warning")])
        except Exception as exc:
            if tail == self._tails[which]:
                write([LogLine("-", f"(log tail stopped: {type(exc).__name__}: {exc})", level="error")])

    @work(group="tools")
    async def _fetch_tools(self, name: str) -> None:
        try:
            self.tools[name] = await self.client.tools(name)
        except RemoteError as exc:
            self.tools[name] = exc.message
        except DaemonUnavailable as exc:
            self.tools[name] = exc.reason
        except Exception as exc:
            self.tools[name] = f"{type(exc).__name__}: {exc}"
        if name == self.selected and self.pane_shown:
            self._show_detail()
        self._refresh_detail_screen(name)

    @work(group="details")
    async def _fetch_detail(self, name: str) -> None:
        try:
            self.details[name] = await self.client.detail(name)
            self.tool_diffs[name] = await self.client.tool_changes(name)
            backfill = await self.client.logs(name, STDERR_KEPT)
        except (RemoteError, DaemonUnavailable):
            return  # the screen shows what the session saw
        except Exception:
            return
        if name != self._logs_for:
            self.stderr[name] = backfill
        self._refresh_detail_screen(name)

    def _tools_moved(self, name: object) -> None:
        """A tool of `name` changed or was approved: what was fetched about its tools is stale."""
        if not isinstance(name, str) or name not in self.model.servers:
            return
        self.tools.pop(name, None)
        self.tool_diffs.pop(name, None)
        screen = self.screen
        if isinstance(screen, DetailScreen) and screen.server == name:
            self._fetch_tools(name)
            self._fetch_detail(name)
        elif name == self.selected and self.pane_shown:
            self._fetch_tools(name)

    def _refresh_detail_screen(self, name: str) -> None:
        screen = self.screen
        if isinstance(screen, DetailScreen) and screen.server == name:
            screen.refresh_view()

    # -- screens ------------------------------------------------------------------------------

    def action_detail(self) -> None:
        name = self.selected
        if not name or not self.connected or isinstance(self.screen, DetailScreen):
            return
        if name not in self.tools:
            self._fetch_tools(name)
        self._fetch_detail(name)
        self.push_screen(DetailScreen(name))

    def close_detail(self, screen: DetailScreen) -> None:
        if self.screen is screen:
            self.pop_screen()
            self._catch_up()

    def action_log(self) -> None:
        if self.selected and self.connected:
            self.open_log(self.selected)

    def open_log(self, name: str | None) -> None:
        screen = LogScreen(name)
        self.push_screen(screen, lambda _: None)
        self.call_after_refresh(self.follow_log_screen, screen)

    def follow_log_screen(self, screen: LogScreen) -> None:
        self._tails["screen"] += 1
        names = [screen.server] if screen.server else list(self.model.servers)
        view = screen.lines

        def write(entries: list[LogLine]) -> None:
            if screen in self.screen_stack:  # under the help overlay too; not once it is closed
                view.add(entries)

        self._follow_logs(names, "screen", self._tails["screen"], write)

    def close_log(self, screen: LogScreen) -> None:
        self._tails["screen"] += 1
        if self.screen is screen:
            self.pop_screen()
            self._catch_up()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """The command palette (ctrl+p) lists every dashboard action with its key."""
        for key in (*MAIN_KEYS, *APP_KEYS):
            if key.action not in ("cursor(1)", "cursor(-1)"):
                action = key.action

                async def run(action: str = action) -> None:
                    await self.run_action(action)

                yield SystemCommand(
                    f"{key.help[0].upper()}{key.help[1:]}", f"key: {key.shown or key.keys}", run
                )
        yield from super().get_system_commands(screen)

    # -- actions ------------------------------------------------------------------------------

    def action_cursor(self, step: int) -> None:
        if self.focused is self._table:
            self._table.action_move(step)

    def _run_action(self, label: str, call: Callable[[], Awaitable[object]]) -> None:
        async def run() -> None:
            try:
                result = await call()
            except RemoteError as exc:
                self.notify(f"{label}: {exc.message}", severity="error")
            except DaemonUnavailable as exc:
                self.notify(f"{label}: {exc.reason}", severity="error")
            except Exception as exc:
                self.notify(f"{label}: {type(exc).__name__}: {exc}", severity="error")
            else:
                self.notify(f"{label}: {result}" if isinstance(result, int | str) else label, timeout=3)

        self.run_worker(run(), group="actions")

    def _confirm(
        self,
        question: str,
        then: Callable[[str], None],
        choices: tuple[tuple[str, str], ...] = (("y", "yes"),),
    ) -> None:
        def answered(answer: str | None) -> None:
            if answer:
                then(answer)

        self.push_screen(ConfirmScreen(question, choices), answered)

    def _target(self) -> str | None:
        name = self.selected
        if not name or not self.connected or name not in self.model.servers:
            return None
        return name

    def action_restart(self) -> None:
        if name := self._target():
            self._confirm(
                f"Restart {name}?",
                lambda _: self._run_action(f"restart {name}", lambda: self.client.restart([name])),
            )

    def action_stop(self) -> None:
        if name := self._target():
            self._confirm(
                f"Stop {name}?", lambda _: self._run_action(f"stop {name}", lambda: self.client.stop([name]))
            )

    def action_start(self) -> None:
        if name := self._target():  # starting is not destructive: no question
            self._run_action(f"start {name}", lambda: self.client.start([name]))

    def action_reload(self) -> None:
        if not self.connected:
            return
        self._confirm(
            "Reload fleet.toml? Changed servers restart.", lambda _: self._run_action("reload", self._reload)
        )

    async def _reload(self) -> str:
        result = await self.client.reload()
        changes = [
            f"{len(result.get(k) or [])} {k}" for k in ("added", "removed", "changed") if result.get(k)
        ]
        return ", ".join(changes) or "nothing changed"

    def action_clear_cache(self) -> None:
        name = self._target()
        if not self.connected:
            return

        def clear(answer: str) -> None:
            target = name if answer == "y" else None
            self._run_action(
                f"cache cleared for {target or 'the fleet'}, entries", lambda: self.client.clear_cache(target)
            )

        choices = ((("y", f"only {name}"),) if name else ()) + (("a", "the whole fleet"),)
        self._confirm("Clear the cache?", clear, choices)

    def action_sort(self) -> None:
        self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        self._rebuild_rows()
        self._show_fleet()

    def action_toggle_pane(self) -> None:
        self.pane_forced = not self.pane_shown
        self._relayout()

    def action_filter(self) -> None:
        if not self.connected:
            return
        box = self.query_one("#filter", Input)
        box.add_class("-active")
        box.focus()
        self._relayout()

    def on_key(self, event: events.Key) -> None:
        if event.key != "escape" or self.screen is not self.screen_stack[0]:
            return
        box = self.query_one("#filter", Input)
        if self.focused is box or box.has_class("-active"):
            event.stop()
            box.value = ""
            box.remove_class("-active")
            self._relayout()
        elif self.focused is self.query_one("#log"):
            event.stop()
        self._table.focus()

    async def action_quit(self) -> None:
        self.exit(0)

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self._apply(Change(fleet=True))

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            event.control.remove_class("-active")
            self._relayout()
        self._table.focus()
