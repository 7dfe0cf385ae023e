"""Durations (`"500ms"`, `"15s"`, `"2h30m"`) and sizes (`"512MiB"`, `"1.5GiB"`): parse and format.

The parsers are strict and raise `ValueError` with a message that shows the accepted shape, so the
config loader can put it next to the key path. A bare number is seconds (durations) or bytes (sizes).
`format_*` produce strings the parsers accept again.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

__all__ = ["format_duration", "format_size", "parse_duration", "parse_size"]

_DURATION_UNITS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_DURATION_PART = re.compile(rf"\s*({_NUMBER})\s*(ms|s|m|h|d)\s*")
_DURATION_FULL = re.compile(rf"(?:\s*{_NUMBER}\s*(?:ms|s|m|h|d)\s*)+")
_BARE_NUMBER = re.compile(rf"\s*{_NUMBER}\s*")

_KI = 1024
_SIZE_UNITS: dict[str, int] = {
    "": 1, "b": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "kib": _KI, "mib": _KI**2, "gib": _KI**3, "tib": _KI**4,
    # Kubernetes spelling of the binary units.
    "ki": _KI, "mi": _KI**2, "gi": _KI**3, "ti": _KI**4,
}
_SIZE = re.compile(rf"\s*({_NUMBER})\s*([A-Za-z]*)\s*")


def _duration_error(value: object) -> ValueError:
    shown = f'"{value}"' if isinstance(value, str) else repr(value)
    return ValueError(f'expected a duration like "15s" (units ms, s, m, h, d), got {shown}')


def parse_duration(value: str | int | float) -> float:
    """Seconds in `value`: `"500ms"`, `"15s"`, `"1.5s"`, `"10m"`, `"1h"`, `"2d"`, `"2h30m"`, or a bare
    number of seconds (`15`, `"15"`). Negative, NaN and infinite values are rejected."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _duration_error(value)
    if isinstance(value, (int, float)) or _BARE_NUMBER.fullmatch(value):
        seconds = float(value)
    elif _DURATION_FULL.fullmatch(value):
        seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(value))
    else:
        raise _duration_error(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise _duration_error(value)
    return seconds


def _size_error(value: object) -> ValueError:
    shown = f'"{value}"' if isinstance(value, str) else repr(value)
    return ValueError(f'expected a size like "512MiB" (units B, KB, MB, GB, KiB, MiB, GiB, TiB), got {shown}')


def parse_size(value: str | int) -> int:
    """Bytes in `value`: `"512MiB"`, `"3GiB"`, `"1.5GiB"`, `"100MB"` (decimal), `"64KiB"`, `"1024"` or a
    bare integer of bytes. Units are case-insensitive; fractions round to the nearest byte."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _size_error(value)
    if isinstance(value, int):
        if value < 0:
            raise _size_error(value)
        return value
    match = _SIZE.fullmatch(value)
    if match is None or match.group(2).lower() not in _SIZE_UNITS:
        raise _size_error(value)
    try:
        number = Decimal(match.group(1))
    except InvalidOperation:  # pragma: no cover - the regex only lets decimals through
        raise _size_error(value) from None
    return int((number * _SIZE_UNITS[match.group(2).lower()]).to_integral_value())


def _trim(number: float) -> str:
    """`1.0` -> `"1"`, `1.5` -> `"1.5"`, `1.25` -> `"1.2"`: one decimal at most, no trailing zero."""
    text = f"{number:.1f}"
    return text[:-2] if text.endswith(".0") else text


def format_size(n: int) -> str:
    """`n` bytes in the largest binary unit that keeps the number at least 1: `"612MiB"`, `"1.5GiB"`,
    `"512B"`. At most one decimal, so the result is for people, not an exact round trip."""
    sign = "-" if n < 0 else ""
    n = abs(n)
    for unit, factor in (("TiB", _KI**4), ("GiB", _KI**3), ("MiB", _KI**2), ("KiB", _KI)):
        if n >= factor:
            return f"{sign}{_trim(n / factor)}{unit}"
    return f"{sign}{n}B"


def format_duration(seconds: float) -> str:
    """`seconds` as `"500ms"`, `"15s"`, `"1.5s"`, `"10m"`, `"1h2m"`, `"1d3h"`: under a second in whole
    milliseconds; otherwise days, hours, minutes and seconds, leaving out the zero parts."""
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 1:
        return f"{sign}{round(seconds * 1000)}ms"
    whole = math.floor(seconds)
    fraction = round(seconds - whole, 3)
    parts: list[str] = []
    for unit, factor in (("d", 86400), ("h", 3600), ("m", 60)):
        count, whole = divmod(whole, factor)
        if count:
            parts.append(f"{count}{unit}")
    if whole or fraction:
        secs = whole + fraction
        parts.append(f"{secs:g}s" if fraction else f"{whole}s")
    return sign + "".join(parts)


def format_uptime(seconds: float | None) -> str:
    """The two most significant units, for tables: `"42s"`, `"3m12s"`, `"5h03m"`, `"2d04h"`; `"-"`
    when unknown."""
    if seconds is None or seconds < 0 or math.isnan(seconds):
        return "-"
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
