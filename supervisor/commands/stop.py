"""mcpctl stop NAME... | --all: stop servers and end their process trees.

Waits until each server has settled (ready, failed, unavailable or stopped) unless --no-wait.
"""

from __future__ import annotations

import argparse

from . import _lifecycle

NAME = "stop"
HELP = "stop servers and end their process trees"
configure = _lifecycle.configure


def run(args: argparse.Namespace) -> int:
    return _lifecycle.run(args, "supervisor/stop", NAME)
