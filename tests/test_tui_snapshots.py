"""SVG snapshots of `mcpctl top` at 80x24, 120x40 and 200x50 (and its other screens) with the
fixed fake fleet, so a layout regression fails.

Update after an intended change:  pytest tests/test_tui_snapshots.py --snapshot-update
and look at the SVGs in tests/snapshots/test_tui_snapshots/ before committing them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import pytest
from pytest_textual_snapshot import SVGImageExtension
from syrupy.assertion import SnapshotAssertion
from syrupy.location import PyTestLocation
from textual.pilot import Pilot
from textual.widgets import Input

from tui.app import TopApp
from tui.fake import EVERY_STATE, NOW, FakeDaemonClient, wait_until
from tui.logview import LogLines
from tui.screens import LogScreen

SIZE = (120, 40)


class SnapCompare(Protocol):
    def __call__(self, app: TopApp, *, terminal_size: tuple[int, int], run_before: Any = None) -> bool: ...


class _SnapshotsDirSVG(SVGImageExtension):  # type: ignore[misc]  # pytest-textual-snapshot is untyped
    """Store snapshots in tests/snapshots/<test module>/ rather than syrupy's __snapshots__."""

    @classmethod
    def dirname(cls, *, test_location: PyTestLocation) -> str:
        return str(Path(test_location.filepath).parent / "snapshots" / test_location.basename)


class _SnapshotsDir(SnapshotAssertion):
    def use_extension(self, extension_class: Any = None) -> SnapshotAssertion:
        return self.with_defaults(extension_class=_SnapshotsDirSVG)


@pytest.fixture
def snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    # pytest-textual-snapshot's `snap_compare` asks this fixture for its SVG extension.
    return _SnapshotsDir(
        update_snapshots=snapshot.update_snapshots,
        test_location=snapshot.test_location,
        extension_class=_SnapshotsDirSVG,
        session=snapshot.session,
    )


def app_with(fake: FakeDaemonClient) -> TopApp:
    return TopApp(fake, clock=lambda: NOW, retry_base=3600, retry_cap=3600)


async def settled(app: TopApp, name: str, *, pane: bool = True) -> None:
    """Wait until `name` is selected, with its history, and (with the pane) its log and tools."""
    await wait_until(
        lambda: (
            app.connected
            and app.selected == name
            and app.model.stats_seen >= 60
            and (not pane or (name in app.tools and len(app.query_one("#log", LogLines).entries) >= 40))
        )
    )


def test_every_state_at_80x24(snap_compare: SnapCompare) -> None:
    """A 12-server fleet with every state in a standard terminal: every row visible, the columns
    that matter most, the pane below with what is left of the height."""
    app = app_with(FakeDaemonClient(names=EVERY_STATE, history=60))

    async def run_before(pilot: Pilot[Any]) -> None:
        await settled(app, "filesystem")

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_main_screen_at_120x40(snap_compare: SnapCompare) -> None:
    """27 servers in every state, the fleet header, and the selected server's pane."""
    app = app_with(FakeDaemonClient(history=60))

    async def run_before(pilot: Pilot[Any]) -> None:
        await settled(app, "filesystem")
        await pilot.press(*["j"] * 9)
        await settled(app, "puppeteer")

    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)


def test_main_screen_at_200x50(snap_compare: SnapCompare) -> None:
    """The room used: history columns, PID and limit bars, the pane with its charts."""
    app = app_with(FakeDaemonClient(history=60))

    async def run_before(pilot: Pilot[Any]) -> None:
        await settled(app, "filesystem")

    assert snap_compare(app, terminal_size=(200, 50), run_before=run_before)


def test_detail_screen(snap_compare: SnapCompare) -> None:
    """Config (secrets masked), state history, restart timeline, charts, tools, last stderr."""
    fake = FakeDaemonClient(history=60)
    app = app_with(fake)

    async def run_before(pilot: Pilot[Any]) -> None:
        await settled(app, "filesystem")
        await pilot.press("j", "j")
        await settled(app, "github")
        await pilot.press("enter")
        await wait_until(lambda: "github" in app.details and len(app.stderr.get("github", [])) >= 40)

    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)


def test_detail_screen_with_blocked_tools(snap_compare: SnapCompare) -> None:
    """Tools changed since pinned and held back: which, since when, what differs, how to approve."""
    app = app_with(FakeDaemonClient(history=60))

    async def run_before(pilot: Pilot[Any]) -> None:
        await settled(app, "filesystem")
        await pilot.press(*["j"] * 8)
        await settled(app, "fetch")
        await pilot.press("enter")
        await wait_until(lambda: "fetch" in app.tool_diffs and len(app.stderr.get("fetch", [])) >= 40)

    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)


def test_log_view_with_a_search(snap_compare: SnapCompare) -> None:
    """Times, coloured levels, the matches highlighted and the current one reversed."""
    app = app_with(FakeDaemonClient(history=60))

    async def run_before(pilot: Pilot[Any]) -> None:
        await settled(app, "filesystem", pane=False)  # 27 rows fill 30 lines: no pane
        await pilot.press("l")
        screen = app.screen
        assert isinstance(screen, LogScreen)
        await wait_until(lambda: len(screen.lines.entries) >= 40)
        screen.query_one("#log-search", Input).cursor_blink = False
        await pilot.press("slash", *"upstream", "enter", "n")

    assert snap_compare(app, terminal_size=(100, 30), run_before=run_before)


def test_filtered(snap_compare: SnapCompare) -> None:
    app = app_with(FakeDaemonClient(history=60))

    async def run_before(pilot: Pilot[Any]) -> None:
        await settled(app, "filesystem")
        app.query_one("#filter", Input).cursor_blink = False
        await pilot.press("slash", "g", "i", "t")
        await settled(app, "git")

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_daemon_not_running(snap_compare: SnapCompare) -> None:
    """The plain "not running — retrying" state: no table, no traceback."""
    fake = FakeDaemonClient(available=False, socket_path="/run/user/1000/mcp-supervisor/control.sock")
    app = app_with(fake)

    async def run_before(pilot: Pilot[Any]) -> None:
        await wait_until(lambda: app.gone_reason is not None)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_help(snap_compare: SnapCompare) -> None:
    app = app_with(FakeDaemonClient(history=60))

    async def run_before(pilot: Pilot[Any]) -> None:
        await settled(app, "filesystem")
        await pilot.press("question_mark")

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
