"""The daemon's event stream: state changes, restarts, log lines and per-second stats.

The bus's subscribers are the control connections that asked for `supervisor/events` (the
dashboard, `mcpctl logs -f`); the daemon feeds the child log files, sd_notify and the aggregate
from the same events before the bus (`Daemon._publish`), so what one shows the others show.
Subscribers are plain callbacks that must not block (they push onto an outbox).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("mcp_supervisor.events")

Event = dict[str, Any]
Subscriber = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    @property
    def has_subscribers(self) -> bool:
        return bool(self._subscribers)

    def publish(self, event: Event) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:  # one broken subscriber must not silence the others
                log.exception("event subscriber failed")
