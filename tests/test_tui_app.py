"""Pilot tests of `mcpctl top` against the deterministic fake fleet (no daemon, no processes)."""

from __future__ import annotations

from typing import Any

import pytest
from rich.segment import Segment
from textual.widgets import DataTable, Input, Log, Static

from tui.app import ConfirmScreen, HelpScreen, TopApp
from tui.fake import NOW, FakeDaemonClient, wait_until
from tui.table import LogTail, ServerTable

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


def rows(app: TopApp) -> list[str]:
    table = app.query_one("#servers", DataTable)
    return [str(row.key.value) for row in table.ordered_rows]


def cell(app: TopApp, name: str, column: str) -> str:
    return str(app.query_one("#servers", DataTable).get_cell(name, column))


def log_lines(app: TopApp) -> list[str]:
    return list(app.query_one("#log", Log).lines)


async def loaded(app: RecordingApp) -> None:
    await wait_until(lambda: app.connected and len(rows(app)) == 27 and app.fake.subscribers == 2)


async def test_table_lists_every_server_in_fleet_order() -> None:
    fake = FakeDaemonClient()
    app = RecordingApp(fake)
    async with app.run_test(size=SIZE):
        await loaded(app)
        assert rows(app) == [s["name"] for s in fake.servers]
        assert cell(app, "google-drive", "state") == "● failed"
        assert cell(app, "puppeteer", "load") == "0/3"
        header = str(app.query_one("#fleet", Static).render())
        assert "17/27 ready" in header
        assert "8.0G" in header  # the fleet limit


async def test_breaker_lazy_and_cache_hit_rate_from_stats_are_shown() -> None:
    fake = FakeDaemonClient()
    app = RecordingApp(fake)
    async with app.run_test(size=SIZE):
        await loaded(app)
        assert cell(app, "slack", "state") == "● backoff ⊘"  # breaker open
        assert cell(app, "puppeteer", "state") == "● degraded ◐"  # half-open
        assert cell(app, "obsidian", "state") == "○ stopped"  # lazy, not needed yet
        assert cell(app, "notion", "state") == "● stopped"
        # The header's hit rate follows the `cache` block of each stats push.
        event = fake.stats_event(0) | {"cache": {"hits": 3, "misses": 1}}
        fake.push(event)
        await wait_until(lambda: "cache 75%" in str(app.query_one("#fleet", Static).render()))
        assert cell(app, "git", "cache") == "64%"


async def test_selection_follows_arrows_and_j_k_and_moves_the_log_tail() -> None:
    fake = FakeDaemonClient()
    app = RecordingApp(fake)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(app)
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
        # Only the followed server's lines reach the tail.
        fake.push({"type": "log", "server": "git", "line": "not this one"})
        fake.push({"type": "log", "server": "gitlab", "line": "fresh stderr line"})
        await wait_until(lambda: "fresh stderr line" in log_lines(app))
        assert "not this one" not in log_lines(app)
        await wait_until(lambda: isinstance(app.tools.get("gitlab"), list))
        assert "get_gitlab_0" in str(app.query_one("#info", Static).render())


async def test_filter_narrows_rows_and_escape_restores_them() -> None:
    app = RecordingApp(FakeDaemonClient())
    async with app.run_test(size=SIZE) as pilot:
        await loaded(app)
        await pilot.press("slash", "g", "o", "o")
        assert rows(app) == ["google-drive", "google-maps"]
        assert app.selected == "google-drive"
        await pilot.press("enter")
        assert app.focused is app.query_one("#servers")
        assert app.query_one("#filter", Input).display  # the filter stays visible while it applies
        await pilot.press("j")
        assert app.selected == "google-maps"
        await pilot.press("escape")
        assert len(rows(app)) == 27
        assert app.selected == "google-maps"  # the selection survives the filter


async def test_filter_typing_q_does_not_quit() -> None:
    app = RecordingApp(FakeDaemonClient())
    async with app.run_test(size=SIZE) as pilot:
        await loaded(app)
        await pilot.press("slash", "s", "q")
        assert rows(app) == ["sqlite"]
        assert app.is_running


async def test_r_restarts_the_selected_server_and_shows_the_restart() -> None:
    fake = FakeDaemonClient()
    app = RecordingApp(fake)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(app)
        await pilot.press("j", "r")
        await wait_until(lambda: ("restart", ["git"]) in fake.calls)
        await wait_until(lambda: cell(app, "git", "state") == "● starting")
        await wait_until(lambda: "ago: manual" in str(app.query_one("#info", Static).render()))
        assert ("information", "restart git") in app.notices


