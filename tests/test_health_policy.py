"""Health policy as tables: breaker, restart matrix, consecutive samples, idle stop. No processes,
no sleeping: time is a number the test moves (trio's MockClock idea, without the event loop)."""

from __future__ import annotations

import random

import pytest

from supervisor.core.health import sample_trees
from supervisor.policy.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from supervisor.policy.samples import Consecutive, cpu_share, idle_due, largest_offender
from supervisor.policy.states import Exit, RestartTracker, backoff_delay, start_failure_delay


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# ---- circuit breaker ------------------------------------------------------------------------------

def breaker(errors: int = 3, window: float = 10.0, cooldown: float = 5.0) -> tuple[CircuitBreaker, FakeClock]:
    clock = FakeClock()
    return CircuitBreaker(errors, window, cooldown, clock), clock


def test_breaker_opens_on_n_failures_within_the_window() -> None:
    b, clock = breaker()
    assert not b.failure("t1")
    clock.now += 4
    assert not b.failure("t2")
    clock.now += 4
    assert b.failure("t3")  # 3 within 8s <= 10s
    assert b.state is OPEN and b.opened == 1
    assert not b.allow()
    assert b.retry_after_ms() == 5000
    assert "after 3 failures within 10s (last: t3)" in b.describe()


def test_breaker_failures_spread_wider_than_the_window_never_open() -> None:
    b, clock = breaker()
    for _ in range(20):
        assert not b.failure("slow")
        clock.now += 5.1  # any 3 consecutive span 10.2s > 10s
    assert b.state is CLOSED


def test_breaker_half_open_lets_exactly_one_call_through_and_success_closes() -> None:
    b, clock = breaker()
    for _ in range(3):
        b.failure("x")
    clock.now += 4.999
    assert not b.allow()
    assert b.current() == OPEN
    clock.now += 0.001
    assert b.current() == HALF_OPEN
    assert b.allow()  # the trial
    assert b.state is HALF_OPEN
    assert not b.allow()  # everyone else still fails fast
    assert b.success()
    assert b.state is CLOSED
    assert b.allow() and b.allow()
    assert b.recent_failures() == 0  # closed means a fresh count


def test_breaker_half_open_failure_reopens_with_a_fresh_cooldown() -> None:
    b, clock = breaker()
    for _ in range(3):
        b.failure("x")
    clock.now += 5
    assert b.allow()
    assert b.failure("trial timed out")
    assert b.state is OPEN and b.opened == 2
    assert b.retry_after_ms() == 5000
    assert not b.allow()


def test_breaker_cancelled_trial_lets_the_next_call_try() -> None:
    b, clock = breaker()
    for _ in range(3):
        b.failure("x")
    clock.now += 5
    assert b.allow()
    b.neutral()
    assert b.allow()


def test_breaker_late_answers_while_open_change_nothing() -> None:
    b, _ = breaker()
    for _ in range(3):
        b.failure("x")
    assert not b.success()
    assert not b.failure("late")
    assert b.state is OPEN
    assert b.retry_after_ms() == 5000


def test_breaker_success_while_closed_is_free() -> None:
    b, _ = breaker()
    b.failure("x")
    assert not b.success()
    assert b.recent_failures() == 1  # closed: failures age out by the window, not by successes


# ---- restart matrix (OTP style): policy x exit reason ---------------------------------------------

POLICIES = {
    # name: (max_restarts, restart_window, max_start_failures)
    "default": (5, 300.0, 3),
    "no-restarts": (0, 300.0, 1),
    "tight": (1, 10.0, 2),
}
EXITS = {
    # exit reason: how the supervisor classifies it
    "clean exit": Exit.CRASH,  # exit 0 without being asked is still a crash
    "error exit": Exit.CRASH,
    "signal": Exit.CRASH,
    "hang": Exit.UNRESPONSIVE,
    "memory": Exit.MEMORY,
    "exit before handshake": Exit.START_FAILURE,
}
# (policy, exit) → the decisions for the 1st, 2nd and 3rd such exit, one second apart:
# "R<delay>" restart after delay seconds (jitter off), "X" give up.
MATRIX = {
    ("default", "clean exit"): ["R0.5", "R1", "R2"],
    ("default", "error exit"): ["R0.5", "R1", "R2"],
    ("default", "signal"): ["R0.5", "R1", "R2"],
    ("default", "hang"): ["R0", "R0", "R0"],
    ("default", "memory"): ["R0", "R0", "R0"],
    ("default", "exit before handshake"): ["R1", "R4", "X"],
    ("no-restarts", "clean exit"): ["X"],
    ("no-restarts", "error exit"): ["X"],
    ("no-restarts", "signal"): ["X"],
    ("no-restarts", "hang"): ["X"],
    ("no-restarts", "memory"): ["X"],
    ("no-restarts", "exit before handshake"): ["X"],
    ("tight", "clean exit"): ["R0.5", "X"],
    ("tight", "error exit"): ["R0.5", "X"],
    ("tight", "signal"): ["R0.5", "X"],
    ("tight", "hang"): ["R0", "X"],
    ("tight", "memory"): ["R0", "X"],
    ("tight", "exit before handshake"): ["R1", "X"],
}


def tracker(policy: str, **extra: float) -> RestartTracker:
    max_restarts, window, max_start_failures = POLICIES[policy]
    keys = {"backoff_initial": 0.5, "backoff_max": 30.0, "stable_after": 60.0, **extra}
    return RestartTracker(max_restarts=max_restarts, restart_window=window,
                          max_start_failures=max_start_failures, rng=None, **keys)


