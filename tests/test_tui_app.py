"""Pilot tests of `mcpctl top` against the deterministic fake fleet (no daemon, no processes)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from rich.segment import Segment
from textual.pilot import Pilot
from textual.widgets import Input, Static

from tui.app import TopApp
from tui.fake import EVERY_STATE, NOW, FakeDaemonClient, wait_until
from tui.logview import LogLines
from tui.screens import ConfirmScreen, DetailScreen, HelpScreen, LogScreen
from tui.table import FleetGrid

pytestmark = pytest.mark.anyio

SIZE = (120, 40)


class RecordingApp(TopApp):
    """TopApp that keeps what it told the user and counts full table rebuilds."""

    def __init__(self, client: FakeDaemonClient, **kwargs: Any) -> None:
        super().__init__(client, clock=lambda: NOW, **kwargs)
        self.fake = client
        self.notices: list[tuple[str, str]] = []
        self.rebuilds = 0

    def notify(self, message: str, *args: Any, severity: str = "information", **kwargs: Any) -> None:
        self.notices.append((severity, message))

    def _rebuild_rows(self) -> None:
        self.rebuilds += 1
        super()._rebuild_rows()


def grid(app: TopApp) -> FleetGrid:
    return app.query_one("#servers", FleetGrid)


def rows(app: TopApp) -> list[str]:
    return list(grid(app).keys)


def cell(app: TopApp, name: str, column: str) -> str:
    return grid(app).cell_text(name, column).strip()


def log_lines(app: TopApp) -> list[str]:
    return [entry.line for entry in app.query_one("#log", LogLines).entries]


def header(app: TopApp) -> str:
    return str(app.query_one("#fleet", Static).render())


async def loaded(app: RecordingApp, count: int = 27) -> None:
    await wait_until(lambda: app.connected and len(rows(app)) == count and app.fake.subscribers == 2)


@asynccontextmanager
async def dashboard(fake: FakeDaemonClient | None = None, *, size: tuple[int, int] = SIZE, count: int = 27,
                    **kwargs: Any) -> AsyncIterator[tuple[RecordingApp, Pilot[int]]]:
    """A `RecordingApp` on `fake` (a fresh fake fleet by default), running at `size`, once it
    shows the fleet's `count` servers and follows both streams."""
    app = RecordingApp(fake if fake is not None else FakeDaemonClient(), **kwargs)
    async with app.run_test(size=size) as pilot:
        await loaded(app, count)
        yield app, pilot


async def test_table_lists_every_server_in_fleet_order_with_a_distinct_mark_per_state() -> None:
    fake = FakeDaemonClient()
    async with dashboard(fake) as (app, _):
        assert rows(app) == [s["name"] for s in fake.servers]
        assert cell(app, "google-drive", "state") == "✗ failed"
        assert cell(app, "sentry", "state") == "◇ unavailable"  # waiting for a key: not a failure
        assert cell(app, "everything", "state") == "◐ starting"
        assert cell(app, "slack", "state") == "↻ backoff ⊘"  # breaker open
        assert cell(app, "puppeteer", "state") == "◆ degraded ◐"  # half-open
        assert cell(app, "obsidian", "state") == "○ lazy"  # lazy, not needed yet
        assert cell(app, "notion", "state") == "○ stopped"
        assert cell(app, "git", "cpu") == "5.7%"
        assert "15/27 ready" in header(app)
        assert "✗2 failed" in header(app) and "◇3 unavail" in header(app)
        assert "8.0G" in header(app)  # the fleet limit


async def test_state_styles_tell_unavailable_from_failed() -> None:
    """Five servers waiting for an API key were drawn red like failures; now each state has its own."""
    from tui.render import STATE_STYLES

    assert len(set(STATE_STYLES.values())) == len(STATE_STYLES)
    assert "red" not in STATE_STYLES["unavailable"]
    for state in ("failed", "backoff", "degraded", "starting"):
        assert STATE_STYLES[state] not in (STATE_STYLES["ready"], STATE_STYLES["unavailable"])


async def test_every_server_of_a_twelve_server_fleet_fits_80x24_with_the_pane() -> None:
    fleet = FakeDaemonClient(names=EVERY_STATE, history=5)
    async with dashboard(fleet, size=(80, 24), count=12) as (app, pilot):
        await pilot.pause()
        table = grid(app)
        assert table.scrollable_content_region.height >= 13  # heading + 12 rows, no scrolling
        assert [c.key for c in app.columns] == ["name", "state", "restarts", "memory", "cpu", "calls", "p95"]
        assert app.pane_shown


