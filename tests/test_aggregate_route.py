"""How the aggregate finds the server of a `tools/call`, in-process (no daemon needed).

Under `prefix = "always"` (the default) the public name splits at the first separator, because no
server name may hold it: the same answer `Naming.resolve` gives, without walking the fleet per
call to see whether the naming is still current (which cost tens of µs per call with the shipped
27 servers; `python -m bench.profile --path http-aggregate` showed it on the hot path)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

from supervisor.config import AggregateSettings
from supervisor.core.aggregate import Aggregate
from supervisor.core.fleet import Fleet
from supervisor.policy.states import State

NAMES = ["a__t", "a__t__x", "b__u", "b__", "__t", "a", "", "c__t", "a__hidden", "b__t", "a_t", "a___t"]


def _aggregate(prefix: str, ready: bool = True) -> Aggregate:
    servers = {}
    for name, tools in (("a", ["t", "t__x"]), ("b", ["u", "t"])):
        servers[name] = SimpleNamespace(
            name=name, state=State.READY if ready else State.STOPPED, sessions=set(), policy_epoch=0,
            handshake=SimpleNamespace(capabilities={"tools": {}}) if ready else None,
            tools=[{"name": t} for t in tools], visible_tools=[{"name": t} for t in tools])
    config = SimpleNamespace(aggregate=AggregateSettings(prefix=prefix))
    fleet = SimpleNamespace(servers=servers, config=config)
    return Aggregate(cast(Fleet, fleet))


def _by_naming(aggregate: Aggregate, name: str) -> tuple[Any, str] | None:
    servers = aggregate.fleet.servers
    found = aggregate.tool_naming().resolve(name, servers)
    return (servers[found[0]], found[1]) if found is not None else None


@pytest.mark.parametrize("ready", [True, False])
def test_always_routes_by_the_first_separator_exactly_as_the_naming_would(ready: bool) -> None:
    aggregate = _aggregate("always", ready)
    expected = {name: _by_naming(aggregate, name) for name in NAMES}

    def no_naming(*args: object) -> object:
        raise AssertionError("tool_naming walked the fleet for a tools/call under prefix = always")

    aggregate.tool_naming = no_naming  # type: ignore[method-assign,assignment]  # prove the call never asks it
    assert {name: aggregate._route_tool(name) for name in NAMES} == expected
    assert aggregate._route_tool(7) is None
    servers = aggregate.fleet.servers
    assert expected["a__t__x"] == (servers["a"], "t__x") and expected["b__"] is None


def test_on_collision_still_asks_the_naming() -> None:
    aggregate = _aggregate("on-collision")
    servers = aggregate.fleet.servers
    assert aggregate._route_tool("u") == (servers["b"], "u")  # unique: its own name
    assert aggregate._route_tool("t") is None  # two servers offer it: only the prefixed form
    assert aggregate._route_tool("b__t") == (servers["b"], "t")
