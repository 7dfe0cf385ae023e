"""The Streamable HTTP door, driven by the official SDK (`mcp` 2.x) and by raw httpx requests.

A real daemon (`mcpctl serve`) with a real uvicorn on a free port; real children (our echo server,
and `@modelcontextprotocol/server-everything` from npm). Both SDK connect modes: `legacy`
(initialize + Mcp-Session-Id) and the default `auto` (stateless 2026-07-28 after a discover probe).
"""

from __future__ import annotations

import functools
import json
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client, MCPError

from .conftest import ECHO, Daemon, MakeDaemon, everything_bin, free_port, server_toml
from .sdk import text_of

pytestmark = pytest.mark.anyio

MODERN = "2026-07-28"
ENVELOPE = {"io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"}}
ACCEPT = "application/json, text/event-stream"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def http_toml(port: int, **keys: str) -> str:
    lines = ["[http]", f'listen = "127.0.0.1:{port}"']
    lines += [f'{key} = "{value}"' for key, value in keys.items()]
    return "\n".join(lines) + "\n"


class Door:
    def __init__(self, daemon: Daemon, port: int) -> None:
        self.daemon = daemon
        self.port = port
        self.base = f"http://127.0.0.1:{port}"

    def url(self, name: str | None = None) -> str:
        return f"{self.base}/mcp/{name}" if name else f"{self.base}/mcp"


async def start_door(make_daemon: MakeDaemon, servers: str, wait: tuple[str, ...] = ("echo",),
                     **http_keys: str) -> Door:
    port = free_port()
    daemon = make_daemon(http_toml(port, **http_keys) + servers)
    for name in wait:
        await anyio.to_thread.run_sync(functools.partial(daemon.wait_state, name, "ready", timeout=60))
    return Door(daemon, port)


def modern_headers(method: str, name: str | None = None) -> dict[str, str]:
    headers = {"accept": ACCEPT, "content-type": "application/json", "mcp-protocol-version": MODERN,
               "mcp-method": method}
    if name is not None:
        headers["mcp-name"] = name
    return headers


def modern_call(msg_id: Any, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments, "_meta": ENVELOPE}}


