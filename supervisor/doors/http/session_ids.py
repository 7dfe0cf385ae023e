"""Legacy HTTP session ids that any node of a cluster can resume.

A 2025-era client keeps one `Mcp-Session-Id` for its whole session and sends it to whichever
node the balancer picks. With `[cluster] secret`, the id is not a random key into one daemon's
table but a signed claim of what the client negotiated at `initialize` (protocol version,
capabilities, client info, the path it opened and who opened it), so a daemon that never saw the
session checks the signature and resumes it on its own children:

    v1.<base64url(JSON claims)>.<base64url(HMAC-SHA256(key, "v1." + claims))>

Nothing secret is in the claims (who opened it is a hash of the bearer credential, not the
credential), and nothing in them is trusted before the signature is: `verify` answers None for a
forged, truncated, oversized, expired or other-secret id, and the door then says 404 (the client
opens a new session, as the spec tells it to). The key is derived from the cluster secret for
this use alone, so the same secret can sign other things (input-required state) without one
signature ever passing for the other.

Time is a parameter, never read here: tests drive expiry exactly.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any

import orjson

VERSION = "v1"
# An id rides in a header on every request, through balancers with header limits of their own
# (HAProxy's default buffer is 16 KiB for all headers): a client whose claims would not fit gets
# a plain local id instead, and simply cannot be resumed elsewhere.
MAX_ID_BYTES = 3072
# Nodes' clocks differ a little: an id issued "in the future" by this much is still good.
CLOCK_SKEW = 60.0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def owner_of(credential: bytes | None) -> str:
    """Who opened a session, as it can be written into an id: a short hash of the bearer
    credential ("" when the door needs none)."""
    if not credential:
        return ""
    return hashlib.sha256(b"mcp-supervisor session owner\0" + credential).hexdigest()[:32]


class SessionIds:
    """Issues and verifies signed session ids for one cluster secret."""

    def __init__(self, secret: str, node: str, ttl: float) -> None:
        self._key = hmac.new(secret.encode(), b"mcp-supervisor legacy session id v1",
                             hashlib.sha256).digest()
        self.node = node
        self.ttl = ttl

    def _sign(self, head: bytes) -> str:
        return _b64(hmac.new(self._key, head, hashlib.sha256).digest())

    def issue(self, *, path: str, owner: str, version: Any, capabilities: Any, client_info: Any,
              now: float) -> str:
        """A signed id for a session opened now; a random local one when the claims are too big."""
        claims = {"p": path, "o": owner, "v": version, "c": capabilities, "i": client_info,
                  "n": self.node, "t": int(now), "r": secrets.token_urlsafe(12)}
        head = f"{VERSION}.{_b64(orjson.dumps(claims))}"
        sid = f"{head}.{self._sign(head.encode())}"
        if len(sid) > MAX_ID_BYTES:
            return secrets.token_urlsafe(24)
        return sid

    def verify(self, sid: str, now: float) -> dict[str, Any] | None:
        """The claims of a genuine, unexpired id of ours; None for anything else."""
        if len(sid) > MAX_ID_BYTES or sid.count(".") != 2 or not sid.startswith(VERSION + "."):
            return None
        head, _, signature = sid.rpartition(".")
        if not hmac.compare_digest(signature, self._sign(head.encode())):
            return None
        try:
            claims = orjson.loads(_unb64(head.partition(".")[2]))
        except (ValueError, orjson.JSONDecodeError):  # signed by us, so only a bug gets here
            return None
        if not isinstance(claims, dict) or not isinstance(claims.get("t"), int):
            return None
        if not -CLOCK_SKEW <= now - claims["t"] <= self.ttl:
            return None
        if not isinstance(claims.get("p"), str) or not isinstance(claims.get("o"), str):
            return None
        if not isinstance(claims.get("c"), dict) or not isinstance(claims.get("i"), dict):
            return None
        return claims
