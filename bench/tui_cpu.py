"""CPU of `mcpctl top`: `python -m bench.tui_cpu [--seconds 20] [--select N] [--profile]`.

Serves the fake 27-server fleet (`python -m tui.fake SOCK`, one stats push a second plus a log
line for the followed server), runs `mcpctl top` against it in a 120x40 pty whose output is
drained (as a terminal would), lets it settle, then reads the dashboard's CPU time (user + system,
psutil) over `--seconds` and prints it as a percentage of one core. `--select N` presses `j` N
times first so a server mid-table is followed. `--profile` also samples the dashboard with py-spy
(`pip install '.[bench]'`) and prints the top frames. `--app-path DIR` runs the dashboard from
another checkout (say `git archive` of an older commit) against this fake, for a before/after.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import fcntl
import os
import pty
import shutil
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
MCPCTL = Path(sys.executable).with_name("mcpctl")


def _drain(fd: int, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            if not os.read(fd, 65536):
                return
        except OSError:
            return


def measure(seconds: float, settle: float, select: int, profile: bool, app_path: str | None = None) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        sock = Path(tmp) / "fake.sock"
        fake = subprocess.Popen([sys.executable, "-m", "tui.fake", str(sock)], cwd=REPO)
        try:
            deadline = time.monotonic() + 10
            while not sock.exists():
                if time.monotonic() > deadline:
                    raise SystemExit("the fake daemon did not start")
                time.sleep(0.05)
            pid, fd = pty.fork()
            if pid == 0:  # the child: the dashboard in a 120x40 terminal
                env = dict(os.environ, TERM="xterm-256color", COLUMNS="120", LINES="40")
                if app_path:  # another checkout's tui/ and supervisor/ (a before/after comparison)
                    env["PYTHONPATH"] = app_path
                os.execve(str(MCPCTL), [str(MCPCTL), "--socket", str(sock), "top"], env)
            fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
            stop = threading.Event()
            threading.Thread(target=_drain, args=(fd, stop), daemon=True).start()
            try:
                time.sleep(settle)
                for _ in range(select):
                    os.write(fd, b"j")
                    time.sleep(0.05)
                time.sleep(1)
                proc = psutil.Process(pid)
                spy = None
                if profile:
                    spy_bin = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
                    spy = subprocess.Popen(
                        [spy_bin, "record", "-p", str(pid), "-d", str(int(seconds)), "-f", "raw",
                         "-o", str(Path(tmp) / "stacks.txt"), "-r", "200", "--gil"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
                before = proc.cpu_times()
                time.sleep(seconds)
                after = proc.cpu_times()
                if spy is not None:
                    spy.wait(timeout=seconds + 30)
                    _print_top(Path(tmp) / "stacks.txt")
                used = (after.user - before.user) + (after.system - before.system)
                return 100.0 * used / seconds
            finally:
                os.write(fd, b"q")
                time.sleep(0.5)
                stop.set()
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 15)
                os.waitpid(pid, 0)
                os.close(fd)
        finally:
            fake.terminate()
            fake.wait(timeout=10)


def _print_top(stacks: Path, n: int = 30) -> None:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in stacks.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        samples = int(count)
        total += samples
        parts = frames.split(";")
        own[parts[-1]] += samples
        for frame in set(parts):
            inclusive[frame] += samples
    print(f"py-spy: {total} samples")
    print("-- own --")
    for frame, hits in own.most_common(n):
        print(f"{100 * hits / total:5.1f}%  {frame}")
    print("-- inclusive --")
    for frame, hits in inclusive.most_common(n):
        print(f"{100 * hits / total:5.1f}%  {frame}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=4.0, help="seconds before measuring")
    parser.add_argument("--select", type=int, default=0, help="press j this many times first")
    parser.add_argument("--profile", action="store_true", help="sample with py-spy as well")
    parser.add_argument("--app-path", metavar="DIR",
                        help="run the dashboard from this checkout (the fake fleet is always this one's)")
    args = parser.parse_args()
    cpu = measure(args.seconds, args.settle, args.select, args.profile, args.app_path)
    print(f"mcpctl top, 27 servers, 1 stats push/s, 120x40: {cpu:.1f}% of one core over {args.seconds:g} s")


if __name__ == "__main__":
    main()
