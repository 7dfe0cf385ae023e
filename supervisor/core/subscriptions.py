"""Resource subscriptions of the legacy era, shared by the clients of one child.

Every client's `resources/subscribe` goes on to the child (subscribing twice is harmless), and the
daemon remembers who asked for which URI. The child's `notifications/resources/updated` then goes
only to the sessions subscribed to that URI, and a client's `resources/unsubscribe` reaches the
child only when nobody else is still subscribed to it (answered `{}` by the daemon otherwise).
A session that ends is forgotten. Bounded: a session may hold `PER_SESSION` URIs and a server
`PER_SERVER` subscriptions in all; beyond that a subscribe is refused with -32602.
"""

from __future__ import annotations

from typing import Any

PER_SESSION = 1000
PER_SERVER = 100_000


class Subscriptions:
    """uri -> the sessions subscribed to it, for one server."""

    def __init__(self) -> None:
        self._by_uri: dict[str, set[Any]] = {}
        self._by_session: dict[int, set[str]] = {}
        self._count = 0

    def subscribe(self, session: Any, uri: str) -> str | None:
        """Record it; a refusal's reason when a bound is reached."""
        mine = self._by_session.setdefault(id(session), set())
        if uri in mine:
            return None
        if len(mine) >= PER_SESSION:
            return f"a session may subscribe to at most {PER_SESSION} resources"
        if self._count >= PER_SERVER:
            return f"this server has {PER_SERVER} subscriptions already"
        mine.add(uri)
        self._by_uri.setdefault(uri, set()).add(session)
        self._count += 1
        return None

    def unsubscribe(self, session: Any, uri: str) -> bool:
        """Forget it; True when the child should hear it too (nobody else is subscribed)."""
        mine = self._by_session.get(id(session))
        if mine is not None and uri in mine:
            mine.discard(uri)
            self._count -= 1
            sessions = self._by_uri.get(uri)
            if sessions is not None:
                sessions.discard(session)
                if not sessions:
                    del self._by_uri[uri]
        return uri not in self._by_uri

    def sessions_for(self, uri: Any) -> set[Any]:
        return set(self._by_uri.get(uri, ())) if isinstance(uri, str) else set()

    def forget(self, session: Any) -> None:
        for uri in self._by_session.pop(id(session), set()):
            self._count -= 1
            sessions = self._by_uri.get(uri)
            if sessions is not None:
                sessions.discard(session)
                if not sessions:
                    del self._by_uri[uri]
