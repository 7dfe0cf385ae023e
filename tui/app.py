"""TopApp: the `mcpctl top` dashboard.

Data flow. One worker (`_feed`) owns the connection: `supervisor/status` once, then a
`supervisor/events` subscription whose pushes (state changes, once-a-second stats, restarts) are
folded into a `FleetModel`. The model says which servers changed, and only those table cells are
updated in place; rows are rebuilt only when the set of visible servers changes (filter, fleet
reload). A second, per-selection subscription (`_follow_logs`) carries the selected server's stderr,
so changing the selection never drops the main feed; a superseded one is closed between two
events, never cancelled in the middle of a socket read (see `_follow_logs`).

Failure. Any `DaemonUnavailable` from the feed hides the table and shows "daemon not running at
PATH — retrying", then retries with capped exponential backoff. Workers catch everything they can
raise, so the user never sees a traceback.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from typing import Any, ClassVar

import anyio
from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Input, Label, Log, Sparkline, Static

from tui.client import DaemonClient, DaemonError, DaemonUnavailable, Fleet, Targets
from tui.model import Change, FleetModel
from tui.render import (
    BREAKER_MARKS,
    STARTABLE_STATES,
    STATE_STYLES,
    UNKNOWN,
    breaker_state,
    fmt_bytes,
    fmt_duration,
    fmt_ms,
    fmt_pct,
    fmt_rate,
    is_lazy,
    memory_bar,
    retry_delay,
    state_text,
    usage_style,
)
from tui.table import LogTail, ServerTable

LOG_BACKFILL = 200

INFO_WIDTH = 46
"""Text columns of the detail pane (#info is 48 wide with padding 0 1)."""

NAME_STYLES = {"degraded": "yellow", "failed": "red"}
"""A server that needs a look stands out by name too, not only by its state cell."""

COLUMNS: list[tuple[str, str, int]] = [
    ("name", "SERVER", 20),
    ("state", "STATE", 15),
    ("pid", "PID", 6),
    ("uptime", "UPTIME", 6),
    ("restarts", "RST", 3),
    ("memory", "MEMORY", 17),
    ("load", "INFL/Q", 6),
    ("calls", "CALL/S", 6),
    ("p50", "P50", 6),
    ("p95", "P95", 6),
    ("cache", "CACHE", 5),
]
"""(key, heading, width). Fixed widths: a cell update never re-measures the table."""


def _right(value: str, style: str = "") -> Text:
    return Text(value, style=style, justify="right")


def row_cells(server: dict[str, Any]) -> tuple[Text, ...]:
    """One table row, in COLUMNS order."""
    restarts = int(server.get("restarts") or 0)
    pid = server.get("pid")
    state = str(server.get("state", "?"))
    return (
        Text(str(server["name"]), style=NAME_STYLES.get(state, "")),
        state_text(state, breaker_state(server.get("breaker")), lazy=is_lazy(server)),
        _right(str(pid) if pid else UNKNOWN),
        _right(fmt_duration(server.get("uptime_s"))),
        _right(str(restarts), "yellow" if restarts else "dim"),
        memory_bar(server.get("memory_bytes"), server.get("memory_limit")),
        _right(
            f"{server.get('in_flight', 0)}/{server.get('queued', 0)}", "bold" if server.get("queued") else ""
        ),
        _right(fmt_rate(server.get("calls_per_s"))),
        _right(fmt_ms(server.get("p50_ms"))),
        _right(fmt_ms(server.get("p95_ms"))),
        _right(fmt_pct(server.get("cache_hit_rate"))),
    )


def breaker_parts(breaker: object) -> list[tuple[str, str]]:
    """`open 5/5 in 60s, retry 12s, last: timed out`, or `closed`, from a status entry."""
    state = breaker_state(breaker)
    if state is None:
        return [(UNKNOWN, "")]
    parts = [(state, BREAKER_MARKS[state][1] if state in BREAKER_MARKS else "")]
    if isinstance(breaker, dict):
        failures, threshold = breaker.get("failures"), breaker.get("threshold")
        if failures and threshold:
            window = breaker.get("window_s")
            parts.append((f" {failures}/{threshold}" + (f" in {window:g}s" if window else ""), "dim"))
        retry = breaker.get("retry_after_ms")
        if isinstance(retry, int | float):
            parts.append((f", retry {fmt_duration(retry / 1000)}", "dim"))
        if state != "closed" and breaker.get("last_failure"):
            parts.append((f", last: {breaker['last_failure']}", "dim"))
    return parts


def _fit(text: Text) -> Text:
    """One line of the detail pane: cut with an ellipsis rather than wrapped."""
    text.truncate(INFO_WIDTH, overflow="ellipsis")
    return text


class HelpScreen(ModalScreen[None]):
    """`?`: the keys, and how to get out."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "dismiss", "close"),
    ]
    KEYS: ClassVar[list[tuple[str, str]]] = [
        ("↑ ↓  j k", "select a server"),
        ("r", "restart the selected server"),
        ("s", "stop the selected server, or start it if it is stopped / failed"),
        ("R  S  A", "restart / stop / start every server (asks first)"),
        ("l", "focus the log tail (l or esc to go back)"),
        ("/", "filter by name (enter keeps it, esc clears it)"),
        ("?", "this help"),
        ("q", "quit"),
    ]

    def compose(self) -> ComposeResult:
        text = Text.assemble(
            ("mcpctl top — keys\n\n", "bold"),
            *[part for key, what in self.KEYS for part in ((f"{key:>10}  ", "bold cyan"), f"{what}\n")],
            ("\nany of esc ? q closes this", "dim"),
        )
        yield Static(text, id="help")


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question for actions on the whole fleet."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "yes"),
        Binding("n,escape", "answer(False)", "no"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        yield Static(Text.assemble((self.question, "bold"), "\n\n", ("y", "bold green"), " yes   ",
                                   ("n", "bold red"), " no"), id="confirm")  # fmt: skip

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class TopApp(App[int]):
    """The live dashboard. `client` is the only way to the daemon; `clock` is injectable so
    snapshots of relative times ("3m ago") are stable."""

    TITLE = "mcpctl top"
    ENABLE_COMMAND_PALETTE = False
    CSS = """
    Screen { layout: vertical; }
    #fleet { height: 1; width: 1fr; background: $panel; padding: 0 1; }
    #main { height: 1fr; }
    #filter { display: none; height: 1; border: none; padding: 0 1; background: $boost; }
    #filter.-active { display: block; }
    #servers { height: 1fr; }
    #detail { height: 15; border-top: solid $primary-darken-2; }
    #info { width: 48; height: 1fr; padding: 0 1; }  /* INFO_WIDTH + padding */
    #charts { width: 30; padding: 0 1; }
    #charts Label { width: 1fr; color: $text-muted; }
    #charts Sparkline { height: 2; margin-bottom: 1; }
    #log { width: 1fr; border: round $panel-lighten-1; border-title-color: $text-muted; }
    #log:focus { border: round $accent; }
    #gone { display: none; height: 1fr; content-align: center middle; text-align: center; }
    HelpScreen, ConfirmScreen { align: center middle; }
    #help, #confirm { width: auto; max-width: 90; height: auto; padding: 1 2; border: round $accent;
                      background: $surface; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor(1)", "down", show=False),
        Binding("k", "cursor(-1)", "up", show=False),
        Binding("r", "restart", "restart"),
        Binding("s", "stop_start", "stop/start"),
        Binding("R", "all('restart')", "restart all", show=False),
        Binding("S", "all('stop')", "stop all", show=False),
        Binding("A", "all('start')", "start all", show=False),
        Binding("l", "toggle_log", "log"),
        Binding("slash", "filter", "filter"),
        Binding("escape", "escape", "back", show=False),
        Binding("question_mark", "help", "help"),
        Binding("q", "quit", "quit"),
    ]

    def __init__(
        self,
        client: DaemonClient,
        *,
        clock: Callable[[], float] = time.time,
        retry_base: float = 0.5,
        retry_cap: float = 5.0,
    ) -> None:
        super().__init__()
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
        self.tools: dict[str, list[dict[str, Any]] | str] = {}
        """Tools per server, or why they could not be listed; refetched when the server gets ready."""
        self._rendered: dict[str, tuple[Text, ...]] = {}
        self._shown: dict[str, Text] = {}
        """What each Static shows, by selector (see `_put`)."""
        self._logs_for: str | None = None
        self._tail = 0
        """The number of the current log tail; an older follower stops at its next event."""

    # -- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(id="fleet")
        with Vertical(id="main"):
            yield Input(placeholder="filter by name", id="filter")
            yield ServerTable(id="servers", cursor_type="row", zebra_stripes=True)
            with Horizontal(id="detail"):
                yield Static(id="info")
                with Vertical(id="charts"):
                    yield Label("calls/s", id="calls-label")
                    yield Sparkline([], id="calls-spark")
                    yield Label("p95 latency", id="latency-label")
                    yield Sparkline([], id="latency-spark")
                yield LogTail(id="log", max_lines=500)
        yield Static(id="gone")
        yield Footer()

    def on_mount(self) -> None:
        table = self._table
        for key, heading, width in COLUMNS:
            table.add_column(Text(heading, justify="left" if key in ("name", "state", "memory") else "right"),
                             width=width, key=key)  # fmt: skip
        table.focus()
        self._show_fleet()
        self._feed()

    @property
    def _table(self) -> ServerTable:
        return self.query_one("#servers", ServerTable)

    # -- the feed -----------------------------------------------------------------------------

    @work(exclusive=True, group="feed")
    async def _feed(self) -> None:
        attempt = 0
        while True:
            try:
                self._apply(self.model.load_status(await self.client.status()))
                self._set_connected(None)
                attempt = 0
                async with aclosing(self.client.events()) as events:
                    async for event in events:
                        self._apply(self.model.apply(event))
                reason = "the event stream ended"
            except DaemonUnavailable as exc:
                reason = exc.reason
            except DaemonError as exc:
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
        except NoMatches:  # the app is shutting down and its screen is gone: nothing to show
            return
        main.display = self.connected
        self.query_one("#fleet").display = self.connected
        gone = self.query_one("#gone", Static)
        gone.display = not self.connected
        if not self.connected:
            self._logs_for = None
            self._tail += 1  # its follower ends with the connection, or at its next event
            gone.update(Text.assemble(
                (f"daemon not running at {self.client.socket_path} — retrying\n\n", "bold"),
                (f"({gone_reason})\n\n", "dim"),
                ("start it with ", "dim"), ("mcpctl serve", "bold"), ("  ·  q quits", "dim"),
            ))  # fmt: skip
        elif not was:
            self.tools.clear()
            self._table.focus()
            self._selection_changed(force=True)

    def _apply(self, change: Change) -> None:
        if change.membership or self._visible() != [str(row.key.value) for row in self._table.ordered_rows]:
            self._rebuild_rows()
        else:
            self._table.set_cells(cell for name in change.servers for cell in self._changed_cells(name))
        if change.fleet:
            self._show_fleet()
        if self.selected in change.servers or (self.selected and change.fleet):
            server = self.model.servers.get(self.selected)
            if server and server.get("state") == "ready" and isinstance(self.tools.get(self.selected), str):
                self._fetch_tools(self.selected)  # it was down when we asked; ask again
            self._show_detail()

    def _visible(self) -> list[str]:
        needle = self.filter_text.lower()
        return [name for name in self.model.servers if needle in name.lower()]

    def _rebuild_rows(self) -> None:
        table = self._table
        keep = self.selected
        table.clear()
        self._rendered.clear()
        visible = self._visible()
        for name in visible:
            cells = row_cells(self.model.servers[name])
            self._rendered[name] = cells
            table.add_row(*cells, key=name)
        if keep in visible:
            table.move_cursor(row=visible.index(keep), animate=False)
        self._selection_changed()

    def _changed_cells(self, name: str) -> list[tuple[str, str, Text]]:
        """The (row, column, value) cells of `name` that differ from what the table shows."""
        old = self._rendered.get(name)
        if old is None or name not in self.model.servers:
            return []
        cells = row_cells(self.model.servers[name])
        self._rendered[name] = cells
        return [(name, key, after) for (key, _, _), before, after in zip(COLUMNS, old, cells, strict=True)
                if before != after]  # fmt: skip

    # -- header and detail pane ---------------------------------------------------------------

    def _show_fleet(self) -> None:
        t = self.model.totals()
        daemon = self.model.daemon
        memory: list[str | tuple[str, str]] = [fmt_bytes(t.memory_bytes)]
        if t.memory_limit:
            memory = [(fmt_bytes(t.memory_bytes), usage_style(t.memory_bytes / t.memory_limit)),
                      f"/{fmt_bytes(t.memory_limit)}"]  # fmt: skip
        errors_style = "red" if t.errors_per_s else ""
        self._put("#fleet", Text.assemble(
            ("mcp-supervisor ", "bold"),
            (f"{t.ready}/{t.total}", "bold green" if t.ready == t.total else "bold yellow"), " ready  ",
            "mem ", *memory, "  ",
            (fmt_rate(t.calls_per_s), "bold"), " calls/s  ",
            (fmt_rate(t.errors_per_s), errors_style), " err/s  ",
            "cache ", fmt_pct(t.cache_hit_rate), "  ",
            "up ", fmt_duration(t.uptime_s), "  ",
            (f"pid {daemon.get('pid', UNKNOWN)} v{daemon.get('version', '?')}", "dim"),
            (f"  filter: {self.filter_text}" if self.filter_text else "", "bold cyan"),
        ))  # fmt: skip

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
        now = self.clock()
        state = str(server.get("state"))
        since = server.get("since")
        held = f" for {fmt_duration(now - since)}" if isinstance(since, int | float) else ""
        reason = str(server.get("reason") or "")
        breaker = breaker_state(server.get("breaker"))
        rate_limited = server.get("rate_limited_total")
        lines: list[Text] = [
            Text.assemble((name, "bold"), "  ",
                          state_text(state, breaker, lazy=is_lazy(server)), (held, "dim")),
            Text(f"  {reason}", style=STATE_STYLES.get(state, "")),
            Text.assemble(("pid ", "dim"), str(server.get("pid") or UNKNOWN), ("  up ", "dim"),
                          fmt_duration(server.get("uptime_s")), ("  proto ", "dim"),
                          str(server.get("protocol_version") or UNKNOWN),
                          ("  lazy", "cyan") if server.get("start") == "lazy" else ""),
            _fit(Text.assemble(("instances ", "dim"), str(server.get("instances", UNKNOWN)),
                               ("  breaker ", "dim"), *breaker_parts(server.get("breaker")))),
            Text.assemble(("calls ", "dim"), str(server.get("calls_total", 0)), ("  errors ", "dim"),
                          str(server.get("errors_total", 0)),
                          *((("  limited ", "dim"), (str(rate_limited), "yellow")) if rate_limited else ()),
                          ("  in-flight ", "dim"), str(server.get("in_flight", 0)), ("  queued ", "dim"),
                          str(server.get("queued", 0))),
        ]  # fmt: skip
        if server.get("autoscale"):
            lines.append(Text.assemble(("autoscale ", "dim"), f"{server.get('min_instances')}–"
                                       f"{server.get('max_instances')} instances, target "
                                       f"{server.get('target_instances')}"))  # fmt: skip
            last = server.get("last_scale")
            if isinstance(last, dict):
                at = last.get("at")
                ago = f"{fmt_duration(now - at)} ago: " if isinstance(at, int | float) else ""
                lines.append(Text(f"  {ago}{last.get('direction')}: {last.get('reason')}",
                                  style="yellow" if last.get("direction") == "refused" else "cyan"))
        reasons = server.get("restart_reasons") or {}
        summary = ", ".join(f"{why} {n}" for why, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
        lines.append(_fit(Text.assemble(("restarts ", "dim"), str(server.get("restarts", 0)),
                                        f" ({summary})" if summary else "")))  # fmt: skip
        for restart in list(self.model.restarts.get(name, ()))[-3:][::-1]:
            detail = f": {restart.detail}" if restart.detail and restart.detail != restart.reason else ""
            ago = fmt_duration(now - restart.at)
            lines.append(_fit(Text(f"  {ago} ago: {restart.reason}{detail}", "yellow")))
        last_exit = server.get("last_exit")
        if last_exit and state not in ("ready", "degraded") and str(last_exit) not in reason:
            lines.append(_fit(Text.assemble(("last exit ", "dim"), (str(last_exit), "red"))))
        tools = self.tools.get(name)
        if tools is None:
            lines.append(Text.assemble(("tools ", "dim"), str(server.get("tools", UNKNOWN))))
        elif isinstance(tools, str):
            lines.append(Text.assemble(("tools ", "dim"), (tools, "dim italic")))
        else:
            lines.append(Text.assemble(("tools ", "dim"), str(len(tools))))
            lines.extend(_fit(Text(f"  {tool.get('name', '?')}")) for tool in tools)
        self._put("#info", Text("\n").join(lines))
        calls = list(self.model.calls_history.get(name, ()))
        latency = list(self.model.latency_history.get(name, ()))
        self.query_one("#calls-spark", Sparkline).data = calls
        self.query_one("#latency-spark", Sparkline).data = latency
        now_calls, max_calls = server.get("calls_per_s"), max(calls, default=None)
        now_p95, max_p95 = server.get("p95_ms"), max(latency, default=None)
        self._put("#calls-label", Text(f"calls/s  now {fmt_rate(now_calls)}  max {fmt_rate(max_calls)}"))
        self._put("#latency-label", Text(f"p95  now {fmt_ms(now_p95)}  max {fmt_ms(max_p95)}"))

    # -- selection, logs, tools ---------------------------------------------------------------

    @on(DataTable.RowHighlighted, "#servers")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._selection_changed()

    def _selection_changed(self, force: bool = False) -> None:
        table = self._table
        name: str | None = None
        if table.row_count:
            name = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        if name == self.selected and not force:
            return
        self.selected = name
        self._show_detail()
        if name is not None and self.connected and (force or self._logs_for != name):
            self._logs_for = name
            self._tail += 1
            self._follow_logs(name, self._tail)
            if name not in self.tools:
                self._fetch_tools(name)

    @work(group="logs")
    async def _follow_logs(self, name: str, tail: int) -> None:
        """Follow `name`'s stderr until the selection moves on.

        Never cancelled (not `exclusive`): cancelling a task while it reads a Unix socket, in the
        loop iteration where data arrives, makes anyio's reader callback set a result on the
        cancelled future (InvalidStateError in the event loop's exception handler), and a
        selection change is exactly "while a line arrives". Instead, a superseded follower writes
        nothing more and closes its subscription between two events: within a second, as the
        daemon pushes stats to every subscriber once a second.
        """
        log = self.query_one("#log", Log)
        log.clear()
        log.border_title = f"stderr · {name}"
        try:
            backfill = await self.client.logs(name, LOG_BACKFILL)
            if tail != self._tail:
                return
            log.write_lines(backfill)
            async with aclosing(self.client.events([name])) as events:
                async for event in events:
                    if tail != self._tail:
                        return  # aclosing ends the subscription here, between two reads
                    if event.get("type") == "log" and event.get("server") == name:
                        log.write_line(str(event.get("line", "")))
        except DaemonUnavailable:
            pass  # the main feed noticed too, and says so
        except DaemonError as exc:
            if tail == self._tail:
                log.write_line(f"(no log: {exc.message})")
        except Exception as exc:
            if tail == self._tail:
                log.write_line(f"(log tail stopped: {type(exc).__name__}: {exc})")

    @work(group="tools")
    async def _fetch_tools(self, name: str) -> None:
        try:
            self.tools[name] = await self.client.tools(name)
        except DaemonError as exc:
            self.tools[name] = exc.message
        except DaemonUnavailable as exc:
            self.tools[name] = exc.reason
        except Exception as exc:
            self.tools[name] = f"{type(exc).__name__}: {exc}"
        if name == self.selected:
            self._show_detail()

    # -- actions ------------------------------------------------------------------------------

    def action_cursor(self, step: int) -> None:
        if self.focused is self._table:
            if step > 0:
                self._table.action_cursor_down()
            else:
                self._table.action_cursor_up()

    def _run_action(self, label: str, call: Callable[[], Awaitable[None]]) -> None:
        async def run() -> None:
            try:
                await call()
            except DaemonError as exc:
                self.notify(f"{label}: {exc.message}", severity="error")
            except DaemonUnavailable as exc:
                self.notify(f"{label}: {exc.reason}", severity="error")
            except Exception as exc:
                self.notify(f"{label}: {type(exc).__name__}: {exc}", severity="error")
            else:
                self.notify(label, timeout=3)

        self.run_worker(run(), group="actions")

    def action_restart(self) -> None:
        if self.selected and self.connected:
            name = self.selected
            self._run_action(f"restart {name}", lambda: self.client.restart([name]))

    def action_stop_start(self) -> None:
        name = self.selected
        if not name or not self.connected or name not in self.model.servers:
            return
        if self.model.servers[name].get("state") in STARTABLE_STATES:
            self._run_action(f"start {name}", lambda: self.client.start([name]))
        else:
            self._run_action(f"stop {name}", lambda: self.client.stop([name]))

    def action_all(self, verb: str) -> None:
        if not self.connected:
            return
        count = len(self.model.servers)

        def answered(yes: bool | None) -> None:
            if yes:
                method: Callable[[Targets], Awaitable[None]] = getattr(self.client, verb)
                self._run_action(f"{verb} all {count} servers", lambda: method(Fleet.ALL))

        if verb == "start":
            answered(True)  # starting is not destructive
        else:
            self.push_screen(ConfirmScreen(f"{verb.capitalize()} all {count} servers?"), answered)

    def action_toggle_log(self) -> None:
        log = self.query_one("#log", Log)
        if self.focused is log:
            self._table.focus()
        elif self.connected:
            log.focus()

    def action_filter(self) -> None:
        if not self.connected:
            return
        box = self.query_one("#filter", Input)
        box.add_class("-active")
        box.focus()

    def action_escape(self) -> None:
        box = self.query_one("#filter", Input)
        if self.focused is box or (box.has_class("-active") and self.focused is self._table):
            box.value = ""
            box.remove_class("-active")
        self._table.focus()

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

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
        self._table.focus()
