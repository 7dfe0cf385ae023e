"""Fuzzing every door and the child side with Hypothesis, against one real daemon.

Each test plays generated hostile input on one door (tests/fuzz_strategies.py: valid JSON, wrong in
type, shape, id, depth and size, plus junk) and then asserts the invariant of tests/fuzzing.py: the
daemon answers status, the bystander answers correctly, RSS stays in budget, no process is left
behind. The "ci" profile (tests/conftest.py) is derandomized, so these are the same examples on
every run; `python -m bench chaos --minutes N` runs the same doors with random examples for longer.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
    run_state_machine_as_test,
)

from .fuzz_strategies import DOOR_EXAMPLES
from .fuzz_strategies import any_ids as _any_ids
from .fuzz_strategies import json_values as _json_values
from .fuzz_strategies import session_lines as _session_lines
from .fuzzing import DOORS, FuzzFleet, LineReader


@pytest.fixture(scope="module")
def fleet() -> Iterator[FuzzFleet]:
    """One daemon for every example of the module (examples are fast; a daemon start is not)."""
    running = FuzzFleet().start()
    yield running
    running.stop()  # fails if a process was left behind


def _door_test(door: str, examples: int) -> Any:
    @settings(derandomize=True, max_examples=examples)
    @given(example=DOOR_EXAMPLES[door])
    def test(fleet: FuzzFleet, example: Any) -> None:
        DOORS[door](fleet, example)
    test.__doc__ = (f"Hostile input on the {door} door ({examples} derandomized examples) never breaks "
                    "the invariant (status, bystander, RSS, no orphans).")
    return test


test_control_socket_survives_hostile_lines = _door_test("control socket", 40)
test_control_attach_survives_hostile_params_and_session_lines = _door_test("control attach", 25)
test_mcpctl_connect_survives_hostile_lines = _door_test("mcpctl connect", 8)
test_http_legacy_door_survives_hostile_requests = _door_test("http legacy", 25)
test_http_modern_door_survives_hostile_requests = _door_test("http 2026-07-28", 30)
test_child_stdout_cannot_break_the_daemon = _door_test("child stdout", 40)


# ---- sequences: attach, call, answer the child's requests, cancel, disconnect ----------------------

# Deferred: the state machine prints its rules' strategies, and these nest into a 100 kB repr.
json_values = st.deferred(lambda: _json_values)
any_ids = st.deferred(lambda: _any_ids)
session_lines = st.deferred(lambda: _session_lines)

class _Session:
    """A raw attached session on `target` (a legacy child: its sampling requests reach us)."""

    def __init__(self, fleet: FuzzFleet, number: int) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(fleet.daemon.socket))
        sock = self.sock
        self.reader = LineReader(sock.fileno(), lambda: sock.recv(1 << 20))
        self.number = number
        self.server_requests: list[Any] = []
        self.outstanding: list[Any] = []
        self.closed = False
        self.request({"jsonrpc": "2.0", "id": "attach", "method": "supervisor/attach",
                      "params": {"server": "target", "client": f"machine-{number}"}})
        self.request({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {"sampling": {}, "roots": {}},
            "clientInfo": {"name": "machine", "version": "1"}}})
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def __repr__(self) -> str:
        return f"session{self.number}"

    def send(self, message: Any) -> None:
        self.send_raw(orjson.dumps(message) + b"\n")

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def pump(self, until: Any = None, timeout: float = 0.05) -> dict[str, Any] | None:
        """Read what is there (server requests are remembered); return the answer to `until`."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.reader.next(deadline)
            if line is None:
                return None
            message = orjson.loads(line)
            assert isinstance(message, dict) and message.get("jsonrpc") == "2.0", line[:200]
            if "method" in message:
                if "id" in message:
                    self.server_requests.append(message["id"])
                continue
            if message.get("id") in self.outstanding:
                self.outstanding.remove(message["id"])
            if until is not None and message.get("id") == until:
                return message

    def request(self, message: dict[str, Any], timeout: float = 15.0) -> dict[str, Any]:
        self.send(message)
        answer = self.pump(message["id"], timeout)
        assert answer is not None, f"{self}: no answer to {message['id']!r} within {timeout:g}s"
        return answer

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.close()


