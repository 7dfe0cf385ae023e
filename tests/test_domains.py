"""The failure-domain boundary (`supervisor.domains`): what it catches, what it lets through."""

from __future__ import annotations

import logging

import anyio
import pytest

from supervisor import domains


def test_domain_ends_only_itself_logs_once_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    """An exception inside a domain stops at its boundary: logged once with its context, counted
    by kind, handed to on_failure; the code after the block runs."""
    ended: list[Exception] = []
    before = domains.failures["test-kind"]
    with caplog.at_level(logging.ERROR, "mcp_supervisor.domain"), \
            domains.domain("test-kind", "peer 7", on_failure=ended.append) as outcome:
        raise KeyError("boom")
    assert outcome.failed and isinstance(outcome.failure, KeyError)
    assert [type(e) for e in ended] == [KeyError]
    assert domains.failures["test-kind"] == before + 1
    records = [r for r in caplog.records if r.name == "mcp_supervisor.domain"]
    assert len(records) == 1 and "test-kind peer 7" in records[0].getMessage()
    assert records[0].exc_info is not None


def test_domain_lets_cancellation_through() -> None:
    """Cancellation is not a failure: it passes the boundary and nothing is counted."""
    before = sum(domains.failures.values())

    async def main() -> bool:
        with anyio.move_on_after(0.01) as scope, domains.domain("test-cancel"):
            await anyio.sleep(5)
        return scope.cancelled_caught

    assert anyio.run(main)
    assert sum(domains.failures.values()) == before


def test_domain_catches_the_exception_part_of_a_task_group_failure() -> None:
    """A task group inside a domain fails with an exception group: the boundary catches it."""
    async def main() -> domains.Outcome:
        with domains.domain("test-group") as outcome:
            async with anyio.create_task_group() as tg:
                tg.start_soon(anyio.sleep, 5)
                raise ValueError("inside the group")
        return outcome

    outcome = anyio.run(main)
    assert isinstance(outcome.failure, ExceptionGroup)


def test_failing_on_failure_does_not_escape() -> None:
    """The domain's own ending may fail too; that must not cross the boundary either."""
    def broken(_: Exception) -> None:
        raise RuntimeError("cleanup failed")

    with domains.domain("test-cleanup", on_failure=broken) as outcome:
        raise ValueError("first")
    assert outcome.failed


def test_loop_domain_restarts_a_failing_loop_with_backoff_and_returns_when_it_ends() -> None:
    """A background loop that raises is run again after a backoff; one that returns is done."""
    runs: list[float] = []

    async def flaky() -> None:
        runs.append(anyio.current_time())
        if len(runs) < 3:
            raise RuntimeError(f"run {len(runs)} failed")

    async def main() -> None:
        with anyio.fail_after(5):
            await domains.loop_domain("flaky", flaky, backoff_initial=0.01, backoff_max=0.02)

    anyio.run(main)
    assert len(runs) == 3
    assert runs[2] - runs[1] >= runs[1] - runs[0] >= 0.01
