"""The official MCP Python SDK (`mcp` 2.x) as the client, through `mcpctl connect`.

Both of its connect modes: `legacy` (initialize handshake) and the default `auto`, which probes
`server/discover` at 2026-07-28 first. And one real third-party server from npm behind the daemon.
"""

from __future__ import annotations

import json

import anyio
import pytest
from mcp import Client, StdioServerParameters

from .conftest import ECHO, MCPCTL, Daemon, MakeDaemon, everything_bin, server_toml
from .sdk import text_of

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def bridge(daemon: Daemon, name: str) -> StdioServerParameters:
    return StdioServerParameters(command=MCPCTL, args=["--socket", str(daemon.socket), "connect", name],
                                 env=daemon.env)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
@pytest.mark.parametrize("child_era", ["both", "legacy"])
async def test_sdk_client_through_connect(make_daemon: MakeDaemon, mode: str, child_era: str) -> None:
    daemon = make_daemon(server_toml("echo", ECHO, "--era", child_era))
    await anyio.to_thread.run_sync(lambda: daemon.wait_state("echo", "ready"))
    with anyio.fail_after(60):
        async with Client(bridge(daemon, "echo"), mode=mode) as client:
            tools = await client.list_tools()
            names = {tool.name for tool in tools.tools}
            assert {"echo", "add", "sleep"} <= names
            result = await client.call_tool("echo", {"text": f"via {mode}"})
            assert text_of(result) == f"via {mode}"
            assert not result.is_error
            added = await client.call_tool("add", {"a": 2, "b": 40})
            assert text_of(added) == "42"
            failing = await client.call_tool("fail", {})
            assert failing.is_error
            prompts = await client.list_prompts()
            assert prompts.prompts
            resources = await client.list_resources()
            assert resources.resources


async def test_sdk_clients_share_one_child_concurrently(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("echo"))
    entry = await anyio.to_thread.run_sync(lambda: daemon.wait_state("echo", "ready"))
    pids: list[str] = []

    async def one(n: int) -> None:
        async with Client(bridge(daemon, "echo"), mode="auto" if n % 2 else "legacy") as client:
            for i in range(5):
                result = await client.call_tool("echo", {"text": f"{n}:{i}"})
                assert text_of(result) == f"{n}:{i}"
            pids.append(text_of(await client.call_tool("pid", {})))

    with anyio.fail_after(90):
        async with anyio.create_task_group() as tg:
            for n in range(4):
                tg.start_soon(one, n)
    assert pids == [str(entry["pid"])] * 4


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_real_third_party_server_everything(make_daemon: MakeDaemon, mode: str) -> None:
    daemon = make_daemon(f'[servers.everything]\ncommand = "{everything_bin()}"\nargs = ["stdio"]\n')
    entry = await anyio.to_thread.run_sync(lambda: daemon.wait_state("everything", "ready", timeout=60))
    assert entry["tools"] >= 5
    with anyio.fail_after(60):
        async with Client(bridge(daemon, "everything"), mode=mode) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            assert "echo" in tools
            result = await client.call_tool("echo", {"message": "hello everything"})
            assert "hello everything" in text_of(result)
            prompts = await client.list_prompts()
            assert prompts.prompts
            resources = await client.list_resources()
            assert resources.resources
            first = resources.resources[0]
            read = await client.read_resource(first.uri)
            assert read.contents
    called = await anyio.to_thread.run_sync(
        lambda: daemon.ctl("call", "everything", "get-sum", json.dumps({"a": 2, "b": 3})))
    assert called.returncode == 0, called.stderr
    assert "5" in json.loads(called.stdout)["content"][0]["text"]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_connect_all_is_the_aggregate(make_daemon: MakeDaemon, mode: str) -> None:
    daemon = make_daemon(server_toml("echo", ECHO) + server_toml("other", ECHO, "--era", "legacy"))
    for name in ("echo", "other"):
        await anyio.to_thread.run_sync(daemon.wait_state, name, "ready")
    params = StdioServerParameters(command=MCPCTL, args=["--socket", str(daemon.socket), "connect", "--all"],
                                   env=daemon.env)
    with anyio.fail_after(60):
        async with Client(params, mode=mode) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert {"echo__echo", "other__add"} <= names
            assert text_of(await client.call_tool("other__add", {"a": 1, "b": 41})) == "42"
            prompts = {p.name for p in (await client.list_prompts()).prompts}
            assert "echo__greet" in prompts
