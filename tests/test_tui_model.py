"""The dashboard's pure parts as tables: formatting, backoff, and folding events into the model."""

from __future__ import annotations

from typing import Any

import pytest

from tui.fake import FakeDaemonClient
from tui.model import FleetModel
from tui.render import fmt_bytes, fmt_duration, fmt_ms, fmt_pct, fmt_rate, memory_bar, retry_delay

MiB = 1024 * 1024


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "—"), (0, "0B"), (512, "512B"), (1536, "1.5K"), (300 * MiB, "300M"), (1024 * MiB, "1.0G"),
     (3 * 1024**4, "3.0T")],
)  # fmt: skip
def test_fmt_bytes(value: int | None, text: str) -> None:
    assert fmt_bytes(value) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "—"), (-1, "—"), (0, "0s"), (42.9, "42s"), (192, "3m12s"), (5 * 3600 + 180, "5h03m"),
     (2 * 86400 + 4 * 3600 + 59, "2d04h")],
)  # fmt: skip
def test_fmt_duration(seconds: float | None, text: str) -> None:
    assert fmt_duration(seconds) == text


@pytest.mark.parametrize(
    ("fn", "value", "text"),
    [(fmt_rate, None, "—"), (fmt_rate, 0, "0"), (fmt_rate, 0.44, "0.4"), (fmt_rate, 1234.4, "1234"),
     (fmt_ms, 0.84, "0.8ms"), (fmt_ms, 45.2, "45ms"), (fmt_ms, 1234, "1.2s"), (fmt_ms, 12_345, "12s"),
     (fmt_pct, None, "—"), (fmt_pct, 0.873, "87%")],
)  # fmt: skip
def test_numbers(fn: Any, value: float | None, text: str) -> None:
    assert fn(value) == text


@pytest.mark.parametrize(
    ("used", "limit", "text", "colour"),
    [(None, 100, "—", None), (300 * MiB, None, "       300M", None),
     (0, 512 * MiB, "······ 0B/512M", "green"), (256 * MiB, 512 * MiB, "███··· 256M/512M", "green"),
     (400 * MiB, 512 * MiB, "████▊· 400M/512M", "yellow"), (600 * MiB, 512 * MiB, "██████ 600M/512M", "red")],
)  # fmt: skip
def test_memory_bar(used: int | None, limit: int | None, text: str, colour: str | None) -> None:
    bar = memory_bar(used, limit)
    assert bar.plain == text
    assert (str(bar.spans[0].style) if bar.spans else None) == colour


@pytest.mark.parametrize(("attempt", "delay"), [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (500, 5.0)])
def test_retry_delay_doubles_up_to_the_cap(attempt: int, delay: float) -> None:
    assert retry_delay(attempt, base=0.5, cap=5.0) == delay


def loaded_model() -> tuple[FleetModel, FakeDaemonClient]:
    fake = FakeDaemonClient()
    model = FleetModel(history=3)
    model.load_status({"daemon": fake._daemon(), "servers": [dict(s) for s in fake.servers], "cache": {}})
    return model, fake


def test_state_event_changes_one_row() -> None:
    model, _ = loaded_model()
    event = {"type": "state", "server": "git", "state": "backoff", "reason": "exit 1", "at": 5.0}
    change = model.apply(event)
    assert change.servers == {"git"} and not change.membership
    assert model.servers["git"]["state"] == "backoff"
    assert model.servers["git"]["since"] == 5.0


def test_events_for_unknown_servers_or_types_change_nothing() -> None:
    model, _ = loaded_model()
    for event in ({"type": "state", "server": "ghost", "state": "ready"}, {"type": "new-in-v2"}, {}):
        change = model.apply(event)
        assert not change.servers and not change.membership and not change.fleet


def test_stats_keep_a_bounded_history_and_mark_only_changed_rows() -> None:
    model, fake = loaded_model()
    first = model.apply(fake.stats_event(0))
    assert "git" in first.servers and not first.membership
    assert "notion" in first.servers  # gained rate fields, even though stopped
    for tick in range(1, 5):
        model.apply(fake.stats_event(tick))
    assert len(model.calls_history["git"]) == 3
    again = model.apply(fake.stats_event(4))
    assert again.servers == set()


def test_a_status_reply_keeps_the_last_rates() -> None:
    model, fake = loaded_model()
    model.apply(fake.stats_event(0))
    rate = model.servers["git"]["calls_per_s"]
    model.load_status({"servers": [dict(s) for s in fake.servers]})
    assert model.servers["git"]["calls_per_s"] == rate


def test_fleet_membership_change_is_reported() -> None:
    model, fake = loaded_model()
    event = fake.stats_event(0)
    event["servers"] = event["servers"][:-1]
    change = model.apply(event)
    assert change.membership
    assert "obsidian" not in model.servers and "obsidian" not in model.calls_history


def test_restart_events_are_kept_with_reasons() -> None:
    model, _ = loaded_model()
    model.apply({"type": "restart", "server": "git", "reason": "memory", "at": 10.0})
    assert [(r.at, r.reason) for r in model.restarts["git"]] == [(10.0, "memory")]


def test_totals() -> None:
    model, fake = loaded_model()
    model.apply(fake.stats_event(0))
    totals = model.totals()
    assert (totals.ready, totals.total) == (17, 27)
    assert totals.memory_bytes == sum(s["memory_bytes"] or 0 for s in fake.servers)
    assert totals.memory_limit == 8 * 1024 * MiB
    assert totals.calls_per_s == pytest.approx(sum(s["calls_per_s"] for s in model.servers.values()))
