"""The dashboard's other screens: help, confirmation, one server's detail, the full log view.

They read what the app already knows (`TopApp.model`, the tools and details it fetched) and ask
the app to act; none of them talks to the daemon itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Input, Label, Sparkline, Static

from tui.columns import fit_words
from tui.keys import APP_KEYS, DETAIL_KEYS, LOG_KEYS, MAIN_KEYS, Key
from tui.logview import LogLines
from tui.render import (
    BLOCKED_MARK,
    CHANGED_MARK,
    STATE_MARKS,
    STATE_STYLES,
    UNKNOWN,
    changed_tools,
    fmt_bytes,
    fmt_clock,
    fmt_cpu,
    fmt_duration,
    fmt_ms,
    fmt_rate,
)

if TYPE_CHECKING:
    from tui.app import TopApp


def keys_text(title: str, *tables: tuple[str, tuple[Key, ...]]) -> Text:
    parts: list[Text | str | tuple[str, str]] = [(f"{title}\n", "bold")]
    for heading, keys in tables:
        parts.append((f"\n{heading}\n", "bold underline"))
        for key in keys:
            parts += [(f"{key.shown or key.keys:>12}  ", "bold cyan"), f"{key.help}\n"]
    parts.append(("\nmarks\n", "bold underline"))
    parts += [" ".join(f"{STATE_MARKS[state]} {state}" for state in STATE_MARKS), "\n"]
    parts += [(f"{CHANGED_MARK}n", "yellow"), " tools changed since pinned, still served   ",
              (f"{BLOCKED_MARK}n", "bold red"), " changed and held back until approved\n"]  # fmt: skip
    parts.append(("\nctrl+p: every action in the command palette · esc ? q closes this", "dim"))
    return Text.assemble(*parts)


class HelpScreen(ModalScreen[None]):
    """`?`: every key, and how to get out."""

    BINDINGS: ClassVar[list[BindingType]] = [("escape,question_mark,q", "dismiss", "close")]

    def compose(self) -> ComposeResult:
        yield VerticalScroll(
            Static(
                keys_text(
                    "mcpctl top — keys",
                    ("fleet", (*MAIN_KEYS, *APP_KEYS)),
                    ("log view", LOG_KEYS),
                    ("detail screen", DETAIL_KEYS),
                )
            ),
            id="help",
        )


class ConfirmScreen(ModalScreen[str | None]):
    """A question before anything destructive; the answer is the key of the choice (None: no)."""

    BINDINGS: ClassVar[list[BindingType]] = [("n,escape", "answer(None)", "no")]

    def __init__(self, question: str, choices: tuple[tuple[str, str], ...] = (("y", "yes"),)) -> None:
        super().__init__()
        self.question = question
        self.choices = choices

    def compose(self) -> ComposeResult:
        parts: list[str | tuple[str, str]] = [(self.question, "bold"), "\n\n"]
        for key, what in self.choices:
            parts += [(key, "bold green"), f" {what}   "]
        parts += [("n", "bold red"), " no"]
        yield Static(Text.assemble(*parts), id="confirm")

    def on_key(self, event: Any) -> None:
        for key, _ in self.choices:
            if event.key == key:
                event.stop()
                self.dismiss(key)

    def action_answer(self, answer: str | None) -> None:
        self.dismiss(answer)


def _section(title: str, count: str = "") -> Text:
    return Text.assemble((title, "bold"), (f"  {count}" if count else "", "dim"))


class DetailScreen(Screen[None]):
    """Everything about one server: config (secrets masked by the daemon), state history with
    reasons and times, restart timeline, tools, charts of the session, the last stderr lines."""

    BINDINGS: ClassVar[list[BindingType]] = [key.binding() for key in DETAIL_KEYS]
    CHARTS = (
        ("memory", "memory", fmt_bytes),
        ("cpu", "CPU", fmt_cpu),
        ("calls", "calls/s", fmt_rate),
        ("p95", "p95 latency", fmt_ms),
    )

    def __init__(self, name: str) -> None:
        super().__init__()
        self.server = name
        self._drawn = False
        self._shown: dict[str, Text] = {}

    def _put(self, selector: str, content: Text) -> None:
        """Update a Static only when what it shows changes (this screen is redrawn every second)."""
        if self._shown.get(selector) != content:
            self._shown[selector] = content
            self.query_one(selector, Static).update(content)

    @property
    def top(self) -> TopApp:
        return cast("TopApp", self.app)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="detail-body"):
            yield Static(id="d-head")
            with Horizontal(id="d-columns"):
                with Vertical(id="d-left"):
                    yield Static(id="d-config")
                    yield Static(id="d-states")
                    yield Static(id="d-restarts")
                with Vertical(id="d-right"):
                    yield Static(id="d-changes")
                    for metric, _, _ in self.CHARTS:
                        yield Label(id=f"d-{metric}-label")
                        yield Sparkline([], id=f"d-{metric}-chart")
                    yield Static(id="d-tools")
            yield Static(id="d-stderr")
        yield Footer()

    def on_mount(self) -> None:
        self._drawn = True
        self.refresh_view()

    def refresh_view(self) -> None:
        """Redraw from what the app knows (called on every change to this server)."""
        if not self._drawn:
            return  # on_mount draws it
        app = self.top
        server = app.model.servers.get(self.server)
        if server is None:
            self._put("#d-head", Text(f"{self.server}: no longer in the fleet", "bold red"))
            return
        detail = app.details.get(self.server, {})
        now = app.clock()
        state = str(server.get("state"))
        since = server.get("since")
        held = f" for {fmt_duration(now - since)}" if isinstance(since, int | float) else ""
        self._put(
            "#d-head",
            Text.assemble(
                (self.server, "bold"),
                "  ",
                (f"{STATE_MARKS.get(state, '?')} {state}", STATE_STYLES.get(state, "")),
                (held, "dim"),
                "\n",
                (str(server.get("reason") or ""), STATE_STYLES.get(state, "")),
                "\n",
                ("pid ", "dim"),
                str(server.get("pid") or UNKNOWN),
                ("  up ", "dim"),
                fmt_duration(server.get("uptime_s")),
                ("  instances ", "dim"),
                str(server.get("instances", UNKNOWN)),
                ("  proto ", "dim"),
                str(server.get("protocol_version") or UNKNOWN),
                ("  calls ", "dim"),
                str(server.get("calls_total", 0)),
                ("  errors ", "dim"),
                str(server.get("errors_total", 0)),
            )
        )
        self._put("#d-config", config_text(detail.get("config")))
        self._put("#d-states", self._states(detail, server))
        self._put("#d-restarts", self._restarts(detail, server))
        for metric, label, fmt in self.CHARTS:
            series = app.model.series_of(self.server, metric)
            values = list(series.buckets) if series else []
            peak = max(values, default=None)
            now_value = series.last if series else None
            self._put(
                f"#d-{metric}-label",
                Text.assemble(
                    (label, "bold"),
                    ("  now ", "dim"),
                    fmt(now_value),
                    ("  max ", "dim"),
                    fmt(peak),
                    ("  (session, 10 s per bar)", "dim"),
                )
            )
            chart = self.query_one(f"#d-{metric}-chart", Sparkline)
            if chart.data != values:  # a bar is 10 s: most seconds change none
                chart.data = values
        self.query_one("#d-changes", Static).display = bool(changed_tools(server)[0])
        self._put("#d-changes", self._tool_changes(server))
        self._put("#d-tools", self._tools(server))
        self._put("#d-stderr", self._stderr())

    def _states(self, detail: dict[str, Any], server: dict[str, Any]) -> Text:
        history = detail.get("state_history")
        entries: list[tuple[Any, str, str]] = []
        if isinstance(history, list):
            entries = [
                (h.get("at"), str(h.get("state")), str(h.get("reason") or ""))
                for h in history
                if isinstance(h, dict)
            ]
        seen = self.top.model.transitions.get(self.server, ())
        last_at = max((at for at, _, _ in entries if isinstance(at, int | float)), default=0.0)
        entries += [(t.at, t.state, t.reason) for t in seen if t.at is not None and t.at > last_at]
        if not entries:
            entries = [(t.at, t.state, t.reason) for t in seen]
        lines = [_section("STATE HISTORY", "newest first")]
        for at, state, reason in list(reversed(entries))[:12]:
            lines.append(
                Text.assemble(
                    "  ",
                    (fmt_clock(at if isinstance(at, int | float) else None), "dim"),
                    "  ",
                    (f"{STATE_MARKS.get(state, '?')} {state:<11}", STATE_STYLES.get(state, "")),
                    " ",
                    reason,
                )
            )
        return Text("\n").join(lines)

    def _restarts(self, detail: dict[str, Any], server: dict[str, Any]) -> Text:
        reasons = server.get("restart_reasons") or {}
        summary = ", ".join(f"{why} {n}" for why, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
        lines = [_section("RESTARTS", f"{server.get('restarts', 0)} ({summary})" if summary else "none")]
        history = detail.get("restart_history")
        entries: list[tuple[Any, str, str]] = []
        if isinstance(history, list):
            entries = [
                (h.get("at"), str(h.get("kind")), str(h.get("detail") or ""))
                for h in history
                if isinstance(h, dict)
            ]
        last_at = max((at for at, _, _ in entries if isinstance(at, int | float)), default=0.0)
        entries += [
            (r.at, r.reason, r.detail) for r in self.top.model.restarts.get(self.server, ()) if r.at > last_at
        ]
        for at, kind, why in list(reversed(entries))[:10]:
            lines.append(
                Text.assemble(
                    "  ",
                    (fmt_clock(at if isinstance(at, int | float) else None), "dim"),
                    "  ",
                    (f"{kind:<13}", "yellow"),
                    " ",
                    why if why != kind else "",
                )
            )
        last_exit = server.get("last_exit")
        if last_exit:
            lines.append(Text.assemble(("  last exit ", "dim"), (str(last_exit), "red")))
        return Text("\n").join(lines)

    def _tool_changes(self, server: dict[str, Any]) -> Text:
        """Which tools changed since they were pinned, whether clients still get them, what changed
        and how to accept it."""
        changed, blocked = changed_tools(server)
        if not changed:
            return Text("")
        how = "held back from clients" if blocked else "still served"
        lines = [_section("TOOL CHANGES", f"{len(changed)} since pinned, {how}")]
        entries = {str(e["tool"]): e for e in self.top.tool_diffs.get(self.server, [])}
        for name in changed[:SHOWN_CHANGES]:
            entry = entries.get(name, {})
            mark, style, what = (
                (BLOCKED_MARK, "bold red", "blocked") if blocked else (CHANGED_MARK, "yellow", "warned")
            )
            since = entry.get("since")
            lines.append(
                Text.assemble(
                    "  ",
                    (f"{mark} {name}", style),
                    f"  {what}",
                    (f"  since {fmt_clock(since)}" if isinstance(since, int | float) else "", "dim"),
                )
            )
            lines += [Text.assemble("      ", line) for line in change_summary(entry)]
        if len(changed) > SHOWN_CHANGES:
            lines.append(Text(f"  … {len(changed) - SHOWN_CHANGES} more", "dim"))
        lines.append(Text(f"  approve: mcpctl tools approve {self.server} [TOOL]", "dim"))
        lines.append(Text(f"  the whole diff: mcpctl tools --diff {self.server}", "dim"))
        return Text("\n").join(lines)

    def _tools(self, server: dict[str, Any]) -> Text:
        changed = set(changed_tools(server)[0])
        tools = self.top.tools.get(self.server)
        if tools is None:
            return Text.assemble(_section("TOOLS"), ("\n  asking…", "dim"))
        if isinstance(tools, str):
            return Text.assemble(_section("TOOLS"), ("\n  " + tools, "dim italic"))
        lines = [_section("TOOLS", str(len(tools)))]
        lines += [
            Text.assemble(
                (f"{CHANGED_MARK} ", "yellow") if t.get("name") in changed else "  ",
                (str(t.get("name", "?")), "cyan"),
                ("  " + str(t.get("description") or ""), "dim"),
            )
            for t in tools[:40]
        ]
        if len(tools) > 40:
            lines.append(Text(f"  … {len(tools) - 40} more", "dim"))
        return Text("\n").join(lines)

    def _stderr(self) -> Text:
        from tui.logview import line_text

        lines = [_section("LAST STDERR")]
        lines += [Text.assemble("  ", line_text(e)) for e in self.top.stderr.get(self.server, [])[-15:]]
        if len(lines) == 1:
            lines.append(Text("  (nothing yet)", "dim"))
        return Text("\n").join(lines)

    def action_log(self) -> None:
        self.top.open_log(self.server)

    def action_close(self) -> None:
        self.top.close_detail(self)


SCHEMAS = ("inputSchema", "outputSchema")
SHOWN_CHANGES = 20
"""Changed tools listed on the detail screen (the rest counted): a peer's list is bounded here."""
SHOWN_ARGUMENTS = 6
"""Arguments added (and removed) named per changed schema."""


