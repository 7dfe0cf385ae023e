"""SocketDaemonClient over a real Unix socket: the fake fleet served with the daemon's wire format,
plus one hand-written misbehaving server per failure mode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from pathlib import Path

import anyio
import orjson
import pytest
from anyio.abc import SocketStream

from tui.client import DaemonUnavailable, Fleet, RemoteError, SocketDaemonClient
from tui.fake import NAMES, FakeDaemonClient, serve_fake, wait_until

from .raw_socket import raw_server

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def fake_daemon(sock: Path, fake: FakeDaemonClient) -> AsyncIterator[FakeDaemonClient]:
    async with anyio.create_task_group() as tg:
        await tg.start(serve_fake, sock, fake)
        yield fake
        # Let each connection see its client hang up before cancelling the server: cancelling a
        # read on an asyncio UNIX stream in the loop iteration the peer's EOF arrives makes anyio's
        # reader callback set a result on the cancelled future (InvalidStateError in a callback).
        await wait_until(lambda: fake.connections == 0)
        tg.cancel_scope.cancel()


async def test_requests_round_trip(sock: Path) -> None:
    with anyio.fail_after(10):
        async with fake_daemon(sock, FakeDaemonClient()) as fake:
            client = SocketDaemonClient(sock)
            status = await client.status()
            assert len(status["servers"]) == 27
            assert status["daemon"]["pid"] == 4242
            last = (await client.logs("git", 3))[-1]
            assert last.line.endswith("handled request 39 in 26 ms") and last.level == "info"
            assert last.at == fake.now - 15 - 1  # the time the daemon sent with it
            assert (await client.logs("git", 40))[5].level == "error"  # read from "ERROR ..." itself
            detail = await client.detail("git")
            assert detail["restart_history"] and detail["config"]["env"]["API_KEY"] == "***"
            assert await client.clear_cache("git") == 12 and await client.clear_cache(None) == 412
            assert (await client.reload())["removed"] == []
            assert [t["name"] for t in await client.tools("time")][:2] == ["get_time_0", "list_time_1"]
            await client.restart(["git", "fetch"])
            await client.stop(Fleet.ALL)
            await client.start(["notion"])
            assert fake.calls[-3:] == [("restart", ["git", "fetch"]), ("stop", "all"), ("start", ["notion"])]


async def test_error_answers_are_daemon_errors(sock: Path) -> None:
    with anyio.fail_after(10):
        async with fake_daemon(sock, FakeDaemonClient()):
            client = SocketDaemonClient(sock)
            with pytest.raises(RemoteError, match="no server named 'nope'") as caught:
                await client.logs("nope", 5)
            assert caught.value.code == -32005


async def test_events_yield_pushed_notifications_and_only_followed_logs(sock: Path) -> None:
    with anyio.fail_after(10):
        async with fake_daemon(sock, FakeDaemonClient(history=2)) as fake:
            client = SocketDaemonClient(sock)
            async with aclosing(client.events(["git"])) as events:
                first = await anext(events)
                assert first["type"] == "stats" and len(first["servers"]) == 27
                assert (await anext(events))["type"] == "stats"
                fake.push({"type": "log", "server": "fetch", "line": "not followed"})
                fake.push({"type": "log", "server": "git", "line": "followed"})
                assert await anext(events) == {"type": "log", "server": "git", "line": "followed"}


async def test_no_socket_is_daemon_unavailable(sock: Path) -> None:
    client = SocketDaemonClient(sock)
    with pytest.raises(DaemonUnavailable, match="no socket") as caught:
        await client.status()
    assert str(caught.value) == f"daemon not running at {sock}: no socket"
    with pytest.raises(DaemonUnavailable):
        async with aclosing(client.events()) as events:
            await anext(events)


async def test_stale_socket_file_is_connection_refused(sock: Path) -> None:
    listener = await anyio.create_unix_listener(sock)
    await listener.aclose()  # leaves the file behind, like a daemon killed with -9
    sock.touch(exist_ok=True)
    with pytest.raises(DaemonUnavailable, match="connection refused"):
        await SocketDaemonClient(sock).status()


async def test_daemon_dying_mid_request_is_daemon_unavailable(sock: Path) -> None:
    async def hang_up(stream: SocketStream) -> None:
        await stream.receive()
        await stream.aclose()

    with anyio.fail_after(10):
        async with raw_server(sock, hang_up):
            with pytest.raises(DaemonUnavailable, match="closed the connection"):
                await SocketDaemonClient(sock).status()


async def test_a_silent_daemon_times_out(sock: Path) -> None:
    async def mute(stream: SocketStream) -> None:
        await anyio.sleep_forever()

    with anyio.fail_after(10):
        async with raw_server(sock, mute):
            with pytest.raises(DaemonUnavailable, match=r"no answer to supervisor/status within 0\.2 s"):
                await SocketDaemonClient(sock, timeout=0.2).status()


async def test_a_subscription_that_goes_quiet_ends_with_daemon_unavailable(sock: Path) -> None:
    async def subscribe_then_mute(stream: SocketStream) -> None:
        request = orjson.loads(await stream.receive())
        reply = {"jsonrpc": "2.0", "id": request["id"], "result": {"subscribed": True}}
        await stream.send(orjson.dumps(reply) + b"\n")
        await anyio.sleep_forever()

    with anyio.fail_after(10):
        async with raw_server(sock, subscribe_then_mute):
            client = SocketDaemonClient(sock, event_timeout=0.2)
            with pytest.raises(DaemonUnavailable, match=r"no events for 0\.2 s"):
                async with aclosing(client.events()) as events:
                    await anext(events)


async def test_garbage_is_daemon_unavailable_not_a_decode_error(sock: Path) -> None:
    async def garbage(stream: SocketStream) -> None:
        await stream.receive()
        await stream.send(b"<html>hello</html>\n")
        await anyio.sleep_forever()

    with anyio.fail_after(10):
        async with raw_server(sock, garbage):
            with pytest.raises(DaemonUnavailable, match="not JSON"):
                await SocketDaemonClient(sock).status()


async def test_switching_selection_fast_while_logs_stream_never_cancels_a_socket_read(sock: Path) -> None:
    """The log tail follows the selected server on its own subscription. Cancelling that read
    as a line arrives made anyio's reader callback set a result on a cancelled future
    (InvalidStateError, reported to the loop's exception handler); the app now ends an old tail
    between two events instead. A line and a stats push every 50 ms, the selection moving every 5 ms."""
    import asyncio

    from tui.app import TopApp
    from tui.fake import NOW
    from tui.logview import LogLines
    from tui.table import FleetGrid

    loop_errors: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: loop_errors.append(context))
    fake = FakeDaemonClient(names=NAMES[:6], tick=0.05)  # few servers: the fake shares the app's loop
    async with fake_daemon(sock, fake):
        app = TopApp(SocketDaemonClient(sock), clock=lambda: NOW)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(lambda: app.connected and app.selected == "filesystem", within=10)
            table = app.query_one("#servers", FleetGrid)
            for step in range(60):  # not pilot.press: it waits for a busy app to go idle
                table.action_move(1 if step % 7 < 4 else -1)
                await anyio.sleep(0.005)
            await pilot.pause()
            final = app.selected
            assert final is not None
            log = app.query_one("#log", LogLines)
            await wait_until(lambda: any("tick" in e.line for e in list(log.entries)[40:]), within=10)
            # Only the selected server's tail is left: the feed and one log subscription.
            await wait_until(lambda: fake.connections == 2, within=10)
            assert {e.server for e in log.entries} == {final}
            assert all(final in e.line for e in list(log.entries)[:40])
            assert app.is_running
        await wait_until(lambda: fake.connections == 0, within=10)
    assert loop_errors == []