async def test_the_pane_hides_when_the_rows_need_the_height_and_p_shows_it() -> None:
    app = RecordingApp(FakeDaemonClient())
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(lambda: app.connected and len(rows(app)) == 27 and app.fake.subscribers == 1)
        assert not app.pane_shown  # 27 rows in 24 lines: the table gets all of it
        assert app.fake.subscribers == 1  # and nothing follows a log nobody sees
        await pilot.press("p")
        assert app.pane_shown
        await wait_until(lambda: app.fake.subscribers == 2 and len(log_lines(app)) == 40)
        await pilot.press("p")
        assert not app.pane_shown


def has_width(app: TopApp, width: int) -> bool:
    return app.size.width == width


async def test_columns_go_in_priority_order_as_the_terminal_narrows() -> None:
    async with dashboard(size=(200, 50)) as (app, pilot):
        wide = [c.key for c in app.columns]
        assert {"memory_hist", "calls_hist", "p95_hist", "pid", "limit"} <= set(wide)
        for width in (160, 120, 100, 80, 60, 30):
            await pilot.resize_terminal(width, 50)
            await wait_until(functools.partial(has_width, app, width))
            await pilot.pause()
            keys = [c.key for c in app.columns]
            assert keys[:2] == ["name", "state"]
            assert set(keys) <= set(wide) and keys == [k for k in wide if k in keys]
            assert sum(c.width + 2 for c in app.columns) <= max(width, 39)
            wide = keys
        assert wide == ["name", "state"]


async def test_slash_filters_by_name_state_or_reason_and_escape_restores() -> None:
    async with dashboard() as (app, pilot):
        await pilot.press("slash", "g", "o", "o")
        assert rows(app) == ["google-drive", "google-maps"]
        assert app.selected == "google-drive"
        await pilot.press("enter")
        assert app.focused is grid(app)
        assert app.query_one("#filter", Input).display  # the filter stays visible while it applies
        await pilot.press("j")
        assert app.selected == "google-maps"
        await pilot.press("escape")
        assert len(rows(app)) == 27
        assert app.selected == "google-maps"  # the selection survives the filter
        await pilot.press("slash", *"fail", "enter")
        assert rows(app) == ["playwright", "google-drive"]  # by state
        await pilot.press("escape", "slash", *"memory", "enter")
        assert rows(app) == ["memory", "kubernetes"]  # by name, and by reason
        assert "filter “memory”" in header(app)


async def test_filter_typing_q_does_not_quit() -> None:
    async with dashboard() as (app, pilot):
        await pilot.press("slash", "s", "q")
        assert rows(app) == ["sqlite"]
        assert app.is_running


async def test_s_cycles_the_sort() -> None:
    fake = FakeDaemonClient()
    async with dashboard(fake) as (app, pilot):
        fake.push_stats()
        await wait_until(lambda: app.model.stats_seen == 1)
        await pilot.press("s")
        assert app.sort == "state" and rows(app)[:2] == ["google-drive", "playwright"]
        assert "sort state" in header(app)
        await pilot.press("s")
        memory = [app.model.servers[n].get("memory_bytes") or -1 for n in rows(app)]
        assert app.sort == "memory" and memory == sorted(memory, reverse=True)
        await pilot.press("s")
        cpu = [app.model.servers[n].get("cpu_percent") or -1 for n in rows(app)]
        assert app.sort == "cpu" and cpu == sorted(cpu, reverse=True)
        await pilot.press("s")
        assert app.sort == "latency" and rows(app)[0] == "puppeteer"
        await pilot.press("s")
        restarts = [app.model.servers[n]["restarts"] for n in rows(app)]
        assert app.sort == "restarts" and restarts == sorted(restarts, reverse=True)
        await pilot.press("s")
        assert app.sort == "name" and rows(app) == [s["name"] for s in fake.servers]


async def test_selection_follows_arrows_and_j_k_and_moves_the_log_tail() -> None:
    fake = FakeDaemonClient()
    async with dashboard(fake) as (app, pilot):
        assert app.selected == "filesystem"
        await pilot.press("j", "j")
        assert app.selected == "github"
        await pilot.press("k")
        assert app.selected == "git"
        await pilot.press("down", "down")
        assert app.selected == "gitlab"
        await wait_until(
            lambda: ("gitlab",) in fake.subscriptions and any("gitlab:" in ln for ln in log_lines(app))
        )
        assert not any("filesystem:" in line for line in log_lines(app))
        fake.push({"type": "log", "server": "git", "line": "not this one"})
        fake.push({"type": "log", "server": "gitlab", "line": "fresh stderr line", "at": NOW})
        await wait_until(lambda: "fresh stderr line" in log_lines(app))
        assert "not this one" not in log_lines(app)
        entry = app.query_one("#log", LogLines).entries[-1]
        assert (entry.at, entry.level) == (NOW, "info")
        await wait_until(lambda: isinstance(app.tools.get("gitlab"), list))


