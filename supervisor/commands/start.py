"""mcpctl start NAME... | --all: start servers (also revives failed ones).

Waits until each server has settled (ready, failed, unavailable or stopped) unless --no-wait.
"""

from __future__ import annotations

import argparse

from . import _lifecycle

NAME = "start"
HELP = "start servers (also revives failed ones)"
configure = _lifecycle.configure


def run(args: argparse.Namespace) -> int:
    return _lifecycle.run(args, "supervisor/start", NAME)