class SessionMachine(RuleBasedStateMachine):
    """Interleaved sessions doing what clients do, well and badly, on one shared child."""

    fleet: FuzzFleet
    sessions = Bundle("sessions")

    def __init__(self) -> None:
        super().__init__()
        self.fleet.ensure_up()
        self.opened: list[_Session] = []
        self.ids = itertools.count(1)

    @rule(target=sessions)
    def attach(self) -> _Session:
        session = _Session(self.fleet, len(self.opened))
        self.opened.append(session)
        return session

    @rule(session=sessions, text=st.text(max_size=50))
    def call_echo(self, session: _Session, text: str) -> None:
        if session.closed:
            return
        rid = f"echo-{next(self.ids)}"
        answer = session.request({"jsonrpc": "2.0", "id": rid, "method": "tools/call",
                                  "params": {"name": "echo", "arguments": {"text": text}}})
        assert answer["result"]["content"][0]["text"] == text, answer

    @rule(session=sessions, tool=st.sampled_from(("sleep", "sample", "roots")), token=json_values,
          rid=st.one_of(st.integers(0, 5), st.text(max_size=4)))
    def call_slow(self, session: _Session, tool: str, token: Any, rid: Any) -> None:
        if session.closed:
            return
        params: dict[str, Any] = {"name": tool, "arguments": {"seconds": 0.2, "prompt": "hi"}}
        if token is not None:
            params["_meta"] = {"progressToken": token}
        data = orjson.dumps({"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params}) \
            if _plain(token) else None
        if data is None:
            return
        session.outstanding.append(rid)
        session.send_raw(data + b"\n")
        session.pump()

    @rule(session=sessions, pick=st.integers(0, 3), answer_id=st.one_of(st.none(), any_ids),
          result=json_values, twice=st.booleans())
    def answer_server_request(self, session: _Session, pick: int, answer_id: Any, result: Any,
                              twice: bool) -> None:
        if session.closed:
            return
        session.pump(timeout=0.3)
        if answer_id is None and session.server_requests:
            answer_id = session.server_requests[pick % len(session.server_requests)]
        from .fuzz_strategies import encode
        line = encode({"jsonrpc": "2.0", "id": answer_id, "result": result}) + b"\n"
        session.send_raw(line * (2 if twice else 1))
        session.pump()

    @rule(session=sessions, request_id=st.one_of(st.none(), any_ids), reason=json_values)
    def cancel(self, session: _Session, request_id: Any, reason: Any) -> None:
        if session.closed:
            return
        if request_id is None and session.outstanding:
            request_id = session.outstanding[0]
        from .fuzz_strategies import encode
        session.send_raw(encode({"jsonrpc": "2.0", "method": "notifications/cancelled",
                                 "params": {"requestId": request_id, "reason": reason}}) + b"\n")
        session.pump()

    @rule(session=sessions, line=session_lines)
    def garbage(self, session: _Session, line: Any) -> None:
        if session.closed:
            return
        session.send_raw(line.data + b"\n")
        session.pump()

    @rule(session=consumes(sessions))
    def disconnect(self, session: _Session) -> None:
        session.close()

    @invariant()
    def daemon_and_bystander_fine(self) -> None:
        self.fleet.check("session sequences")

    def teardown(self) -> None:
        for session in self.opened:
            session.close()


def _plain(value: Any) -> bool:
    try:
        orjson.dumps(value)
    except TypeError:
        return False
    return "@@deep" not in orjson.dumps(value).decode()


def test_session_sequences_keep_the_invariant(fleet: FuzzFleet) -> None:
    """Sequences of attach / call / answer the child's sampling / cancel / disconnect, with wrong
    ids and shapes mixed in, keep the invariant after every step (10 derandomized runs)."""
    SessionMachine.fleet = fleet
    run_state_machine_as_test(SessionMachine, settings=settings(
        derandomize=True, max_examples=10, stateful_step_count=8))