async def test_enter_opens_the_detail_screen_with_history_config_and_tools() -> None:
    fake = FakeDaemonClient(history=30)
    async with dashboard(fake) as (app, pilot):
        await pilot.press("j", "j", "enter")
        assert isinstance(app.screen, DetailScreen) and app.screen.server == "github"
        await wait_until(lambda: "github" in app.details and isinstance(app.tools.get("github"), list))
        text = " ".join(str(w.render()) for w in app.screen.query(Static))
        assert "STATE HISTORY" in text and "backoff" in text
        assert "RESTARTS" in text and "unresponsive" in text
        assert "API_KEY=***" in text and "${TOKEN}" in text
        assert "get_github_0" in text and "LAST STDERR" in text
        assert ("detail", "github") in fake.calls
        await pilot.press("escape")
        assert not isinstance(app.screen, DetailScreen)


async def test_log_view_searches_forward_and_back_and_follows() -> None:
    fake = FakeDaemonClient()
    async with dashboard(fake) as (app, pilot):
        await pilot.press("l")
        assert isinstance(app.screen, LogScreen)
        view = app.screen.query_one(LogLines)
        await wait_until(lambda: len(view.entries) == 40)
        levels = [e.level for e in view.entries][:6]
        assert view.follow and levels == ["info", "debug", "info", "warning", "info", "error"]
        await pilot.press("slash", *"upstream", "enter")
        found = view.matches()
        assert len(found) == 4 and view.current == found[-1]
        assert not view.follow  # a search stops following
        await pilot.press("n")
        assert view.current == found[0]  # wraps to the first
        await pilot.press("n")
        assert view.current == found[1]
        await pilot.press("N", "N")
        assert view.current == found[-1]
        await pilot.press("f")
        assert view.follow
        fake.push({"type": "log", "server": "filesystem", "line": "ERROR: new upstream failure", "at": NOW})
        await wait_until(lambda: view.entries[-1].line == "ERROR: new upstream failure")
        assert view.entries[-1].level == "error" and len(view.matches()) == 5
        await pilot.press("escape")
        assert not isinstance(app.screen, LogScreen)


async def test_log_view_shows_every_server_interleaved_by_time() -> None:
    fake = FakeDaemonClient(names=["git", "time", "fetch"])
    async with dashboard(fake, count=3) as (app, pilot):
        await pilot.press("l", "a")
        assert isinstance(app.screen, LogScreen) and app.screen.server is None
        view = app.screen.query_one(LogLines)
        await wait_until(lambda: len(view.entries) == 3 * 40)
        times = [e.at or 0 for e in view.entries]
        assert times == sorted(times)
        assert {e.server for e in list(view.entries)[:3]} == {"git", "time", "fetch"}
        await pilot.press("a")
        assert app.screen.server == "git"
        await wait_until(lambda: len(view.entries) == 40 and {e.server for e in view.entries} == {"git"})


async def test_help_lists_every_key_and_closes() -> None:
    from tui.keys import APP_KEYS, MAIN_KEYS

    async with dashboard() as (app, pilot):
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = str(app.screen.query_one(Static).render())
        assert all(key.help in text for key in (*MAIN_KEYS, *APP_KEYS))
        await pilot.pause()
        # It is on screen too: an auto-sized scroll container once collapsed it to nothing.
        shown = app.screen.query_one(Static).size
        assert shown.width >= 80 and shown.height >= 30, shown
        assert "Δn tools changed since pinned" in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("q")
    assert app.return_code == 0


async def test_command_palette_lists_the_dashboard_actions() -> None:
    async with dashboard() as (app, _):
        titles = [command.title for command in app.get_system_commands(app.screen)]
        for wanted in ("Restart the selected server (asks first)", "Reload fleet.toml (asks first)",
                       "Cycle the sort: name, state, memory, CPU, latency, restarts"):
            assert wanted in titles