async def legacy_session(http: httpx.AsyncClient, url: str) -> dict[str, str]:
    reply = await http.post(url, headers={"accept": ACCEPT, "content-type": "application/json"}, json={
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "raw", "version": "1"}}})
    assert reply.status_code == 200, reply.text
    sid = reply.headers["mcp-session-id"]
    headers = {"accept": ACCEPT, "content-type": "application/json", "mcp-session-id": sid,
               "mcp-protocol-version": "2025-06-18"}
    done = await http.post(url, headers=headers,
                           json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert done.status_code == 202
    return headers


# ---- the official SDK ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_sdk_per_server_and_aggregate(make_daemon: MakeDaemon, mode: str) -> None:
    servers = server_toml("echo", ECHO) + server_toml("other", ECHO, "--era", "legacy")
    door = await start_door(make_daemon, servers, wait=("echo", "other"))
    reported: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reported.append(progress)

    with anyio.fail_after(60):
        async with Client(door.url("echo"), mode=mode) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert {"echo", "add", "sleep", "cancelled"} <= names
            result = await client.call_tool("echo", {"text": f"over http, {mode}"})
            assert text_of(result) == f"over http, {mode}"
            assert text_of(await client.call_tool("add", {"a": 2, "b": 40})) == "42"
            assert (await client.call_tool("fail", {})).is_error
            slept = await client.call_tool("sleep", {"seconds": 0.3}, progress_callback=on_progress)
            assert text_of(slept) == "slept"
            assert reported == [1, 2, 3]
            resources = (await client.list_resources()).resources
            assert {str(r.uri) for r in resources} == {"test://hello", "test://info"}
            read = await client.read_resource("test://hello")
            assert read.contents
            prompts = (await client.list_prompts()).prompts
            assert {p.name for p in prompts} == {"greet", "plain"}
            got = await client.get_prompt("greet", {"name": "Ada"})
            assert "Ada" in json.dumps(got.model_dump())

        reported.clear()
        async with Client(door.url(), mode=mode) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert {"echo__echo", "other__echo", "echo__sleep", "other__add"} <= names
            assert text_of(await client.call_tool("other__add", {"a": 1, "b": 2})) == "3"
            assert text_of(await client.call_tool("echo__echo", {"text": "agg"})) == "agg"
            slept = await client.call_tool("other__sleep", {"seconds": 0.3}, progress_callback=on_progress)
            assert text_of(slept) == "slept" and reported == [1, 2, 3]
            with pytest.raises(MCPError, match="Unknown tool 'nosuch__echo'"):
                await client.call_tool("nosuch__echo", {"text": "x"})
            prompt_names = {p.name for p in (await client.list_prompts()).prompts}
            assert {"echo__greet", "other__plain"} <= prompt_names
            got = await client.get_prompt("other__greet", {"name": "Grace"})
            assert "Grace" in json.dumps(got.model_dump())
            resources = (await client.list_resources()).resources
            assert {r.name for r in resources} >= {"echo__hello", "other__info"}
            # The same URI from two servers is ambiguous unless prefixed with SERVER__.
            read = await client.read_resource("other__test://hello")
            assert read.contents
            templates = (await client.list_resource_templates()).resource_templates
            assert {t.name for t in templates} == {"echo__echo", "other__echo"}


async def test_sdk_cancellation_reaches_the_child(make_daemon: MakeDaemon) -> None:
    """Cancelling a call in the SDK (legacy: notifications/cancelled; modern: closing the
    stream) must reach the child as notifications/cancelled, and the door keeps serving."""
    door = await start_door(make_daemon, server_toml("echo", ECHO))
    for mode in ("legacy", "auto"):
        async with Client(door.url("echo"), mode=mode) as client:
            with anyio.move_on_after(0.5):
                await client.call_tool("sleep", {"seconds": 30})

            async def cancelled_ids() -> list[Any]:
                text = text_of(await client.call_tool("cancelled", {}))
                ids: list[Any] = json.loads(text)
                return ids

            with anyio.fail_after(10):
                while not await cancelled_ids():
                    await anyio.sleep(0.05)
            assert text_of(await client.call_tool("echo", {"text": "still here"})) == "still here"
        # one per mode; the child's list accumulates
    async with Client(door.url("echo"), mode="legacy") as client:
        assert len(json.loads(text_of(await client.call_tool("cancelled", {})))) == 2


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_server_everything_over_http(make_daemon: MakeDaemon, mode: str) -> None:
    servers = f'[servers.everything]\ncommand = "{everything_bin()}"\nargs = ["stdio"]\n'
    door = await start_door(make_daemon, servers, wait=("everything",))
    reported: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reported.append(progress)

    with anyio.fail_after(90):
        async with Client(door.url("everything"), mode=mode) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            assert {"echo", "get-sum"} <= tools
            result = await client.call_tool("echo", {"message": "hello everything"})
            assert "hello everything" in text_of(result)
            summed = await client.call_tool("get-sum", {"a": 2, "b": 3})
            assert "5" in text_of(summed)
            long_op = next(t for t in tools if "long" in t)
            done = await client.call_tool(long_op, {"duration": 1, "steps": 3}, progress_callback=on_progress)
            assert not done.is_error
            assert reported, "the long-running operation reported no progress"
            prompts = (await client.list_prompts()).prompts
            assert prompts
            resources = (await client.list_resources()).resources
            assert resources
            read = await client.read_resource(resources[0].uri)
            assert read.contents
        async with Client(door.url(), mode=mode) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            assert "everything__echo" in tools
            result = await client.call_tool("everything__echo", {"message": "via aggregate"})
            assert "via aggregate" in text_of(result)
            resources = (await client.list_resources()).resources
            read = await client.read_resource(resources[0].uri)  # routed by the URI it listed
            assert read.contents


# ---- raw HTTP: the protocol edges ------------------------------------------------------------------


async def test_bad_input(make_daemon: MakeDaemon) -> None:
    door = await start_door(make_daemon, server_toml("echo", ECHO), max_body="64KiB")
    url = door.url("echo")
    async with httpx.AsyncClient(timeout=30) as http:
        json_headers = {"accept": ACCEPT, "content-type": "application/json"}
        bad = await http.post(url, headers=json_headers, content=b"{not json")
        assert bad.status_code == 400 and bad.json()["error"]["code"] == -32700
        bad = await http.post(url, headers=json_headers, content=b"[1, 2]")
        assert bad.status_code == 400 and bad.json()["error"]["code"] == -32600
        bad = await http.post(url, headers=modern_headers("nosuch/method"), json={
            "jsonrpc": "2.0", "id": 1, "method": "nosuch/method", "params": {"_meta": ENVELOPE}})
        assert bad.json()["error"]["code"] == -32601
        big = await http.post(url, headers=modern_headers("tools/call", "echo"),
                              json=modern_call(1, "echo", {"text": "x" * 100_000}))
        assert big.status_code == 413
        wrong = await http.post(url, headers={"accept": ACCEPT, "content-type": "text/plain"}, content=b"{}")
        assert wrong.status_code == 415
        # Legacy session rules.
        missing = await http.post(url, headers=json_headers, json={"jsonrpc": "2.0", "id": 1,
                                                                   "method": "tools/list"})
        assert missing.status_code == 400
        unknown = await http.post(url, headers={**json_headers, "mcp-session-id": "nope"},
                                  json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert unknown.status_code == 404
        headers = await legacy_session(http, url)
        listed = await http.post(url, headers=headers,
                                 json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        assert listed.status_code == 200 and listed.json()["result"]["tools"]
        other = await http.post(door.url(), headers=headers,
                                json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        assert other.status_code == 404, "a session belongs to the endpoint that opened it"
        version = await http.post(url, headers={**headers, "mcp-protocol-version": "1999-01-01"},
                                  json={"jsonrpc": "2.0", "id": 3, "method": "tools/list"})
        assert version.status_code == 400 and version.json()["error"]["code"] == -32022
        ended = await http.delete(url, headers=headers)
        assert ended.status_code == 200
        gone = await http.post(url, headers=headers, json={"jsonrpc": "2.0", "id": 4, "method": "tools/list"})
        assert gone.status_code == 404
        # Modern header checks.
        mismatch = await http.post(url, headers=modern_headers("tools/list"),
                                   json=modern_call(5, "echo", {"text": "x"}))
        assert mismatch.status_code == 400 and mismatch.json()["error"]["code"] == -32020
        mismatch = await http.post(url, headers=modern_headers("tools/call", "add"),
                                   json=modern_call(6, "echo", {"text": "x"}))
        assert mismatch.status_code == 400 and mismatch.json()["error"]["code"] == -32020
        ok = await http.post(url, headers=modern_headers("tools/call", "echo"),
                             json=modern_call(7, "echo", {"text": "fine"}))
        assert ok.status_code == 200 and ok.json()["result"]["content"][0]["text"] == "fine"
        assert ok.json()["id"] == 7
        # Origin and unknown server.
        foreign = await http.post(url, headers={**modern_headers("tools/call", "echo"),
                                                "origin": "https://evil.example"},
                                  json=modern_call(8, "echo", {"text": "x"}))
        assert foreign.status_code == 403
        local = await http.post(url, headers={**modern_headers("tools/call", "echo"),
                                              "origin": "http://localhost:3000"},
                                json=modern_call(9, "echo", {"text": "x"}))
        assert local.status_code == 200
        nosuch = await http.post(door.url("nosuch"), headers=modern_headers("tools/list"),
                                 json={"jsonrpc": "2.0", "id": 1, "method": "tools/list",
                                       "params": {"_meta": ENVELOPE}})
        assert nosuch.status_code == 404
        health = await http.get(f"{door.base}/healthz")
        assert health.status_code == 200
        assert health.json() == {"status": "ok", "ready": 1, "total": 1, "in_flight": 0}


async def test_bearer_token(make_daemon: MakeDaemon) -> None:
    door = await start_door(make_daemon, server_toml("echo", ECHO), token="s3cret-token")
    url = door.url("echo")
    body = modern_call(1, "echo", {"text": "x"})
    async with httpx.AsyncClient(timeout=30) as http:
        none = await http.post(url, headers=modern_headers("tools/call", "echo"), json=body)
        assert none.status_code == 401 and none.headers["www-authenticate"].startswith("Bearer")
        wrong = await http.post(url, headers={**modern_headers("tools/call", "echo"),
                                              "authorization": "Bearer nope"}, json=body)
        assert wrong.status_code == 401
        right = await http.post(url, headers={**modern_headers("tools/call", "echo"),
                                              "authorization": "Bearer s3cret-token"}, json=body)
        assert right.status_code == 200 and right.json()["result"]["content"][0]["text"] == "x"
    assert "s3cret-token" not in door.daemon.log_text()


async def test_client_disconnect_mid_call_cancels_in_the_child(make_daemon: MakeDaemon) -> None:
    door = await start_door(make_daemon, server_toml("echo", ECHO))
    url = door.url("echo")
    async with httpx.AsyncClient(timeout=30) as http:
        # A modern call whose client goes away: the child must hear notifications/cancelled.
        with anyio.move_on_after(0.5):
            await http.post(url, headers=modern_headers("tools/call", "sleep"),
                            json=modern_call("gone-1", "sleep", {"seconds": 30}))
        # A legacy call, same story, while another client keeps working.
        headers = await legacy_session(http, url)
        with anyio.move_on_after(0.5):
            await http.post(url, headers=headers, json={
                "jsonrpc": "2.0", "id": "gone-2", "method": "tools/call",
                "params": {"name": "sleep", "arguments": {"seconds": 30}}})

        async def cancelled() -> list[Any]:
            reply = await http.post(url, headers=modern_headers("tools/call", "cancelled"),
                                    json=modern_call(1, "cancelled", {}))
            ids: list[Any] = json.loads(reply.json()["result"]["content"][0]["text"])
            return ids

        with anyio.fail_after(10):
            while len(await cancelled()) < 2:
                await anyio.sleep(0.05)
        ok = await http.post(url, headers=modern_headers("tools/call", "echo"),
                             json=modern_call(2, "echo", {"text": "unaffected"}))
        assert ok.json()["result"]["content"][0]["text"] == "unaffected"
    status = await anyio.to_thread.run_sync(lambda: door.daemon.status("echo"))
    assert status["state"] == "ready" and status["in_flight"] == 0


async def test_list_changed_reaches_get_stream_and_listen(make_daemon: MakeDaemon) -> None:
    door = await start_door(make_daemon, server_toml("echo", ECHO))
    url = door.url("echo")
    async with httpx.AsyncClient(timeout=30) as http:
        headers = await legacy_session(http, url)
        listen_body = {"jsonrpc": "2.0", "id": "L1", "method": "subscriptions/listen",
                       "params": {"notifications": {"toolsListChanged": True}, "_meta": ENVELOPE}}
        seen_get: list[dict[str, Any]] = []
        seen_listen: list[dict[str, Any]] = []
        got_both = anyio.Event()

        async def read(stream: httpx.Response, into: list[dict[str, Any]]) -> None:
            async for line in stream.aiter_lines():
                if line.startswith("data: "):
                    into.append(json.loads(line[6:]))
                    changed = "notifications/tools/list_changed"
                    if any(m.get("method") == changed for m in seen_get) and any(
                            m.get("method") == changed for m in seen_listen):
                        got_both.set()

        with anyio.fail_after(20):
            async with http.stream("GET", url, headers={**headers, "accept": "text/event-stream"}) as get, \
                    http.stream("POST", url, headers=modern_headers("subscriptions/listen"),
                                json=listen_body) as listen, anyio.create_task_group() as tg:
                assert get.status_code == 200 and listen.status_code == 200
                tg.start_soon(read, get, seen_get)
                tg.start_soon(read, listen, seen_listen)
                while not seen_listen:
                    await anyio.sleep(0.02)
                poke = await http.post(url, headers=modern_headers("tools/call", "notify"),
                                       json=modern_call(1, "notify", {"kind": "tools"}))
                assert poke.status_code == 200
                await got_both.wait()
                tg.cancel_scope.cancel()
    assert seen_listen[0]["method"] == "notifications/subscriptions/acknowledged"
    changed = next(m for m in seen_listen if m["method"] == "notifications/tools/list_changed")
    assert changed["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"] == "L1"


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_load_500_clients(make_daemon: MakeDaemon) -> None:
    """500 concurrent HTTP clients x 20 calls on two instances: every call answered with its own
    text, and the only errors allowed are explicit 'server busy' ones. Each client has its own
    connection (httpx's shared pool costs more CPU than the door does at this width)."""
    door = await start_door(make_daemon, server_toml("echo", ECHO, instances=2, max_queue=4096))
    url = door.url("echo")
    answered = 0
    busy = 0
    wrong: list[Any] = []

    async def client(n: int) -> None:
        nonlocal answered, busy
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(timeout=120, limits=limits) as http:
            for i in range(20):
                text = f"{n}:{i}"
                reply = await http.post(url, headers=modern_headers("tools/call", "echo"),
                                        json=modern_call(i, "echo", {"text": text}))
                body = reply.json()
                if "error" in body:
                    if body["error"]["code"] == -32000 and "busy" in body["error"]["message"]:
                        busy += 1
                        continue
                    wrong.append(body)
                elif body["id"] != i or body["result"]["content"][0]["text"] != text:
                    wrong.append(body)
                else:
                    answered += 1

    with anyio.fail_after(240):
        async with anyio.create_task_group() as tg:
            for n in range(500):
                tg.start_soon(client, n)
    assert not wrong, wrong[:3]
    assert answered + busy == 500 * 20
    assert answered > 0
    status = await anyio.to_thread.run_sync(lambda: door.daemon.status("echo"))
    assert status["in_flight"] == 0 and status["queued"] == 0


async def test_metrics_endpoint_behind_the_token(make_daemon: MakeDaemon) -> None:
    door = await start_door(make_daemon, server_toml("echo"), token="s3cret-metrics-token")
    auth = {"Authorization": "Bearer s3cret-metrics-token"}
    async with httpx.AsyncClient(timeout=30) as http:
        assert (await http.get(f"{door.base}/metrics")).status_code == 401
        for i in range(3):
            reply = await http.post(door.url("echo"),
                                    headers={**auth, **modern_headers("tools/call", "echo")},
                                    json=modern_call(i, "echo", {"text": "m"}))
            assert reply.status_code == 200
        scraped = await http.get(f"{door.base}/metrics", headers=auth)
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    from prometheus_client.parser import text_string_to_metric_families
    families = {f.name: f for f in text_string_to_metric_families(scraped.text)}
    calls = [s for s in families["mcp_supervisor_requests"].samples
             if s.labels.get("server") == "echo" and s.labels.get("method") == "tools/call"
             and s.name.endswith("_total")]
    assert sum(s.value for s in calls) >= 3


async def test_http_client_rate_limit_is_per_token(make_daemon: MakeDaemon) -> None:
    clients = ('[clients.ci]\ntoken = "ci-token-123456"\nrate_limit = "2/min"\n'
               '[clients.dev]\ntoken = "dev-token-123456"\n')
    door = await start_door(make_daemon, clients + server_toml("echo"))
    async with httpx.AsyncClient(timeout=30) as http:
        async def call(token: str, i: int) -> httpx.Response:
            return await http.post(door.url("echo"),
                                   headers={"Authorization": f"Bearer {token}",
                                            **modern_headers("tools/call", "echo")},
                                   json=modern_call(i, "echo", {"text": "r"}))
        ci = [await call("ci-token-123456", i) for i in range(3)]
        dev = [await call("dev-token-123456", i) for i in range(5)]
    assert [r.status_code for r in ci] == [200, 200, 429]
    refusal = ci[2].json()["error"]
    assert refusal["code"] == -32007 and "client 'ci'" in refusal["message"]
    assert int(ci[2].headers["retry-after"]) >= 1
    assert all(r.status_code == 200 for r in dev)
