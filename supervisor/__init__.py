"""mcp-supervisor: one daemon that runs, multiplexes and watches a fleet of stdio MCP servers."""

__version__ = "0.1.0"