async def test_an_action_chosen_in_the_command_palette_runs_and_still_asks_first() -> None:
    """ctrl+p, type, Enter: the palette runs the dashboard's own action, confirmation included."""
    from textual.command import CommandList, CommandPalette

    fake = FakeDaemonClient()
    async with dashboard(fake) as (app, pilot):
        await pilot.press("j", "ctrl+p")
        await wait_until(lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"restart the selected")
        palette = app.screen
        await wait_until(lambda: palette.query_one(CommandList).option_count > 0)
        await pilot.press("enter")
        await wait_until(lambda: isinstance(app.screen, ConfirmScreen))
        assert not any(c[0] == "restart" for c in fake.calls)
        await pilot.press("y")
        await wait_until(lambda: ("restart", ["git"]) in fake.calls)


async def test_r_restarts_only_after_yes() -> None:
    fake = FakeDaemonClient()
    async with dashboard(fake) as (app, pilot):
        await pilot.press("j", "r")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert not any(c[0] == "restart" for c in fake.calls)
        await pilot.press("r", "y")
        await wait_until(lambda: ("restart", ["git"]) in fake.calls)
        await wait_until(lambda: cell(app, "git", "state") == "◐ starting")
        await wait_until(lambda: "ago: manual" in str(app.query_one("#info", Static).render()))
        assert ("information", "restart git") in app.notices


async def test_x_stops_after_yes_and_g_starts_without_asking() -> None:
    fake = FakeDaemonClient()
    async with dashboard(fake) as (app, pilot):
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_until(lambda: cell(app, "filesystem", "state") == "○ stopped")
        await pilot.press("g")
        await wait_until(lambda: cell(app, "filesystem", "state") == "◐ starting")
        assert [c for c in fake.calls if c[0] in ("stop", "start")] == [
            ("stop", ["filesystem"]),
            ("start", ["filesystem"]),
        ]


async def test_shift_r_reloads_the_fleet_after_yes() -> None:
    fake = FakeDaemonClient()
    async with dashboard(fake) as (app, pilot):
        await pilot.press("R")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("escape")
        assert ("reload", None) not in fake.calls
        await pilot.press("R", "y")
        await wait_until(lambda: ("reload", None) in fake.calls)
        await wait_until(lambda: ("information", "reload: nothing changed") in app.notices)


async def test_c_clears_the_cache_of_the_server_or_the_fleet() -> None:
    fake = FakeDaemonClient()
    async with dashboard(fake) as (app, pilot):
        await pilot.press("j", "c")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_until(lambda: ("clear_cache", "git") in fake.calls)
        await pilot.press("c", "a")
        await wait_until(lambda: ("clear_cache", None) in fake.calls)
        await wait_until(lambda: ("information", "cache cleared for the fleet, entries: 412") in app.notices)


async def test_a_refused_action_is_reported_not_raised() -> None:
    fake = FakeDaemonClient()
    fake.refuse_actions = "circuit open for git; retry in 30 s"
    async with dashboard(fake) as (app, pilot):
        await pilot.press("j", "r", "y")
        await wait_until(lambda: app.notices)
        assert app.notices == [("error", "restart git: circuit open for git; retry in 30 s")]
        assert app.is_running


async def test_stats_update_cells_in_place_without_rebuilding_the_table() -> None:
    """With 27 servers a once-a-second full rebuild is what made dashboards flicker and burn CPU."""
    fake = FakeDaemonClient()
    async with dashboard(fake) as (app, _):
        rebuilds = app.rebuilds
        for _ in range(5):
            fake.push_stats()
        await wait_until(lambda: app.model.stats_seen == 5)
        assert app.rebuilds == rebuilds
        assert cell(app, "git", "calls") != "—"
        series = app.model.series_of("git", "calls")
        assert series is not None and len(series.samples) == 5


async def test_cell_updates_redraw_exactly_what_a_full_redraw_would() -> None:
    """FleetGrid keeps each row's rendering until the row changes (tui/table.py); what it draws
    after stats pushes, a state change and a cursor move must be what a grid drawn from scratch shows."""
    fake = FakeDaemonClient()
    async with dashboard(fake) as (app, pilot):
        table = grid(app)

        def drawn() -> list[list[Segment]]:
            return [list(table.render_line(y)) for y in range(table.size.height)]

        first = drawn()
        await pilot.press("j", "j")
        for _ in range(3):
            fake.push_stats()
        await fake.stop(["git"])
        await wait_until(lambda: app.model.stats_seen == 3 and cell(app, "git", "state") == "○ stopped")
        incremental = drawn()
        table._forget()
        assert incremental == drawn()
        assert incremental != first