def change_summary(entry: dict[str, Any], width: int = 34) -> list[Text]:
    """What differs between a tool's pinned and current definition, a line or two per field:
    text fields as `− before` / `+ after`, schemas as the arguments added and removed, anything
    else by name (the full diff is `mcpctl tools --diff`)."""
    pinned, current = entry.get("pinned"), entry.get("current")
    if not isinstance(pinned, dict) or not isinstance(current, dict):
        return []
    lines: list[Text] = []
    for field in sorted(set(pinned) | set(current)):
        before, after = pinned.get(field), current.get(field)
        if before == after:
            continue
        if isinstance(before, str | None) and isinstance(after, str | None):
            was, now = fit_words(str(before or ""), width), fit_words(str(after or ""), width)
            lines.append(Text.assemble((f"{field}: ", "dim"), (f"− {was}", "red")))
            lines.append(Text.assemble(" " * (len(field) + 2), (f"+ {now}", "green")))
            continue
        old = _properties(before) if field in SCHEMAS else None
        new = _properties(after) if field in SCHEMAS else None
        if old is not None and new is not None and old != new:
            added, removed = sorted(new - old), sorted(old - new)
            parts: list[str | tuple[str, str]] = [(f"{field}: arguments ", "dim")]
            parts += [(f"+{fit_words(name, 24)} ", "green") for name in added[:SHOWN_ARGUMENTS]]
            parts += [(f"−{fit_words(name, 24)} ", "red") for name in removed[:SHOWN_ARGUMENTS]]
            if len(added) > SHOWN_ARGUMENTS or len(removed) > SHOWN_ARGUMENTS:
                parts.append(("…", "dim"))
            lines.append(Text.assemble(*parts))
        else:
            lines.append(Text.assemble((field, "dim"), " changed"))
    return lines


