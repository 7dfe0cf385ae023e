"""Input-required translation (SEP-2322): a legacy child asks, a 2026-07-28 client answers.

The child is tests/servers/conformance_server.py (legacy era only): its tools send
`elicitation/create`, `sampling/createMessage` and `roots/list` and wait. The official SDK
(`mcp` 2.3.0, default mode: stateless 2026-07-28) talks to the daemon's HTTP door and drives the
InputRequiredResult rounds with its callbacks; raw httpx requests check the edges (state tampering,
capabilities, a retry that never comes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp_types as types
import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.client import ClientRequestContext
from pydantic import FileUrl

from .conftest import MCPCTL, SERVERS, Daemon, MakeDaemon, free_port, server_toml, wait_for
from .sdk import text_of
from .test_http import ACCEPT, MODERN

pytestmark = pytest.mark.anyio

CHILD = SERVERS / "conformance_server.py"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def start(make_daemon: MakeDaemon, door: str = "/mcp/conf", prefix: str = "on-collision",
          **keys: Any) -> tuple[Daemon, str]:
    """A daemon whose one server `conf` is the conformance child; the URL of `door` (the
    per-server door, or the aggregate `/mcp` with `[aggregate] prefix`)."""
    port = free_port()
    daemon = make_daemon(f'[http]\nlisten = "127.0.0.1:{port}"\n[aggregate]\nprefix = "{prefix}"\n'
                         + server_toml("conf", CHILD, **keys))
    daemon.wait_state("conf", "ready")
    return daemon, f"http://127.0.0.1:{port}{door}"


# The per-server door and the aggregate, whose tools keep their names (one server: no collision).
DOORS = [pytest.param("/mcp/conf", id="per-server"), pytest.param("/mcp", id="aggregate")]


async def elicit(context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
    schema = (params.requested_schema if isinstance(params, types.ElicitRequestFormParams) else None) or {}
    field = next(iter(schema.get("properties") or {"name": None}))
    return types.ElicitResult(action="accept", content={field: f"answer-to-{field}"})


async def sample(context: ClientRequestContext,
                 params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
    return types.CreateMessageResult(role="assistant", model="test-model",
                                     content=types.TextContent(type="text", text="Paris"))


async def roots(context: ClientRequestContext) -> types.ListRootsResult:
    return types.ListRootsResult(roots=[types.Root(uri=FileUrl("file:///work/project"), name="project")])


@pytest.mark.parametrize(("door", "prefix", "named"), [
    pytest.param("/mcp/conf", "on-collision", "", id="per-server"),
    pytest.param("/mcp", "on-collision", "", id="aggregate"),
    pytest.param("/mcp", "always", "conf__", id="aggregate-prefixed"),
])
async def test_sdk_client_answers_a_legacy_childs_questions_over_http(
        make_daemon: MakeDaemon, door: str, prefix: str, named: str) -> None:
    """The SDK's default (2026-07-28) client gets InputRequiredResults for the child's
    elicitation, sampling and roots requests, answers them, and receives the child's final result;
    three requests at once, and two rounds one after the other, both work. Through the aggregate
    too, with the child's names and with aggregate names (`conf__tool`, rewritten before the child
    sees the call: the retry carries the public name and still resumes the child's call)."""
    _, url = start(make_daemon, door, prefix)
    with anyio.fail_after(60):
        async with Client(url, elicitation_callback=elicit, sampling_callback=sample,
                          list_roots_callback=roots) as client:
            assert client.session.discover_result is not None  # the stateless era, not initialize
            hello = await client.call_tool(f"{named}test_input_required_result_elicitation", {})
            assert text_of(hello) == "Hello, answer-to-name!"
            said = await client.call_tool(f"{named}test_input_required_result_sampling", {})
            assert text_of(said) == "The model said: Paris"
            listed = await client.call_tool(f"{named}test_input_required_result_list_roots", {})
            assert text_of(listed) == "Roots: file:///work/project"
            every = await client.call_tool(f"{named}test_input_required_result_multiple_inputs", {})
            text = text_of(every)
            assert "answer-to-name" in text and "Paris" in text and "file:///work/project" in text
            rounds = await client.call_tool(f"{named}test_input_required_result_multi_round", {})
            assert text_of(rounds) == "answer-to-name's favorite color is answer-to-color"
            prompt = await client.get_prompt(f"{named}test_input_required_result_prompt", {})
            content = prompt.messages[0].content
            assert isinstance(content, types.TextContent), content
            assert content.text == "Use this context: answer-to-context"