async def test_new_log_lines_keep_the_tail_scrolled_to_the_end() -> None:
    """LogLines skips the screen layout a growing widget asks for per line; its scrollbar follows."""
    fake = FakeDaemonClient()
    async with dashboard(fake) as (app, pilot):
        log = app.query_one("#log", LogLines)
        await wait_until(lambda: len(log.entries) == 40)
        for k in range(30):
            fake.push({"type": "log", "server": "filesystem", "line": f"line {k}"})
        await wait_until(lambda: log.entries[-1].line == "line 29")
        await pilot.pause()
        assert log.virtual_size.height == 70
        assert log.scroll_y == log.max_scroll_y > 0


def gone_text(app: TopApp) -> str:
    gone = app.query_one("#gone", Static)
    return str(gone.render()) if gone.display else ""


async def test_daemon_not_running_at_start_says_so_and_connects_when_it_comes() -> None:
    fake = FakeDaemonClient(available=False, socket_path="/tmp/nowhere/control.sock")
    app = RecordingApp(fake, retry_base=0.01, retry_cap=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: "retrying" in gone_text(app))
        assert "daemon not running at /tmp/nowhere/control.sock — retrying" in gone_text(app)
        assert "connection refused" in gone_text(app)
        assert not app.query_one("#main").display
        await pilot.press("r", "s", "slash", "R")  # nothing to act on: no calls, no crash
        assert not isinstance(app.screen, ConfirmScreen)
        fake.come_back()
        await loaded(app)
        assert not app.query_one("#gone").display
    assert [c for c in fake.calls if c[0] not in ("status", "logs", "tools")] == []


async def test_daemon_gone_and_back_reconnects_and_resubscribes() -> None:
    fake = FakeDaemonClient()
    async with dashboard(fake, retry_base=0.01, retry_cap=0.05) as (app, pilot):
        await pilot.press("j", "j")
        fake.go_away()
        await wait_until(lambda: "daemon not running at" in gone_text(app))
        assert fake.subscribers == 0
        fake.come_back()
        await loaded(app)
        assert app.selected == "github"  # the selection survives the outage
        await wait_until(lambda: fake.subscriptions.count(("github",)) == 2)
        fake.push_stats()
        await wait_until(lambda: app.model.stats_seen == 1)


async def test_an_unexpected_client_error_is_a_message_not_a_traceback() -> None:
    class Broken(FakeDaemonClient):
        async def status(self) -> dict[str, Any]:
            raise RuntimeError("boom")

    app = RecordingApp(Broken(), retry_base=30)
    async with app.run_test(size=SIZE):
        await wait_until(lambda: "unexpected RuntimeError: boom" in gone_text(app))
        assert app.is_running


async def test_changed_tools_are_marked_in_the_tools_column_the_header_and_the_pane() -> None:
    """github serves a tool that changed since it was pinned (warn), fetch holds two back (block):
    each row says so in its tools cell, the header counts them, the pane names them."""
    async with dashboard() as (app, pilot):
        assert cell(app, "github", "tools") == "8 Δ1"
        assert cell(app, "fetch", "tools") == "4 ⊘2"  # the count is what clients see
        assert cell(app, "git", "tools") == "14"
        assert "Δ1 ⊘2 tools" in header(app)  # changed: served with a warning, held back
        await pilot.press(*["j"] * 8)
        assert app.selected == "fetch"
        info = str(app.query_one("#info", Static).render())
        assert "tools 4  ⊘2 blocked: get_fetch_0…" in info  # cut at a word, in a 44-column pane


async def test_a_tool_change_event_marks_the_row_at_once_and_approval_clears_it() -> None:
    fake = FakeDaemonClient()
    async with dashboard(fake) as (app, _):
        fake.push({"type": "tool_change", "server": "git", "tool": "get_git_0", "action": "warned"})
        await wait_until(lambda: cell(app, "git", "tools") == "14 Δ1")
        assert "Δ2 ⊘2 tools" in header(app)
        fake.push({"type": "tool_change", "server": "git", "tool": None, "action": "approved",
                   "approved": ["get_git_0"], "at": NOW})  # fmt: skip
        await wait_until(lambda: cell(app, "git", "tools") == "14")


