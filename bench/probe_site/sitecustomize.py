"""Bench-only: `python -m bench --probe` puts this directory on a daemon's PYTHONPATH so the
interpreter runs this at start-up; it installs `bench.loop_probe` (which does nothing unless
MCP_SUPERVISOR_BENCH_PROBE is set, and removes it so the daemon's children are not probed)."""

from bench import loop_probe

loop_probe.install()
