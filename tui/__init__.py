"""`mcpctl top`: a live terminal dashboard of the supervised fleet.

The dashboard talks to the daemon only through its control socket:

    client.py   DaemonClient (the interface the app reads), SocketDaemonClient (the real one),
                LogLine, DaemonUnavailable / RemoteError (the only two failures the app handles)
    model.py    FleetModel: folds `supervisor/status` and `supervisor/event` pushes into state and
                per-metric history (Series), filter and sort keys; pure and Textual-free
    columns.py  which table columns fit a width (fixed priority), text cut at word boundaries
    levels.py   the level of a stderr line (when the daemon does not send one)
    render.py   pure formatting: bytes, durations, CPU, state and changed-tool marks, sparklines
    keys.py     every key once: bindings, footer, help overlay and command palette
    table.py    FleetGrid, the fleet table that redraws only changed rows
    logview.py  LogLines, the searchable, following log widget
    screens.py  help, confirmation, detail screen, full-screen log view
    app.py      TopApp, the Textual app
    fake.py     FakeDaemonClient: fixed, deterministic data for snapshots, tests and the CPU bench

Nothing here imports supervisor internals except `supervisor.paths`, `supervisor.units` and
`supervisor.client.errors` (the failures it shares with the `mcpctl` verbs).
"""

from __future__ import annotations

from tui.client import DaemonClient, DaemonUnavailable, Fleet, LogLine, RemoteError, SocketDaemonClient

__all__ = ["DaemonClient", "DaemonUnavailable", "Fleet", "LogLine", "RemoteError", "SocketDaemonClient"]
