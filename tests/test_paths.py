"""Socket discovery from the environments clients start the bridge with."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor import paths

UID = 1000
RUNTIME = Path(f"/run/user/{UID}/mcp-supervisor/control.sock")
TMP = Path(f"/tmp/mcp-supervisor-{UID}/control.sock")



@pytest.mark.parametrize(("existing", "expected"), [
    ({RUNTIME, RUNTIME.parent.parent}, RUNTIME),             # a daemon there: found
    ({TMP, RUNTIME.parent.parent}, TMP),                     # only the /tmp one answers
    ({RUNTIME.parent.parent}, RUNTIME),                      # nothing yet: the runtime dir
    (set(), TMP),                                            # no /run/user/$UID at all
])
def test_without_xdg_runtime_dir_the_user_runtime_dir_is_tried(existing: set[Path], expected: Path) -> None:
    """Regression: a scrubbed client environment (no XDG_RUNTIME_DIR) looked only under /tmp."""
    env = {"HOME": "/home/x", "PATH": "/usr/bin"}
    assert paths.resolve_socket(None, env, exists=lambda p: p in existing, uid=UID) == expected


def test_explicit_and_environment_win() -> None:
    env = {"XDG_RUNTIME_DIR": "/r", "MCP_SUPERVISOR_SOCKET": "/s.sock"}
    assert paths.resolve_socket("/x.sock", env) == Path("/x.sock")
    assert paths.resolve_socket(None, env) == Path("/s.sock")
    assert paths.resolve_socket(None, {"XDG_RUNTIME_DIR": "/r"}) == Path("/r/mcp-supervisor/control.sock")


def test_root_uses_run_mcp_supervisor() -> None:
    assert paths.resolve_socket(None, {}, uid=0) == Path("/run/mcp-supervisor/control.sock")