@pytest.mark.parametrize("target", [pytest.param(["conf"], id="connect-NAME"),
                                    pytest.param(["--all"], id="connect-all")])
async def test_sdk_client_answers_a_legacy_childs_questions_through_the_bridge(
        make_daemon: MakeDaemon, target: list[str]) -> None:
    """The same rounds through `mcpctl connect` (the SDK's default 2026-07-28 mode over stdio),
    to the server and to the aggregate (`connect --all`): the daemon answers input_required on
    the bridge's stream, and the retry resumes the child."""
    daemon, _ = start(make_daemon)
    params = StdioServerParameters(command=MCPCTL, args=["--socket", str(daemon.socket), "connect", *target],
                                   env=daemon.env)
    with anyio.fail_after(60):
        async with Client(params, elicitation_callback=elicit, sampling_callback=sample,
                          list_roots_callback=roots) as client:
            assert client.session.discover_result is not None
            every = await client.call_tool("test_input_required_result_multiple_inputs", {})
            text = text_of(every)
            assert "answer-to-name" in text and "Paris" in text and "file:///work/project" in text
            rounds = await client.call_tool("test_input_required_result_multi_round", {})
            assert text_of(rounds) == "answer-to-name's favorite color is answer-to-color"
        async with Client(params) as bare:  # declares neither elicitation nor sampling
            with pytest.raises(MCPError) as raised:
                await bare.call_tool("test_input_required_result_elicitation", {})
            assert raised.value.error.code == -32021
    wait_for(lambda: daemon.status("conf")["in_flight"] == 0, 10, what="every call to end")


