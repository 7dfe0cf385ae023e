"""SVG snapshots of `mcpctl top` at 120x40 with the fixed fake fleet, so a layout regression fails.

Update after an intended change:  pytest tests/test_tui_snapshots.py --snapshot-update
and look at the SVGs in tests/snapshots/test_tui_snapshots/ before committing them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import pytest
from pytest_textual_snapshot import SVGImageExtension  # type: ignore[import-untyped]
from syrupy.assertion import SnapshotAssertion
from syrupy.location import PyTestLocation
from textual.pilot import Pilot
from textual.widgets import Input, Log

from tui.app import TopApp
from tui.fake import NOW, FakeDaemonClient, wait_until

SIZE = (120, 40)


class SnapCompare(Protocol):
    def __call__(self, app: TopApp, *, terminal_size: tuple[int, int], run_before: Any = None) -> bool: ...


class _SnapshotsDirSVG(SVGImageExtension):  # type: ignore[misc]
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


async def settled(app: TopApp, name: str) -> None:
    """Wait until `name` is selected, with its history, log backfill and tools on screen."""
    await wait_until(
        lambda: (
            app.connected
            and app.selected == name
            and app.model.stats_seen >= 60
            and name in app.tools
            and len(app.query_one("#log", Log).lines) >= 40
        )
    )


def test_main_screen(snap_compare: SnapCompare) -> None:
    """27 servers in every state, the fleet header, and the first server's detail pane."""
    app = app_with(FakeDaemonClient(history=60))

    async def run_before(pilot: Pilot[Any]) -> None:
        await settled(app, "filesystem")

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_detail_pane_of_a_degraded_server(snap_compare: SnapCompare) -> None:
    """Reason, queue, restarts with reasons, tools, sparklines and a live log line."""
    fake = FakeDaemonClient(history=60)
    app = app_with(fake)

    async def run_before(pilot: Pilot[Any]) -> None:
        await settled(app, "filesystem")
        await pilot.press(*["j"] * 9)
        await settled(app, "puppeteer")
        fake.push({"type": "restart", "server": "puppeteer", "reason": "memory", "at": NOW - 300,
                   "detail": "over its memory limit (540M > 512M) for 3 samples"})
        fake.push({"type": "restart", "server": "puppeteer", "reason": "unresponsive", "at": NOW - 42,
                   "detail": "3 health probes in a row got no answer within 5s"})  # fmt: skip
        fake.push({"type": "log", "server": "puppeteer", "line": "WARN: page.goto timed out after 30000 ms"})
        await wait_until(lambda: len(app.model.restarts.get("puppeteer", ())) == 2)
        await wait_until(lambda: "timed out" in app.query_one("#log", Log).lines[-1])

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_detail_pane_of_a_server_with_its_breaker_open(snap_compare: SnapCompare) -> None:
    """Breaker open (failures, retry), backoff with the last exit, restart reasons by kind."""
    app = app_with(FakeDaemonClient(history=60))

    async def run_before(pilot: Pilot[Any]) -> None:
        await settled(app, "filesystem")
        await pilot.press(*["j"] * 12)
        await settled(app, "slack")

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


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
