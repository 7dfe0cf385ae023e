"""Echo MCP test server: stdio, newline-delimited JSON-RPC, both protocol eras.

Run as `python tests/servers/echo_server.py [--name N] [--tools N] [--page-size N]
[--era both|legacy|modern] [--ttl-ms N]`.
See `_mcp.py` for the protocol behaviour and the tool list.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _mcp import main

if __name__ == "__main__":
    main(chaos=False)
