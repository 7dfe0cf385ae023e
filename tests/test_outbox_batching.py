"""Outbox write batching on both event loops, against real sockets.

A batch (`outbox.batch()` around a reader callback's routing) alone in its loop pass is written
before its callback returns; batches that end in the same pass share one write (on a loop that
shows no ready queue, uvloop: once a probing write found company). How many writes happen is the
contract; how long they take is measured in bench/, never here.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import anyio
import anyio.abc
import pytest

from supervisor.wire import fastio
from supervisor.wire.outbox import PROBE_EVERY, Outbox, batch

LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(
    not fastio.uvloop_installed(), reason="uvloop is not installed"))]


class _SocketSend(anyio.abc.ByteSendStream):
    """The pump's slow path: waits until the socket takes more."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    async def send(self, item: bytes) -> None:
        view = memoryview(item)
        while view:
            try:
                view = view[self.sock.send(view):]
            except BlockingIOError:
                await anyio.wait_writable(self.sock)

    async def aclose(self) -> None:
        pass


async def _pass_of(readers: int, outbox: Outbox, waited: list[bool]) -> None:
    """One loop pass in which `readers` reader callbacks each push a line to `outbox` inside a
    batch: their sockets are all readable before the loop next polls. `waited` gets, per batch,
    whether its line was still waiting when the batch ended (not written at once)."""
    loop = asyncio.get_running_loop()
    flushing = batch()
    pairs = [socket.socketpair() for _ in range(readers)]
    done = anyio.Event()
    left = [readers]
    try:
        def reader(sock: socket.socket) -> Callable[[], None]:
            def readable() -> None:
                loop.remove_reader(sock)
                sock.recv(16)
                with flushing:
                    outbox.push(b"line\n")
                waited.append(outbox.size > 0)
                left[0] -= 1
                if not left[0]:
                    done.set()
            return readable

        for _, theirs in pairs:
            theirs.send(b"x")
        for ours, _ in pairs:
            loop.add_reader(ours, reader(ours))
        with anyio.fail_after(20):
            await done.wait()
        await anyio.sleep(0.01)  # a write that waited for the end of the pass is done by now
    finally:
        for a, b in pairs:
            a.close()
            b.close()


Batching = tuple[list[int], list[list[bool]], bytes]


def _batching(name: str, passes: list[int]) -> Batching:
    """Run `passes` (readers per pass) against one outbox on the loop `name`: how many direct
    writes each pass took, per pass whether each batch's line waited, and all the peer got."""
    async def main() -> Batching:
        ours, peer = socket.socketpair()
        ours.setblocking(False)
        peer.setblocking(False)
        outbox = Outbox()
        writes: list[int] = []

        def send(data: bytes) -> int:
            writes.append(len(data))
            return ours.send(data)

        per_pass: list[int] = []
        waited: list[list[bool]] = []
        received = bytearray()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(outbox.pump, _SocketSend(ours), send)
                await anyio.sleep(0.01)
                for readers in passes:
                    before = len(writes)
                    waited.append([])
                    await _pass_of(readers, outbox, waited[-1])
                    per_pass.append(len(writes) - before)
                outbox.close()
            while True:
                try:
                    chunk = peer.recv(1 << 20)
                except BlockingIOError:
                    break
                if not chunk:
                    break
                received += chunk
        finally:
            ours.close()
            peer.close()
        return per_pass, waited, bytes(received)

    result: Batching = fastio.run(main, {fastio.LOOP_ENV: name})
    return result


@pytest.mark.parametrize("name", LOOPS)
def test_a_lone_batch_is_written_before_its_callback_returns(name: str) -> None:
    """One reader per pass (one call at a time): every batch is its own write, at once (on a loop
    that shows no ready queue, all but the one in PROBE_EVERY that waits to look for company)."""
    count = 2 * PROBE_EVERY
    per_pass, waited, received = _batching(name, [1] * count)
    assert received == b"line\n" * count
    assert per_pass == [1] * count
    waits = sum(w for (w,) in waited)
    assert waits == (0 if name == "asyncio" else count // PROBE_EVERY)


@pytest.mark.parametrize("name", LOOPS)
def test_batches_that_end_in_the_same_pass_share_one_write(name: str) -> None:
    """Twenty readers per pass (twenty connections busy at once): once the loop's state says so
    (asyncio's ready queue at once; uvloop after one probing write that found company), the whole
    pass is one write. Nothing is lost or reordered on the way."""
    readers = 20
    passes = [readers] * (PROBE_EVERY // readers + 3)
    per_pass, _, received = _batching(name, passes)
    assert received == b"line\n" * (readers * len(passes))
    assert per_pass[-1] == 1, per_pass
    assert sum(per_pass) < readers * len(passes) / 2, per_pass


@pytest.mark.parametrize("name", LOOPS)
def test_after_the_load_goes_a_lone_batch_is_written_at_once_again(name: str) -> None:
    per_pass, waited, _ = _batching(name, [20, 20, 20, 1, 1, 1])
    assert per_pass[-3:] == [1, 1, 1], per_pass
    assert waited[-2:] == [[False], [False]], waited
