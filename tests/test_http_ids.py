"""Ids the HTTP door cannot use are refused at the door, in both eras (found by tests/test_fuzz.py).

A list or object id used to reach `session.calls[id]` (unhashable: a 500) or an error response that
echoes it (a deep one cannot be encoded again: a 500); now it is a 400 with -32600 and a null id,
and the door goes on serving.
"""

from __future__ import annotations

import json

import anyio
import httpx
import pytest

from .conftest import MakeDaemon, free_port, server_toml

pytestmark = pytest.mark.anyio

MODERN = "2026-07-28"
ENVELOPE = {"io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {}}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_http_door_refuses_list_object_and_deep_ids_with_400(make_daemon: MakeDaemon) -> None:
    """Legacy session requests and 2026-07-28 requests whose id is a list, an object, a float or a
    300-deep array get 400 / -32600 (id null), not a 500; a good call still answers after them."""
    port = free_port()
    daemon = make_daemon(f'[http]\nlisten = "127.0.0.1:{port}"\n' + server_toml("echo"))
    await anyio.to_thread.run_sync(lambda: daemon.wait_state("echo", "ready"))
    url = f"http://127.0.0.1:{port}/mcp/echo"
    deep = b"[" * 300 + b"0" + b"]" * 300
    async with httpx.AsyncClient(timeout=20) as client:
        init = await client.post(url, headers=HEADERS, json={
            "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t"}}})
        session = {**HEADERS, "Mcp-Session-Id": init.headers["mcp-session-id"]}
        modern = {**HEADERS, "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/list"}
        bad_ids = [b"[1]", b'{"a":1}', b"1.5", deep]
        for headers in (session, modern):
            for bad in bad_ids:
                body = (b'{"jsonrpc":"2.0","id":' + bad + b',"method":"tools/list","params":{"_meta":'
                        + json.dumps(ENVELOPE).encode() + b"}}")
                response = await client.post(url, headers=headers, content=body)
                assert response.status_code == 400, (bad[:20], response.status_code, response.text[:200])
                error = response.json()
                assert error["id"] is None and error["error"]["code"] == -32600, error
        good = await client.post(url, headers={**modern, "Mcp-Method": "tools/call", "Mcp-Name": "echo"},
                                 json={"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
                                     "name": "echo", "arguments": {"text": "still here"}, "_meta": ENVELOPE}})
        assert good.json()["result"]["content"][0]["text"] == "still here"