@pytest.mark.parametrize(("policy", "reason"), sorted(MATRIX))
def test_restart_matrix(policy: str, reason: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "uniform", lambda a, b: 0.0)  # jitter off
    t = tracker(policy)
    got = []
    for i, _ in enumerate(MATRIX[policy, reason]):
        decision = t.exited(EXITS[reason], now=100.0 + i, uptime=1.0)
        got.append("X" if decision.give_up else f"R{decision.delay:g}")
        if decision.give_up:
            break
    assert got == MATRIX[policy, reason]


def test_restart_intensity_counts_only_the_window() -> None:
    t = tracker("tight")  # 1 restart per 10 s
    assert not t.exited(Exit.CRASH, now=0.0).give_up
    assert not t.exited(Exit.CRASH, now=10.5).give_up  # the first left the window
    decision = t.exited(Exit.CRASH, now=11.0)
    assert decision.give_up and decision.why == "2 restarts within 10s"


def test_hang_and_memory_restarts_share_the_intensity_with_crashes() -> None:
    t = tracker("tight")
    assert not t.exited(Exit.MEMORY, now=0.0).give_up
    assert t.exited(Exit.UNRESPONSIVE, now=1.0).give_up


def test_backoff_is_capped_and_resets_after_stable_after(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "uniform", lambda a, b: 0.0)
    t = RestartTracker(max_restarts=100, restart_window=1.0, max_start_failures=3,
                       backoff_initial=0.5, backoff_max=4.0, stable_after=60.0)
    delays = [t.exited(Exit.CRASH, now=10.0 * i, uptime=5.0).delay for i in range(7)]
    assert delays == [0.5, 1, 2, 4, 4, 4, 4]  # backoff_max caps it
    assert t.exited(Exit.CRASH, now=100.0, uptime=60.0).delay == 0.5  # stayed up: start over


def test_a_ready_child_clears_start_failures_and_reset_forgets_everything() -> None:
    t = tracker("default")
    t.exited(Exit.START_FAILURE, now=0.0)
    t.exited(Exit.START_FAILURE, now=1.0)
    t.ready()
    assert not t.exited(Exit.START_FAILURE, now=2.0).give_up
    t = tracker("no-restarts")
    t.reset()
    assert t.restart_times == [] and t.attempt == 0 and t.start_failures == 0


@pytest.mark.parametrize(("attempt", "expected"), [(0, 0.0), (1, 0.5), (2, 1.0), (3, 2.0), (10, 30.0)])
def test_backoff_delay_table(attempt: int, expected: float) -> None:
    assert backoff_delay(attempt, 0.5, 30.0, jitter=0) == expected


def test_backoff_jitter_stays_within_twenty_percent_and_the_cap() -> None:
    rng = random.Random(7)
    for attempt in range(1, 12):
        base = min(30.0, 0.5 * 2 ** (attempt - 1))
        delay = backoff_delay(attempt, 0.5, 30.0, rng=rng)
        assert base * 0.8 <= delay <= min(30.0, base * 1.2)


@pytest.mark.parametrize(("failures", "expected"), [(0, 0.0), (1, 1.0), (2, 4.0), (3, 16.0), (4, 30.0)])
def test_start_failure_delay_table(failures: int, expected: float) -> None:
    assert start_failure_delay(failures, 0.5, 30.0) == expected


# ---- consecutive bad samples, largest offender, idle ----------------------------------------------

@pytest.mark.parametrize(("samples", "fires_at"), [
    ("bbb", 3),
    ("bbgbbb", 6),  # a good sample in between starts over
    ("bgbgbgbg", None),
    ("gggbb", None),
])
def test_consecutive_bad_samples(samples: str, fires_at: int | None) -> None:
    watch = Consecutive(3)
    fired = None
    for i, sample in enumerate(samples, 1):
        if watch.observe(sample == "b") and fired is None:
            fired = i
    assert fired == fires_at


def test_largest_offender() -> None:
    assert largest_offender([]) is None
    assert largest_offender([("a", 10), ("b", 30), ("c", 30), ("d", 5)]) == "b"


@pytest.mark.parametrize(("last", "now", "busy", "due"), [
    (0.0, 599.9, 0, False),
    (0.0, 600.0, 0, True),
    (0.0, 9999.0, 1, False),  # a request in flight or queued is activity
])
def test_idle_due(last: float, now: float, busy: int, due: bool) -> None:
    assert idle_due(last, now, 600.0, busy) is due


def test_sample_trees_measures_ourselves_and_skips_the_dead() -> None:
    import os
    sizes = sample_trees({os.getpid(): None, 2**22 + 12345: None}, keep=set())
    assert set(sizes) == {os.getpid()}
    rss, count, precise = sizes[os.getpid()]
    assert rss > 10 * 2**20 and count >= 1 and not precise
    # Over a (tiny) limit: measured again by PSS, which is never more than RSS.
    pss, _, precise = sample_trees({os.getpid(): 1}, keep=set())[os.getpid()]
    assert precise and 0 < pss <= rss * 1.5


@pytest.mark.parametrize(("before", "before_at", "seconds", "now", "share"), [
    (None, None, 5.0, 10.0, None),  # the first reading: no share yet
    (1.0, 10.0, 1.5, 11.0, 0.5),  # half a core over one second
    (1.0, 10.0, 3.0, 11.0, 2.0),  # a tree can use more than one core
    (2.0, 10.0, 1.0, 11.0, 0.0),  # processes exited, the tree's total went down: idle
    (1.0, 10.0, 2.0, 10.0, None),  # no time passed
])
def test_cpu_share(before: float | None, before_at: float | None, seconds: float, now: float,
                   share: float | None) -> None:
    assert cpu_share(before, before_at, seconds, now) == share
