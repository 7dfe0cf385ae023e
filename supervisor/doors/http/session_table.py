"""The legacy HTTP session table: bounded overall and per bearer token, evicted idle-first.

A legacy (`Mcp-Session-Id`) session costs the daemon memory until it is ended or sits idle for
an hour. Without bounds per token one client could open sessions until the table is full and lock
every other legacy client out for that hour. So the table has two bounds: `max_total`, and
`max_per_owner` sessions for each owner (the bearer token that opened them; without tokens
everyone is one owner). Opening a session past a bound ends the least recently used session in
that scope that is not busy (no GET stream open, no request in flight), so the newcomer always
gets in unless every session in scope is in use right now; only then is it refused.

Use order is kept by moving a session to the end of two ordered dicts on each request: O(1), no
scan on the hot path; eviction and the idle sweep walk from the least recently used end.
"""

from __future__ import annotations

import collections
from collections.abc import Hashable, Iterator
from typing import Generic, Protocol, TypeVar


class Evictable(Protocol):
    sid: str
    last_used: float

    @property
    def busy(self) -> bool: ...
    def close(self) -> None: ...


S = TypeVar("S", bound=Evictable)


class SessionTable(Generic[S]):
    def __init__(self, max_total: int, max_per_owner: int) -> None:
        self.max_total = max(1, max_total)
        self.max_per_owner = max(1, max_per_owner)
        self.evicted = 0  # sessions ended to make room (status, logs)
        self._all: collections.OrderedDict[str, S] = collections.OrderedDict()
        self._owned: dict[Hashable, collections.OrderedDict[str, S]] = {}
        self._owner_of: dict[str, Hashable] = {}

    def __len__(self) -> int:
        return len(self._all)

    def __iter__(self) -> Iterator[S]:
        return iter(list(self._all.values()))

    def get(self, sid: str) -> S | None:
        return self._all.get(sid)

    def touch(self, session: S, now: float) -> None:
        """The session was just used: it moves to the most recently used end."""
        session.last_used = now
        sid = session.sid
        self._all.move_to_end(sid)
        self._owned[self._owner_of[sid]].move_to_end(sid)

    def make_room(self, owner: Hashable) -> bool:
        """Before opening a session for `owner`: in each full scope (the owner's, the whole
        table) end the least recently used idle session. False when a full scope has only busy
        sessions: refuse the newcomer."""
        mine = self._owned.get(owner)
        if mine is not None and len(mine) >= self.max_per_owner and not self._evict(mine):
            return False
        return len(self._all) < self.max_total or self._evict(self._all)

    def add(self, session: S, owner: Hashable) -> None:
        self._all[session.sid] = session
        self._owned.setdefault(owner, collections.OrderedDict())[session.sid] = session
        self._owner_of[session.sid] = owner

    def pop(self, sid: str) -> S | None:
        session = self._all.pop(sid, None)
        if session is not None:
            owner = self._owner_of.pop(sid)
            mine = self._owned[owner]
            del mine[sid]
            if not mine:
                del self._owned[owner]
        return session

    def idle_since(self, cutoff: float) -> list[S]:
        """Sessions not used since `cutoff` and not busy (oldest first), left in the table."""
        found = []
        for session in self._all.values():
            if session.last_used > cutoff:
                break  # the rest were used more recently
            if not session.busy:
                found.append(session)
        return found

    def _evict(self, scope: collections.OrderedDict[str, S]) -> bool:
        for session in scope.values():
            if not session.busy:
                self.pop(session.sid)
                session.close()
                self.evicted += 1
                return True
        return False
