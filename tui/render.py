"""Pure formatting for the dashboard: numbers to short strings, states to colours, memory to bars.

Every function here takes plain values and returns `str` or `rich.text.Text`, so it is tested as a
table without starting an app. `—` always means "not known (yet)", never zero.
"""

from __future__ import annotations

from rich.text import Text

from supervisor.units import format_uptime

UNKNOWN = "—"

STATE_STYLES: dict[str, str] = {
    "ready": "bold green",
    "starting": "cyan",
    "degraded": "bold yellow",
    "backoff": "bold magenta",
    "stopping": "dark_cyan",
    "stopped": "dim",
    "failed": "bold red",
    "unavailable": "dodger_blue1",
}
"""Green is the only colour that means "fine"; red means a human should look. `unavailable` is
waiting for configuration (an API key not set), not broken: blue, not red."""

STATE_MARKS: dict[str, str] = {
    "ready": "●",
    "starting": "◐",
    "degraded": "◆",
    "backoff": "↻",
    "stopping": "◌",
    "stopped": "○",
    "failed": "✗",
    "unavailable": "◇",
}
"""A shape per state as well as a colour, for terminals (and people) without colour."""

STATE_ORDER = ("failed", "backoff", "degraded", "unavailable", "starting", "stopping", "ready", "stopped")
"""Sorting by state: what needs a look first."""



def fmt_bytes(value: int | float | None) -> str:
    """`512` → `512B`, `1536` → `1.5K`, `300 MiB` → `300M`: at most four characters of number."""
    if value is None:
        return UNKNOWN
    amount = float(value)
    for unit in ("B", "K", "M", "G", "T"):
        if abs(amount) < 1024 or unit == "T":
            if unit == "B":
                return f"{int(amount)}B"
            return f"{amount:.1f}{unit}" if abs(amount) < 10 else f"{amount:.0f}{unit}"
        amount /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def fmt_duration(seconds: float | None) -> str:
    """Two most significant units: `42s`, `3m12s`, `5h03m`, `2d04h` (as `mcpctl status` shows)."""
    text = format_uptime(seconds)
    return UNKNOWN if text == "-" else text


def fmt_rate(value: float | None) -> str:
    """Calls or errors per second: `0`, `0.4`, `12.3`, `1234`."""
    if value is None:
        return UNKNOWN
    if value == 0:
        return "0"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:.0f}"


def fmt_ms(value: float | None) -> str:
    """Latency: `0.8ms`, `45ms`, `1.2s`, `12s`."""
    if value is None:
        return UNKNOWN
    if value < 10:
        return f"{value:.1f}ms"
    if value < 1000:
        return f"{value:.0f}ms"
    if value < 10_000:
        return f"{value / 1000:.1f}s"
    return f"{value / 1000:.0f}s"


def fmt_pct(ratio: float | None) -> str:
    """A 0..1 ratio as a whole percentage."""
    if ratio is None:
        return UNKNOWN
    return f"{ratio * 100:.0f}%"


BREAKER_MARKS: dict[str, tuple[str, str]] = {"open": ("⊘", "bold red"), "half-open": ("◐", "yellow")}
"""The mark a state cell gets while the server's circuit breaker is not closed."""

LAZY_REASON = "lazy: starts on first request"


def breaker_state(breaker: object) -> str | None:
    """The breaker's state from a status entry: `{"state": ..., ...}` (or a bare string)."""
    if isinstance(breaker, dict):
        breaker = breaker.get("state")
    return breaker if isinstance(breaker, str) else None


def is_lazy(server: dict[str, object]) -> bool:
    """A lazy server the daemon has not needed yet: stopped, and starts on the first request."""
    if server.get("state") != "stopped":
        return False
    if server.get("reason") == LAZY_REASON:
        return True
    return server.get("start") == "lazy" and not server.get("calls_total")


