"""`stderr_levels.level_of`: the level of a child's stderr line, as a table."""

from __future__ import annotations

import pytest

from supervisor.policy.stderr_levels import level_of

CASES = [
    # Python logging, default basicConfig and common formats
    ("ERROR:root:could not connect", "error"),
    ("WARNING:mcp.server.lowlevel:slow handler", "warning"),
    ("INFO:     Started server process [1234]", "info"),
    ("DEBUG:asyncio:Using selector: EpollSelector", "debug"),
    ("2026-12-01 10:00:00,123 - app - WARNING - disk almost full", "warning"),
    ("2026-12-01 10:00:00,123 - app - ERROR - it broke", "error"),
    ("[12/01/26 10:00:00] INFO     Processing request of type ListToolsRequest  server.py:523", "info"),
    ("[12/01/26 10:00:00] ERROR    Error processing request  server.py:600", "error"),
    ("CRITICAL:root:out of memory", "critical"),
    ("Traceback (most recent call last):", "error"),
    ("ValueError: bad input", "error"),
    ("/x/site-packages/pydantic/_config.py:12: DeprecationWarning: use ConfigDict", "warning"),
    # Node
    ("[error] Failed to start: ENOENT", "error"),
    ("[warn] falling back to defaults", "warning"),
    ("[info] listening on stdio", "info"),
    ("Error: Cannot find module 'x'", "error"),
    ("TypeError: Cannot read properties of undefined", "error"),
    ("(node:4242) ExperimentalWarning: Fetch API is experimental", "warning"),
    ("(node:4242) [DEP0040] DeprecationWarning: The `punycode` module is deprecated.", "warning"),
    ('{"level":50,"time":1733050000,"msg":"boom"}', "error"),
    ('{"level":30,"time":1733050000,"msg":"ok"}', "info"),
    ('{"level":"warn","message":"slow","timestamp":"2026-12-01"}', "warning"),
    ("npm ERR! code E404", "error"),
    ("echo_server.py: error: unrecognized arguments: --x", "error"),
    ("warn: deprecated option", "warning"),
    # Rust tracing, Go
    ("2026-12-01T10:00:00.000Z ERROR github_mcp_server: request failed", "error"),
    ("2026-12-01T10:00:00.000Z  WARN rmcp::service: unknown method", "warning"),
    ('time=2026-12-01T10:00:00Z level=ERROR msg="dial failed"', "error"),
    ("time=2026-12-01T10:00:00Z level=debug msg=tick", "debug"),
    # no marker, or a marker only as an ordinary word: info
    ("Secure MCP Filesystem Server running on stdio", "info"),
    ("Found 0 errors in 3 files", "info"),
    ("Knowledge graph loaded; no error", "info"),
    ("An error occurred? no: this is a sentence", "info"),
    ("", "info"),
    # the first marker wins
    ("INFO: upstream said ERROR 500", "info"),
    ("ERROR: retrying; INFO follows", "error"),
]


@pytest.mark.parametrize(("line", "level"), CASES)
def test_level_of(line: str, level: str) -> None:
    assert level_of(line) == level


def test_a_marker_past_the_scanned_head_is_ignored() -> None:
    """A long message mentioning ERROR far in is still the info line it starts as."""
    assert level_of("x" * 300 + " ERROR") == "info"