async def test_s_stops_a_running_server_and_starts_a_stopped_one() -> None:
    fake = FakeDaemonClient()
    app = RecordingApp(fake)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(app)
        await pilot.press("s")
        await wait_until(lambda: cell(app, "filesystem", "state") == "● stopped")
        await pilot.press("s")
        await wait_until(lambda: cell(app, "filesystem", "state") == "● starting")
        assert [c for c in fake.calls if c[0] in ("stop", "start")] == [
            ("stop", ["filesystem"]),
            ("start", ["filesystem"]),
        ]


async def test_actions_on_all_servers_ask_first() -> None:
    fake = FakeDaemonClient()
    app = RecordingApp(fake)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(app)
        await pilot.press("R")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert not isinstance(app.screen, ConfirmScreen)
        await pilot.press("S", "y")
        await wait_until(lambda: ("stop", "all") in fake.calls)
        assert not any(c[0] == "restart" for c in fake.calls)
        await pilot.press("A")  # starting everything is not destructive: no question
        await wait_until(lambda: ("start", "all") in fake.calls)


async def test_a_refused_action_is_reported_not_raised() -> None:
    fake = FakeDaemonClient()
    fake.refuse_actions = "circuit open for git; retry in 30 s"
    app = RecordingApp(fake)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(app)
        await pilot.press("j", "r")
        await wait_until(lambda: app.notices)
        assert app.notices == [("error", "restart git: circuit open for git; retry in 30 s")]
        assert app.is_running


async def test_stats_update_cells_in_place_without_rebuilding_the_table() -> None:
    """With 27 servers a once-a-second full rebuild is what made dashboards flicker and burn CPU."""
    fake = FakeDaemonClient()
    app = RecordingApp(fake)
    async with app.run_test(size=SIZE):
        await loaded(app)
        rebuilds = app.rebuilds
        for _ in range(5):
            fake.push_stats()
        await wait_until(lambda: app.model.stats_seen == 5)
        assert app.rebuilds == rebuilds
        assert cell(app, "git", "calls") != "—"
        assert len(app.model.calls_history["git"]) == 5


async def test_cell_updates_redraw_exactly_what_a_full_redraw_would() -> None:
    """ServerTable keeps the renders of unchanged cells (tui/table.py); what it draws after stats
    pushes, a state change and a cursor move must be what a table drawn from scratch shows."""
    fake = FakeDaemonClient()
    app = RecordingApp(fake)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(app)
        table = app.query_one("#servers", ServerTable)
        assert table.incremental, "DataTable's caches moved in this Textual: tui/table.py redraws everything"

        def drawn() -> list[list[Segment]]:
            return [list(table.render_line(y)) for y in range(table.size.height)]

        first = drawn()
        await pilot.press("j", "j")
        for _ in range(3):
            fake.push_stats()
        await fake.stop(["git"])
        await wait_until(lambda: app.model.stats_seen == 3 and cell(app, "git", "state") == "● stopped")
        incremental = drawn()
        table._clear_caches()
        assert incremental == drawn()
        assert incremental != first


async def test_new_log_lines_keep_the_tail_scrolled_to_the_end() -> None:
    """LogTail skips the screen layout a Log asks for per line; its scrollbar still follows."""
    fake = FakeDaemonClient()
    app = RecordingApp(fake)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(app)
        log = app.query_one("#log", LogTail)
        await wait_until(lambda: len(log.lines) == 40)
        for k in range(30):
            fake.push({"type": "log", "server": "filesystem", "line": f"line {k}"})
        await wait_until(lambda: log.lines[-1] == "line 29")
        await pilot.pause()
        assert log.virtual_size.height == 70
        assert log.vertical_scrollbar.window_virtual_size == 70
        assert log.scroll_y == log.max_scroll_y > 0


async def test_l_focuses_the_log_tail_and_back() -> None:
    app = RecordingApp(FakeDaemonClient())
    async with app.run_test(size=SIZE) as pilot:
        await loaded(app)
        await pilot.press("l")
        assert app.focused is app.query_one("#log")
        await pilot.press("l")
        assert app.focused is app.query_one("#servers")


async def test_help_opens_and_closes_and_q_quits_with_zero() -> None:
    app = RecordingApp(FakeDaemonClient())
    async with app.run_test(size=SIZE) as pilot:
        await loaded(app)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("q")
    assert app.return_code == 0


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
    app = RecordingApp(fake, retry_base=0.01, retry_cap=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(app)
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