def envelope(capabilities: dict[str, Any]) -> dict[str, Any]:
    return {"io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": capabilities,
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"}}


async def call(http: httpx.AsyncClient, url: str, tool: str, capabilities: dict[str, Any],
               **extra: Any) -> tuple[int, dict[str, Any]]:
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": tool, "arguments": {}, "_meta": envelope(capabilities), **extra}}
    response = await http.post(url, json=body, headers={
        "Accept": ACCEPT, "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": tool})
    return response.status_code, response.json()


@pytest.mark.parametrize("door", DOORS)
async def test_tampered_and_replayed_request_state_is_refused(make_daemon: MakeDaemon, door: str) -> None:
    """A requestState altered by the client is -32602 and ends nothing: the genuine state still
    completes the call; once used, the same state is refused (its round is over). The same
    through the aggregate."""
    _, url = start(make_daemon, door)
    tool = "test_input_required_result_request_state"
    caps: dict[str, Any] = {"elicitation": {}}
    async with httpx.AsyncClient(timeout=30) as http:
        status, first = await call(http, url, tool, caps)
        assert status == 200
        result = first["result"]
        assert result["resultType"] == "input_required"
        assert list(result["inputRequests"]) == ["confirm"]
        state = result["requestState"]
        answer = {"confirm": {"action": "accept", "content": {"ok": True}}}
        for bad in (state + "-TAMPERED", state[:-2] + ("AA" if not state.endswith("AA") else "BB"),
                    "not-a-state", 42):
            status, refused = await call(http, url, tool, caps, inputResponses=answer, requestState=bad)
            assert refused["error"]["code"] == -32602, refused
        status, done = await call(http, url, tool, caps, inputResponses=answer, requestState=state)
        assert done["result"]["resultType"] == "complete"
        assert "state-ok" in done["result"]["content"][0]["text"]
        status, replay = await call(http, url, tool, caps, inputResponses=answer, requestState=state)
        assert replay["error"]["code"] == -32602


async def test_undeclared_capability_is_32021_and_frees_the_child(make_daemon: MakeDaemon) -> None:
    """A child that needs sampling from a client that did not declare it: the call is answered
    -32021 (HTTP 400) naming the capability, and the child's call is cancelled (no slot held)."""
    daemon, url = start(make_daemon)
    async with httpx.AsyncClient(timeout=30) as http:
        status, refused = await call(http, url, "test_missing_capability", {"elicitation": {}})
        assert status == 400
        assert refused["error"]["code"] == -32021
        assert refused["error"]["data"]["requiredCapabilities"] == {"sampling": {}}
    wait_for(lambda: daemon.status("conf")["in_flight"] == 0, 10, what="the child's call to end")


@pytest.mark.parametrize("door", DOORS)
async def test_missing_answers_are_asked_again(make_daemon: MakeDaemon, door: str) -> None:
    """A retry that answers only some of the open questions gets a new InputRequiredResult with
    the rest (not an error), and its state carries the call on, through either door."""
    _, url = start(make_daemon, door)
    tool = "test_input_required_result_multiple_inputs"
    caps: dict[str, Any] = {"elicitation": {}, "sampling": {}, "roots": {}}
    async with httpx.AsyncClient(timeout=30) as http:
        _, first = await call(http, url, tool, caps)
        asked = first["result"]["inputRequests"]
        assert set(asked) == {"user_name", "greeting", "client_roots"}
        _, second = await call(http, url, tool, caps, requestState=first["result"]["requestState"],
                               inputResponses={"user_name": {"action": "accept",
                                                             "content": {"name": "Ann"}}})
        assert second["result"]["resultType"] == "input_required"
        assert set(second["result"]["inputRequests"]) == {"greeting", "client_roots"}
        _, done = await call(http, url, tool, caps, requestState=second["result"]["requestState"],
                             inputResponses={
                                 "greeting": {"role": "assistant", "model": "m",
                                              "content": {"type": "text", "text": "Hi"}},
                                 "client_roots": {"roots": []}})
        assert done["result"]["resultType"] == "complete"
        assert "Ann" in done["result"]["content"][0]["text"]


async def test_a_retry_that_never_comes_frees_the_child_at_request_timeout(make_daemon: MakeDaemon) -> None:
    """The parked call keeps the child's slot only until request_timeout; then the state is
    refused and the slot is free."""
    daemon, url = start(make_daemon, request_timeout="1s")
    tool = "test_input_required_result_elicitation"
    async with httpx.AsyncClient(timeout=30) as http:
        _, first = await call(http, url, tool, {"elicitation": {}})
        state = first["result"]["requestState"]
        assert daemon.status("conf")["in_flight"] == 1
        wait_for(lambda: daemon.status("conf")["in_flight"] == 0, 10, what="the parked call to expire")
        _, late = await call(http, url, tool, {"elicitation": {}}, requestState=state,
                             inputResponses={"user_name": {"action": "accept", "content": {"name": "x"}}})
        assert late["error"]["code"] == -32602


async def test_sdk_client_without_callbacks_gets_an_error_not_a_hang(make_daemon: MakeDaemon,
                                                                      workdir: Path) -> None:
    """A 2026-07-28 client that declares no elicitation capability asks a tool that elicits: a
    -32021 error reaches it promptly."""
    _, url = start(make_daemon)
    with anyio.fail_after(30):
        async with Client(url) as client:
            with pytest.raises(MCPError) as raised:
                await client.call_tool("test_input_required_result_elicitation", {})
            assert raised.value.error.code == -32021


@pytest.mark.parametrize(("door", "pool"), [
    pytest.param("/mcp/conf", {"instances": 2, "max_in_flight": 1}, id="per-server-fixed-pool"),
    pytest.param("/mcp", {"min_instances": 2, "max_instances": 3, "max_in_flight": 1,
                          "scale_up_queue": 1, "scale_up_window": "100ms"}, id="aggregate-autoscaled"),
])
async def test_retries_reach_the_instance_that_asked_in_a_pool(make_daemon: MakeDaemon, door: str,
                                                               pool: dict[str, Any]) -> None:
    """Three clients at once on a pool of children, each through several rounds: every retry
    goes to the child process that asked (the parked call holds its instance), never to another,
    which would not know the request it answers (the call would hang or fail). Also through the
    aggregate in front of an autoscaled pool, so calls queue and the pool may grow while rounds
    are open. One call per child at a time (`max_in_flight = 1`): a legacy child's request does
    not say which of its calls asked, so with two calls on one child the daemon refuses to guess."""
    daemon, url = start(make_daemon, door, stateless=True, **pool)
    wait_for(lambda: len(daemon.status("conf").get("pids") or []) >= 2, 20, what="two instances")
    results: list[str] = []

    async def one() -> None:
        async with Client(url, elicitation_callback=elicit) as client:
            for _ in range(3):
                done = await client.call_tool("test_input_required_result_multi_round", {})
                results.append(text_of(done))

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(one)
    assert results == ["answer-to-name's favorite color is answer-to-color"] * 9
    wait_for(lambda: daemon.status("conf")["in_flight"] == 0, 10, what="every call to end")


def test_a_2026_call_on_a_session_can_still_be_cancelled(make_daemon: MakeDaemon) -> None:
    """Regression: 2026-07-28 calls on a byte-stream session get their own sink (for the
    translation); notifications/cancelled must still find them and free the child's slot."""
    from .mcp_raw import RawSession

    daemon, _ = start(make_daemon)
    with RawSession(daemon.socket, "conf") as raw:
        raw.send({"jsonrpc": "2.0", "id": 41, "method": "tools/call", "params": {
            "name": "test_reconnection", "arguments": {"seconds": 8}, "_meta": envelope({})}})
        wait_for(lambda: daemon.status("conf")["in_flight"] == 1, 10, what="the call to reach the child")
        raw.send({"jsonrpc": "2.0", "method": "notifications/cancelled",
                  "params": {"requestId": 41, "reason": "changed my mind"}})
        wait_for(lambda: daemon.status("conf")["in_flight"] == 0, 5, what="the cancel to free the slot")


async def test_abandoned_rounds_hold_no_slot_and_do_not_open_the_breaker(make_daemon: MakeDaemon) -> None:
    """Regression (found running the suite twice against one daemon): calls answered
    input_required whose client never retries held their slots in the child until
    request_timeout, so a handful of abandoned rounds made every later call queue; and their
    expiry counted as child failures, opening the circuit breaker, and a stop waited
    drain_timeout for them. Now a parked call waits on its client without a slot, its end is
    neutral for the breaker, and a drain does not wait for it."""
    daemon, url = start(make_daemon, "/mcp", max_in_flight=2, request_timeout="2s")
    caps: dict[str, Any] = {"elicitation": {}}
    async with httpx.AsyncClient(timeout=30) as http:
        for _ in range(6):  # three times the child's slots, never retried
            _, first = await call(http, url, "test_input_required_result_elicitation", caps)
            assert first["result"]["resultType"] == "input_required"
        assert daemon.status("conf")["in_flight"] == 6
        # What a drain waits for (and /healthz shows) leaves them out: their clients may never
        # come back, so a stop does not hold on to them for drain_timeout.
        health = await http.get(url.rsplit("/mcp", 1)[0] + "/healthz")
        assert health.json()["in_flight"] == 0
        with anyio.fail_after(1.5):  # before any parked call expires: not queued behind them
            _, plain = await call(http, url, "test_simple_text", {})
        assert plain["result"]["content"][0]["text"]
        wait_for(lambda: daemon.status("conf")["in_flight"] == 0, 10, what="the parked calls to expire")
        status = daemon.status("conf")
        assert status["breaker"]["state"] == "closed" and status["breaker"]["failures"] == 0, status
        assert status["state"] == "ready"
        _, again = await call(http, url, "test_simple_text", {})
        assert "result" in again
