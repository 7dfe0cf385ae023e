"""Who may talk to the HTTP door, decided from the request's headers before anything else runs.

    allowed_hosts(settings)     the `Host` names this door answers to
    screen(headers, hosts)      → (headers as a dict, None) or (…, Refusal): duplicated security
                                headers and foreign `Host` names are refused on every path,
                                /healthz and /metrics included
    bearer_token(value)         the credential of an `Authorization: Bearer …` header (the scheme
                                is case-insensitive, as RFC 9110 says), or None

Why `Host`: a page on `evil.example` whose DNS name is re-pointed at 127.0.0.1 (DNS rebinding)
makes the victim's browser send requests to the door that carry `Host: evil.example` and, for
simple GETs like /metrics and /healthz, no `Origin` at all. Checking the name the request was sent
to closes that, whatever the Origin says. A request without `Host` (HTTP/1.0 tools) is not from a
browser and passes.

Why duplicates are refused: with two `Authorization` or `Origin` headers, which one a check reads
and which one a proxy in front of us read may differ; a 400 is the only answer that is the same for
everyone.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from supervisor.config import HttpSettings

__all__ = ["SINGLE_HEADERS", "Refusal", "allowed_hosts", "bearer_token", "host_name", "screen",
           "wildcard_warning"]

# Headers that decide who the caller is or where it comes from: exactly one, or none.
SINGLE_HEADERS = (b"authorization", b"origin", b"host", b"mcp-session-id")
ANY_HOST = "*"
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True, slots=True)
class Refusal:
    """An HTTP status and the JSON-RPC error message to answer with."""

    status: int
    message: str


def allowed_hosts(settings: HttpSettings) -> frozenset[str]:
    """The listen address's host, the loopback names and `http.allowed_hosts`, lowercased."""
    names = {*_LOOPBACK_NAMES, *(h.lower() for h in settings.allowed_hosts)}
    if settings.enabled:
        names.add(settings.host_port()[0].lower())
    return frozenset(names)


def wildcard_warning(settings: HttpSettings) -> str | None:
    """What to tell the user when `listen` is 0.0.0.0 or :: and no `allowed_hosts` are set: the
    names remote clients use are unknown, so only loopback names would be answered."""
    if not settings.enabled or settings.allowed_hosts:
        return None
    if settings.host_port()[0] not in ("0.0.0.0", "::"):
        return None
    return (f"http.listen = {settings.listen!r} listens on every address, but only requests for Host "
            "localhost, 127.0.0.1 or [::1] are answered: add the names clients use to http.allowed_hosts")


def host_name(value: bytes) -> str | None:
    """`b"Example.com:8765"` → "example.com", `b"[::1]:8765"` → "::1"; None when malformed."""
    try:
        text = value.decode("ascii").strip().lower()
    except UnicodeDecodeError:
        return None
    if text.startswith("["):
        end = text.find("]")
        rest = text[end + 1 :]
        if end < 0 or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return text[1:end]
    name, sep, port = text.partition(":")
    if not name or (sep and not port.isdigit()):
        return None
    return name


def screen(raw: list[tuple[bytes, bytes]],
           hosts: frozenset[str]) -> tuple[dict[bytes, bytes], Refusal | None]:
    """The request's headers as a dict, and why the request is refused (None: it is not)."""
    headers = dict(raw)
    if len(headers) != len(raw):  # only then look for which one: the common case costs a len()
        seen: set[bytes] = set()
        for name, _ in raw:
            if name in seen and name in SINGLE_HEADERS:
                shown = name.decode("latin-1").title()
                return headers, Refusal(400, f"Bad Request: more than one {shown} header")
            seen.add(name)
    host = headers.get(b"host")
    if host is not None and ANY_HOST not in hosts and not _host_allowed(host, hosts):
        shown = host.decode("latin-1", "replace")[:100]
        return headers, Refusal(403, f"Forbidden: Host {shown!r} is not this server's name "
                                     "(DNS rebinding?); add it to http.allowed_hosts if it is")
    return headers, None


@functools.lru_cache(maxsize=256)
def _host_allowed(host: bytes, hosts: frozenset[str]) -> bool:
    """Whether a `Host` value names this server: remembered for the few values clients send (a
    parse and a set lookup per request before; bounded, whatever a client sends)."""
    hostname = host_name(host)
    return hostname is not None and hostname in hosts


def bearer_token(value: bytes | None) -> bytes | None:
    """The token of `Bearer <token>` (any case of "Bearer", one or more spaces), else None."""
    if value is None:
        return None
    scheme, _, token = value.partition(b" ")
    token = token.lstrip(b" ")
    if scheme.lower() != b"bearer" or not token:
        return None
    return token