def _properties(schema: object) -> set[str] | None:
    props = schema.get("properties") if isinstance(schema, dict) else None
    return {str(name) for name in props} if isinstance(props, dict) else None


def config_text(config: object) -> Text:
    lines = [_section("CONFIG", "secrets masked")]
    if not isinstance(config, dict):
        lines.append(Text("  (this daemon does not publish its config)", "dim"))
        return Text("\n").join(lines)

    def row(key: str, value: str) -> None:
        if value:
            lines.append(Text.assemble((f"  {key:<9}", "dim"), value))

    row("command", " ".join([str(config.get("command") or ""), *map(str, config.get("args") or [])]))
    row("package", str(config.get("package") or ""))
    row("cwd", str(config.get("cwd") or ""))
    env = config.get("env") or {}
    if isinstance(env, dict):
        row("env", "  ".join(f"{k}={v}" for k, v in env.items()))
    limits = [
        f"memory {fmt_bytes(config['memory_limit'])}" if config.get("memory_limit") else "",
        f"in-flight {config.get('max_in_flight')}",
        f"queue {config.get('max_queue')}",
        f"timeout {fmt_duration(config.get('request_timeout'))}",
        f"restarts {config.get('max_restarts')} in {fmt_duration(config.get('restart_window'))}",
        f"rate {config['rate_limit']}" if config.get("rate_limit") else "",
    ]
    row("limits", " · ".join(part for part in limits if part))
    scale = f"{config.get('instances')} instance(s)"
    if config.get("max_instances"):
        scale = f"autoscale {config.get('min_instances')}–{config.get('max_instances')}"
    idle = f" · idle stop {fmt_duration(config['idle_stop_after'])}" if config.get("idle_stop_after") else ""
    row("start", f"{config.get('start')} · {scale}{idle}")
    return Text("\n").join(lines)


