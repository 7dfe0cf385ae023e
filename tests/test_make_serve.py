"""`make serve` installs no system package silently (fake apt-get/sudo/pkg-config record calls)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def fakes(tmp_path: Path) -> tuple[Path, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    for name, code in (("pkg-config", 1), ("apt-get", 0), ("sudo", None)):
        script = bin_dir / name
        body = 'exec "$@"' if code is None else f"exit {code}"
        script.write_text(f'#!/bin/sh\necho "{name} $*" >> {calls}\n{body}\n')
        script.chmod(0o755)
    return bin_dir, calls


def make(bin_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    path = f"{bin_dir}:{os.path.dirname(shutil.which('make') or '/usr/bin/make')}:/usr/bin:/bin"
    return subprocess.run(["make", "-s", "-C", str(REPO), "system-deps"], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env={"PATH": path, "HOME": "/tmp", **env},
                          timeout=60, check=False)


def test_without_consent_nothing_is_installed_and_the_reason_is_said(fakes: tuple[Path, Path]) -> None:
    """Regression: `make serve` ran `apt-get install libsecret-1-dev` without a word."""
    bin_dir, calls = fakes
    proc = make(bin_dir)
    assert proc.returncode == 0, proc.stderr
    assert "azure-devops" in proc.stdout and "libsecret-1-dev" in proc.stdout
    assert "No other server needs them" in proc.stdout
    assert "ALLOW_SYSTEM_PACKAGES=1" in proc.stdout
    assert "apt-get" not in (calls.read_text() if calls.exists() else "")


def test_allow_system_packages_installs_them(fakes: tuple[Path, Path]) -> None:
    bin_dir, calls = fakes
    proc = make(bin_dir, ALLOW_SYSTEM_PACKAGES="1")
    assert proc.returncode == 0, proc.stderr
    assert "apt-get install -y -qq libsecret-1-dev pkg-config" in calls.read_text()
