"""What the daemon publishes for `mcpctl top`, end to end against a real daemon and real children:
whole-tree CPU, log line times, state and restart history, and a masked config summary."""

from __future__ import annotations

from tests.conftest import CHAOS, server_toml, wait_for


def test_cpu_percent_is_sampled_for_every_server_not_only_autoscaled_ones(make_daemon):
    """The dashboard's CPU column: before, only autoscaled servers had their CPU sampled, so a
    plain server's `cpu_percent` stayed None forever. A child that keeps allocating (and touching)
    memory uses CPU, and its whole tree's share of a core shows up in `status`."""
    daemon = make_daemon(server_toml("busy", CHAOS, "--leak-mb-per-s", "20", memory_interval="200ms"))
    daemon.wait_state("busy", "ready")
    entry = wait_for(lambda: (s := daemon.status("busy"))["cpu_percent"] and s, 15,
                     what="a CPU figure for a server without autoscaling")
    assert isinstance(entry["cpu_percent"], float) and 0 < entry["cpu_percent"] < 400
