"""Tool policy without a daemon: config errors (file:line:key), the rules, aggregate naming, pins."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.config import AggregateSettings, ListPolicy, parse_config
from supervisor.core.pins import ToolPins
from supervisor.errors import ConfigError
from supervisor.policy.naming import Naming, never_collisions
from supervisor.policy.tool_policy import ItemRules

SERVER = '[servers.echo]\ncommand = "echo-server"\n'


def error(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, path="fleet.toml")
    return str(caught.value)


@pytest.mark.parametrize(("extra", "expected"), [
    ('[servers.echo.tools]\nalow = ["x"]\n',
     "fleet.toml:4: servers.echo.tools.alow: unknown key (did you mean 'allow'?)"),
    ('[servers.echo.resources]\nrename = { a = "b" }\n',
     "fleet.toml:4: servers.echo.resources.rename: unknown key"),
    ('[servers.echo.tools]\nrename = { a = "c", b = "c" }\n',
     'fleet.toml:4: servers.echo.tools.rename.b: "a" and "b" are both renamed to "c"'),
    ('[servers.echo.tools]\ndeny = "x"\n', "fleet.toml:4: servers.echo.tools.deny: expected an array"),
    ('[aggregate]\nprefix = "sometimes"\n', "fleet.toml:4: aggregate.prefix: expected one of"),
    ('[aggregate]\nseparator = "a b"\n', "fleet.toml:4: aggregate.separator: must not contain spaces"),
    ('[clients.ci]\nservers = ["echo", "nosuch"]\n',
     "fleet.toml:4: clients.ci.servers[1]: no server named 'nosuch' (known: echo)"),
    ('on_tool_change = "ignore"\n', "fleet.toml:3: servers.echo.on_tool_change: expected one of"),
    ('sharing = "per-client"\nstateless = true\n',
     'fleet.toml:4: servers.echo.stateless: not with sharing = "per-client"'),
    ('sharing = "per-client"\ninstances = 2\n',
     'fleet.toml:4: servers.echo.instances: not with sharing = "per-client"'),
])
def test_config_errors_name_file_line_and_key(extra: str, expected: str) -> None:
    """Every new key's mistakes are reported at their own line and key path."""
    assert error(SERVER + extra).startswith(expected)


def test_tool_rules_cannot_be_fleet_defaults() -> None:
    """allow/deny lists name one server's tools: [defaults] may not set them."""
    got = error('[defaults.tools]\ndeny = ["x"]\n' + SERVER)
    assert got.startswith("fleet.toml:1: defaults.tools: cannot be set in [defaults]")


def test_policy_keys_do_not_change_the_server_fingerprint() -> None:
    """A policy edit must not restart the child: only the policy fingerprint changes."""
    plain = parse_config(SERVER).servers["echo"]
    policed = parse_config(SERVER + 'on_tool_change = "block"\n[servers.echo.tools]\ndeny = ["x"]\n'
                           ).servers["echo"]
    assert plain.fingerprint() == policed.fingerprint()
    assert plain.policy_fingerprint() != policed.policy_fingerprint()


def test_rules_deny_wins_rename_and_describe() -> None:
    rules = ItemRules("gh", "tools", ListPolicy(allow=("get_*", "create_issue"), deny=("get_secret",),
                                                rename={"create_issue": "open_issue"},
                                                describe={"get_repo": "Our repos only"}))
    tools = [{"name": n, "description": "d"} for n in ("get_repo", "get_secret", "create_issue", "rm")]
    shown = rules.apply(tools)
    assert [t["name"] for t in shown] == ["get_repo", "open_issue"]
    assert shown[0]["description"] == "Our repos only"
    assert rules.to_child("open_issue") == ("create_issue", None)
    assert "renamed to 'open_issue'" in str(rules.to_child("create_issue")[1])
    assert rules.to_child("get_secret")[1] == "servers.gh.tools.deny matches 'get_secret'"
    assert rules.to_child("rm")[1] == "not in servers.gh.tools.allow"


def test_naming_modes() -> None:
    sources = [("a", ["echo", "only_a"]), ("b", ["echo", "only_b"])]
    always = Naming(AggregateSettings(prefix="always"), sources)
    assert always.name_for("a", "only_a") == "a__only_a"
    collide = Naming(AggregateSettings(prefix="on-collision", separator="."), sources)
    assert collide.name_for("a", "only_a") == "only_a"
    assert (collide.name_for("a", "echo"), collide.name_for("b", "echo")) == ("a.echo", "b.echo")
    assert collide.collisions == {"echo": ["a", "b"]}
    assert collide.resolve("b.only_b", {"a": 1, "b": 1}) == ("b", "only_b")  # prefix always works
    assert collide.resolve("echo", {"a": 1, "b": 1}) is None
    never = Naming(AggregateSettings(prefix="never"), sources)
    assert never.name_for("a", "echo") == "echo" and never.name_for("b", "echo") is None
    assert never.dropped == [("b", "echo")]
    assert never.resolve("b__only_b", {"a": 1, "b": 1}) is None


def test_never_collision_check_applies_each_servers_policy() -> None:
    text = ('[aggregate]\nprefix = "never"\n' + SERVER + '[servers.other]\ncommand = "x"\n')
    config = parse_config(text, path="fleet.toml")
    found = never_collisions(config, {"echo": ["echo", "add"], "other": ["echo"]})
    assert found is not None
    assert str(found).startswith("fleet.toml:2: aggregate.prefix:")
    assert "'echo' and 'other'" in str(found)
    renamed = parse_config(text + '[servers.other.tools]\nrename = { echo = "say" }\n', path="fleet.toml")
    assert never_collisions(renamed, {"echo": ["echo"], "other": ["echo"]}) is None


def test_pins_store_first_sight_flag_changes_and_approve(tmp_path: Path) -> None:
    path = tmp_path / "pins" / "echo.json"
    pins = ToolPins(path)
    assert pins.observe([{"name": "echo", "description": "Echo"}]) == []
    assert path.stat().st_mode & 0o777 == 0o600
    again = ToolPins(path)  # a new daemon: the pins come from the file
    assert again.observe([{"name": "echo", "description": "Exfiltrate"}]) == ["echo"]
    assert again.observe([{"name": "echo", "description": "Exfiltrate"}]) == []  # said once
    assert not again.matches({"name": "echo", "description": "Exfiltrate"})
    assert '+  "description": "Exfiltrate"' in again.diff("echo")
    assert again.approve() == ["echo"]
    assert ToolPins(path).matches({"name": "echo", "description": "Exfiltrate"})