async def test_detail_screen_says_which_tools_changed_what_differs_and_how_to_approve() -> None:
    fake = FakeDaemonClient()
    async with dashboard(fake) as (app, pilot):
        await pilot.press(*["j"] * 8, "enter")
        assert isinstance(app.screen, DetailScreen) and app.screen.server == "fetch"
        await wait_until(lambda: "fetch" in app.tool_diffs and isinstance(app.tools.get("fetch"), list))
        await pilot.pause()
        changes = str(app.screen.query_one("#d-changes", Static).render())
        assert "TOOL CHANGES  2 since pinned, held back from clients" in changes
        assert "⊘ get_fetch_0  blocked" in changes and "⊘ list_fetch_1  blocked" in changes
        assert "inputSchema: arguments +upload_to" in changes  # a new argument
        assert "description: − tool 1 of fetch" in changes and "+ tool 1 of fetch; also" in changes
        assert "mcpctl tools approve fetch [TOOL]" in changes
        assert ("tool_changes", "fetch") in fake.calls
        tools = str(app.screen.query_one("#d-tools", Static).render())
        assert "get_fetch_0" not in tools  # held back: not among the tools clients get
        await pilot.press("escape", "k", "k", "k", "k", "k", "k", "enter")
        assert isinstance(app.screen, DetailScreen) and app.screen.server == "github"
        await wait_until(lambda: "github" in app.tool_diffs)
        await pilot.pause()
        changes = str(app.screen.query_one("#d-changes", Static).render())
        assert "still served" in changes and "Δ create_github_3  warned" in changes
        assert "Δ create_github_3" in str(app.screen.query_one("#d-tools", Static).render())
        await pilot.press("escape", "j", "enter")
        assert isinstance(app.screen, DetailScreen) and app.screen.server == "gitlab"
        assert not app.screen.query_one("#d-changes", Static).display  # nothing changed: no section


async def test_a_full_screen_over_the_fleet_stops_table_work_until_it_closes() -> None:
    """While the detail screen covers the fleet, stats pushes change no table cell (nobody sees
    them); back on the fleet, every cell is what a fresh computation from the model says."""
    from tui.app import cell as cell_of

    fake = FakeDaemonClient()
    async with dashboard(fake) as (app, pilot):
        fake.push_stats()
        await wait_until(lambda: app.model.stats_seen == 1)
        shown = dict(grid(app).cells)
        await pilot.press("enter")
        assert isinstance(app.screen, DetailScreen)
        for _ in range(3):
            fake.push_stats()
        await wait_until(lambda: app.model.stats_seen == 4)
        assert grid(app).cells == shown  # covered: not touched
        await pilot.press("escape")
        assert not isinstance(app.screen, DetailScreen)
        for name, server in app.model.servers.items():
            for column in app.columns:
                assert cell(app, name, column.key) == cell_of(column, server, app.model).plain.strip()
        assert grid(app).cells != shown


async def test_the_pane_draws_new_tail_lines_with_the_next_stats_push() -> None:
    """A log line costs no frame of its own: the pane's tail takes it with the next stats push,
    or within PANE_LOG_EVERY when no push comes."""
    from tui.app import PANE_LOG_EVERY

    fake = FakeDaemonClient()
    async with dashboard(fake) as (app, _):
        await wait_until(lambda: len(log_lines(app)) == 40)
        fake.push({"type": "log", "server": "filesystem", "line": "waits for the stats", "at": NOW})
        await wait_until(lambda: app.stderr["filesystem"][-1].line == "waits for the stats")
        assert "waits for the stats" not in log_lines(app)
        fake.push_stats()
        await wait_until(lambda: "waits for the stats" in log_lines(app))
        fake.push({"type": "log", "server": "filesystem", "line": "no stats came", "at": NOW})
        await wait_until(lambda: "no stats came" in log_lines(app), within=PANE_LOG_EVERY + 2)


async def test_the_startup_heap_is_frozen_once_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """`mcpctl top` freezes the start-up heap once (`freeze_startup_heap`), not per reconnect; a
    plain TopApp (as in these tests) never does."""
    import tui.app

    calls: list[None] = []
    monkeypatch.setattr(tui.app, "freeze_startup_heap", lambda: calls.append(None))
    fake = FakeDaemonClient()
    async with dashboard(fake, retry_base=0.01, retry_cap=0.05, freeze_heap=True) as (app, pilot):
        await wait_until(lambda: len(calls) == 1)
        fake.go_away()
        await wait_until(lambda: not app.connected)
        fake.come_back()
        await loaded(app)
        await pilot.pause()
        assert len(calls) == 1
    plain = RecordingApp(FakeDaemonClient())
    async with plain.run_test(size=SIZE) as pilot:
        await loaded(plain)
        await pilot.pause()
    assert len(calls) == 1
