"""One module per `mcpctl` verb.

Each module defines `NAME`, `HELP`, `configure(parser)` and `run(args) -> int` (the exit code), and
imports nothing heavy at module level: `mcpctl connect` must start fast, and the CLI imports every
verb module to build its parser.
"""
