"""A server's tool policy: which tools clients see, pinned definitions, and changes to them.

Every tool list a child sends is checked against the pins (`core.pins`): a new tool is pinned, a
changed one is logged and published, and with `on_tool_change = "block"` held back until
`mcpctl tools approve`. The gate (`policy.tool_policy.ServerGate`: allow/deny lists, held-back
tools) is rebuilt whenever what it hides may change, and `policy_epoch` counts those changes so
that whoever caches a view of the tools (`visible`, the aggregate) knows when to look again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from supervisor.config import ServerConfig
from supervisor.policy.tool_policy import ServerGate

from ..pins import ToolPins

log = logging.getLogger("mcp_supervisor.server")


class ToolPolicy:
    """The tool policy of one server. `config` is replaced when a reload changes the policy."""

    def __init__(self, server: str, config: ServerConfig, pins: ToolPins,
                 publish: Callable[[dict[str, Any]], None], time: Callable[[], float]) -> None:
        self.server = server
        self.config = config
        self.pins = pins  # a per-client instance shares its configured server's pins
        self._publish = publish
        self._time = time
        self.changes_total = 0  # definition changes seen (approved or not)
        self.blocked: set[str] = set()  # tools held back by on_tool_change = "block"
        self.gate: ServerGate | None = None  # None: every tool passes, nothing to check
        self.epoch = 0  # bumped whenever what clients see of this server may change
        self._visible: tuple[int, int, list[dict[str, Any]]] | None = None
        self.rebuild()

    @property
    def _blocking(self) -> bool:
        return self.config.on_tool_change == "block"

    def rebuild(self) -> None:
        """A new gate from the config and the pins."""
        block = self._blocking
        self.blocked = set(self.pins.changes) if block else set()
        gate = ServerGate(self.config, self.blocked, self.pins.matches if block else None)
        self.gate = gate if gate.active else None
        self.epoch += 1

    def sync(self) -> None:
        """The pins may have changed elsewhere (they are shared): rebuild if what is held differs."""
        if self.blocked != (set(self.pins.changes) if self._blocking else set()):
            self.rebuild()

    def seen(self, tools: list[dict[str, Any]]) -> None:
        """A fresh tool list from a child: pin new tools, flag (and maybe hold back) changed ones."""
        newly = self.pins.observe(tools)
        block = self._blocking
        for name in newly:
            self.changes_total += 1
            log.warning("%s: tool %r changed since it was pinned; %s (see: mcpctl tools --diff %s)",
                        self.server, name, "hidden until approved" if block else "still served",
                        self.server)
            self._publish({"type": "tool_change", "server": self.server, "tool": name,
                           "action": "blocked" if block else "warned", "at": self._time()})
        if block and self.blocked != set(self.pins.changes):
            self.rebuild()
        elif not block and self.gate is not None and newly:
            self.epoch += 1

    def approve(self, tool: str | None) -> list[str]:
        """`mcpctl tools approve`: pin what the child offers now (one tool, or every changed one);
        held-back tools come back. Returns what was approved."""
        approved = self.pins.approve(tool)
        if approved:
            log.info("%s: approved the current definition of %s", self.server, ", ".join(approved))
            self._publish({"type": "tool_change", "server": self.server, "tool": tool,
                           "action": "approved", "approved": approved, "at": self._time()})
            self.rebuild()
        return approved

    def visible(self, tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The tools clients see (policy applied), recomputed only when the tools or policy change."""
        gate = self.gate
        if gate is None:
            return tools
        cached = self._visible
        if cached is not None and cached[0] == id(tools) and cached[1] == self.epoch:
            return cached[2]
        visible = gate.visible_tools(tools)
        self._visible = (id(tools), self.epoch, visible)
        return visible