class LogScreen(Screen[None]):
    """Full-screen log: one server or all interleaved, with search and follow."""

    BINDINGS: ClassVar[list[BindingType]] = [key.binding() for key in LOG_KEYS]

    def __init__(self, name: str | None) -> None:
        super().__init__()
        self.server = name
        """The server shown, or None for all of them interleaved."""
        self.last_server = name

    @property
    def top(self) -> TopApp:
        return cast("TopApp", self.app)

    def compose(self) -> ComposeResult:
        yield Static(id="log-head")
        yield LogLines(id="log-lines", show_server=self.server is None)
        yield Input(placeholder="search", id="log-search")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(LogLines).focus()
        self.show_head()

    @property
    def lines(self) -> LogLines:
        return self.query_one(LogLines)

    def show_head(self) -> None:
        view = self.lines
        found = view.matches() if view.needle else []
        where = (
            f"{found.index(view.current) + 1}/{len(found)}" if view.current in found else f"0/{len(found)}"
        )
        self.query_one("#log-head", Static).update(
            Text.assemble(
                ("log · ", "bold"),
                (self.server or "all servers", "bold cyan"),
                "  ",
                ("follow on" if view.follow else "follow off", "green" if view.follow else "yellow"),
                (f"  search “{view.needle}” {where}" if view.needle else "", "bold"),
            )
        )

    def action_search(self) -> None:
        box = self.query_one("#log-search", Input)
        box.add_class("-active")
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.lines.search(event.value.strip())
        self.show_head()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            event.control.remove_class("-active")
        self.lines.focus()

    def on_key(self, event: Any) -> None:
        box = self.query_one("#log-search", Input)
        if event.key == "escape" and self.focused is box:
            event.stop()
            box.value = ""
            box.remove_class("-active")
            self.lines.focus()

    def action_next_match(self, step: int) -> None:
        self.lines.next_match(step)
        self.show_head()

    def action_follow(self) -> None:
        self.lines.set_follow(not self.lines.follow)
        self.show_head()

    def action_all_servers(self) -> None:
        self.server = None if self.server else (self.last_server or self.top.selected)
        self.lines.show_server = self.server is None
        self.lines.clear()
        self.top.follow_log_screen(self)
        self.show_head()

    def action_close(self) -> None:
        self.top.close_log(self)
