"""`mcpctl top`: a live terminal dashboard of the supervised fleet.

The dashboard talks to the daemon only through its control socket:

    client.py   DaemonClient (the interface the app reads), SocketDaemonClient (the real one),
                DaemonUnavailable / DaemonError (the only two failures the app has to handle)
    model.py    FleetModel: folds `supervisor/status` and `supervisor/event` pushes into state,
                pure and Textual-free
    render.py   pure formatting: bytes, durations, state colours, memory bars
    app.py      TopApp, the Textual app
    fake.py     FakeDaemonClient: fixed, deterministic data for snapshots, tests and the CPU bench

Nothing here imports supervisor internals except `supervisor.paths`.
"""

from __future__ import annotations

from tui.client import DaemonClient, DaemonError, DaemonUnavailable, Fleet, SocketDaemonClient

__all__ = ["DaemonClient", "DaemonError", "DaemonUnavailable", "Fleet", "SocketDaemonClient"]