def state_text(state: str, breaker: str | None = None, *, lazy: bool = False) -> Text:
    """`● ready`, `◆ degraded ⊘` (breaker open), `○ lazy` (a lazy server not started yet)."""
    label = "lazy" if lazy else state
    style = "cyan" if lazy else STATE_STYLES.get(state, "")
    text = Text(f"{STATE_MARKS.get(state, '?')} {label}", style=style)
    mark = BREAKER_MARKS.get(breaker or "")
    if mark:
        text.append(f" {mark[0]}", style=mark[1])
    return text


def usage_style(ratio: float) -> str:
    if ratio >= 0.9:
        return "red"
    if ratio >= 0.7:
        return "yellow"
    return "green"


def retry_delay(attempt: int, base: float = 0.5, cap: float = 5.0) -> float:
    """Reconnect backoff: `base`, doubling per failed attempt, at most `cap` seconds."""
    return float(min(cap, base * (2 ** min(attempt, 30))))


def fmt_cpu(percent: float | None) -> str:
    """Share of one core: `0%`, `0.4%`, `12%`, `180%` (a tree can use more than one core)."""
    if percent is None:
        return UNKNOWN
    if percent == 0:
        return "0%"
    if percent < 10:
        return f"{percent:.1f}%"
    return f"{percent:.0f}%"


def fmt_clock(at: float | None) -> str:
    """`14:03:27` (UTC, as the daemon's log files stamp lines), or eight spaces when unknown."""
    if at is None:
        return " " * 8
    seconds = int(at) % 86400
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


SPARK = "▁▂▃▄▅▆▇█"


def spark(values: list[float], width: int, top: float | None = None) -> str:
    """The last `width` values as eighth-block bars scaled to `top` (default: their maximum);
    padded on the left with spaces while there are fewer values than columns."""
    shown = values[-width:]
    top = top if top else max(shown, default=0.0)
    if not top:
        return " " * (width - len(shown)) + SPARK[0] * len(shown)
    bars = "".join(SPARK[min(7, max(0, round(v / top * 7)))] for v in shown)
    return " " * (width - len(shown)) + bars


def limit_bar(used: int | None, limit: int | None, width: int = 6) -> Text:
    """`███···  58%`: memory against its limit, or nothing without one."""
    if used is None or not limit:
        return Text("")
    ratio = max(0.0, used / limit)
    eighths = min(width * 8, round(min(ratio, 1.0) * width * 8))
    full, part = divmod(eighths, 8)
    bar = ("█" * full + ("" if part == 0 else " ▏▎▍▌▋▊▉"[part])).ljust(width, "·")
    return Text.assemble((bar, usage_style(ratio)), f" {ratio * 100:3.0f}%")


CHANGED_MARK, BLOCKED_MARK = "Δ", "⊘"
"""Tools whose definition differs from the pinned one: served with a warning (Δ, yellow) or held
back from clients until approved (⊘, red; `on_tool_change = "block"`)."""


def changed_tools(server: dict[str, object]) -> tuple[list[str], bool]:
    """(the names of the tools that changed since they were pinned, whether they are blocked)
    from a status entry; an older daemon sends neither field: no changes."""
    names = server.get("changed_tools")
    changed = [n for n in names if isinstance(n, str)] if isinstance(names, list) else []
    return changed, bool(changed) and server.get("on_tool_change") == "block"


def tools_text(count: str, changed: int, blocked: bool, width: int) -> Text:
    """The tools cell: `12`, `12 Δ1` (changed, still served), `9 ⊘2` (changed, held back); when
    that is wider than the cell the count goes and the marker stays."""
    if not changed:
        return Text(count, justify="right")
    mark = Text(f"{BLOCKED_MARK if blocked else CHANGED_MARK}{changed}", "bold red" if blocked else "yellow")
    if len(count) + 1 + mark.cell_len > width:
        return Text.assemble(mark, justify="right")
    return Text.assemble(count, " ", mark, justify="right")
