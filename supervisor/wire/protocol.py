"""What the daemon knows about MCP itself: versions of both eras, method classes, the envelope.

Kept separate from `jsonrpc` (which knows nothing of MCP) and from the routing code, so the facts
that change with the spec live in one small place.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from supervisor import __version__

LEGACY_VERSIONS: Final = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
MODERN_VERSIONS: Final = ("2026-07-28",)
LATEST_LEGACY: Final = LEGACY_VERSIONS[-1]
LATEST_MODERN: Final = MODERN_VERSIONS[-1]
KNOWN_VERSIONS: Final = (*LEGACY_VERSIONS, *MODERN_VERSIONS)

META_PROTOCOL_VERSION: Final = "io.modelcontextprotocol/protocolVersion"
META_CLIENT_INFO: Final = "io.modelcontextprotocol/clientInfo"
META_CLIENT_CAPABILITIES: Final = "io.modelcontextprotocol/clientCapabilities"
META_SERVER_INFO: Final = "io.modelcontextprotocol/serverInfo"
META_SUBSCRIPTION_ID: Final = "io.modelcontextprotocol/subscriptionId"

# Legacy methods the 2026-07-28 revision removed: on that wire they are -32601 (HTTP 404).
REMOVED_IN_MODERN: Final = frozenset({
    "initialize", "ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe",
})

CLIENT_INFO: Final = {"name": "mcp-supervisor", "version": __version__}

# Reads that can be replayed on a new child after a crash without side effects.
RETRY_SAFE_METHODS: Final = frozenset({
    "tools/list", "prompts/list", "resources/list", "resources/templates/list", "resources/read",
    "prompts/get", "ping", "server/discover", "completion/complete",
})
LIST_METHODS: Final = ("tools/list", "prompts/list", "resources/list", "resources/templates/list")
# list method -> the key of its items and the capability that must be declared for it
LIST_ITEMS: Final = {
    "tools/list": ("tools", "tools"),
    "prompts/list": ("prompts", "prompts"),
    "resources/list": ("resources", "resources"),
    "resources/templates/list": ("resourceTemplates", "resources"),
}
# A list_changed notification -> the list methods it makes stale (templates have no notification of
# their own; they change with the resources). The caches, the aggregate and the HTTP door's "list
# again" all read this one map.
LIST_CHANGED: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType({
    "notifications/tools/list_changed": ("tools/list",),
    "notifications/prompts/list_changed": ("prompts/list",),
    "notifications/resources/list_changed": ("resources/list", "resources/templates/list"),
})


def modern_envelope(capabilities: dict[str, Any] | None = None,
                    client_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `_meta` keys every 2026-07-28 request carries."""
    return {
        META_PROTOCOL_VERSION: LATEST_MODERN,
        META_CLIENT_CAPABILITIES: capabilities if capabilities is not None else {},
        META_CLIENT_INFO: client_info if client_info is not None else CLIENT_INFO,
    }


def negotiate_legacy(requested: Any) -> str:
    """The version we answer a legacy client's `initialize` with: theirs when we know it."""
    if isinstance(requested, str) and requested in LEGACY_VERSIONS:
        return requested
    return LATEST_LEGACY


# 2026-07-28 results of these methods must say how long a client may cache them.
CACHEABLE_METHODS: Final = frozenset({
    "tools/list", "prompts/list", "resources/list", "resources/templates/list", "resources/read",
    "server/discover",
})


def modernize_result(message: dict[str, Any], method: str) -> None:
    """Make a legacy child's answer valid on the 2026-07-28 wire, in place: every result says
    `resultType`, cacheable ones say `ttlMs` / `cacheScope` (0 and private: we know nothing better)."""
    result = message.get("result")
    if result.__class__ is not dict:
        return
    result.setdefault("resultType", "complete")
    if method in CACHEABLE_METHODS:
        result.setdefault("ttlMs", 0)
        result.setdefault("cacheScope", "private")


# The capability a server must declare before a method makes sense to send it.
METHOD_CAPABILITY: Final = {
    "tools/list": "tools", "tools/call": "tools",
    "prompts/list": "prompts", "prompts/get": "prompts",
    "resources/list": "resources", "resources/templates/list": "resources",
    "resources/read": "resources", "resources/subscribe": "resources",
    "resources/unsubscribe": "resources",
    "logging/setLevel": "logging",
    "completion/complete": "completions",
}
