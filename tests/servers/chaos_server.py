"""Chaos MCP test server: the echo server plus fault-injection flags (combine freely).

Run as `python tests/servers/chaos_server.py --help` for the flags; see `_mcp.py`.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _mcp import main

if __name__ == "__main__":
    main(chaos=True)
