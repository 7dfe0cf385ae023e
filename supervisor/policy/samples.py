"""Rules that judge samples taken over time: pure, with time passed in, tested as tables.

The health loop (`core.health.MemoryWatch`) and each server's probes and idle watch take the
samples; these decide what they mean: a bad level only counts when it stays bad (`Consecutive`),
the fleet's memory is freed from its largest tree first (`largest_offender`), an idle server stops
only with nothing to do (`idle_due`), and two CPU readings make a share of a core (`cpu_share`).
"""

from __future__ import annotations

from collections.abc import Iterable

BAD_SAMPLES = 3  # consecutive samples over a memory limit before a restart (circus-style)


class Consecutive:
    """Counts consecutive bad observations; `observe` is True when `threshold` is reached.

    A good observation resets the count, so one spike (a big response being built) never restarts
    anything; only a level that stays bad does.
    """

    __slots__ = ("count", "threshold")

    def __init__(self, threshold: int) -> None:
        self.threshold = max(1, threshold)
        self.count = 0

    def observe(self, bad: bool) -> bool:
        if not bad:
            self.count = 0
            return False
        self.count += 1
        return self.count >= self.threshold

    def reset(self) -> None:
        self.count = 0


def largest_offender(sizes: Iterable[tuple[str, int]]) -> str | None:
    """The key with the most memory (first wins a tie), or None."""
    best: tuple[str, int] | None = None
    for key, size in sizes:
        if best is None or size > best[1]:
            best = (key, size)
    return best[0] if best else None


def idle_due(last_active: float, now: float, idle_after: float, busy: int) -> bool:
    """Stop an idle server? Only with nothing in flight or queued, `idle_after` after the last
    request finished (or the child became ready)."""
    return busy == 0 and now - last_active >= idle_after


def cpu_share(before: float | None, before_at: float | None, seconds: float, now: float) -> float | None:
    """The share of a core a tree used between two readings of its CPU seconds, or None without
    an earlier one. A tree whose processes exited can go backwards: that counts as idle."""
    if before is None or before_at is None or now <= before_at:
        return None
    return max(0.0, seconds - before) / (now - before_at)
