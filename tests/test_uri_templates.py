"""The URI template matcher (`supervisor.policy.uri_templates`): RFC 6570 semantics, linear time."""

from __future__ import annotations

import pytest

from supervisor.policy.uri_templates import MAX_URI, matches


@pytest.mark.parametrize(("template", "uri", "expected"), [
    ("test://echo/{text}", "test://echo/hi", True),
    ("test://echo/{text}", "test://echo/", True),
    ("test://echo/{text}", "test://echo/a/b", False),  # a simple variable never spans "/"
    ("file:///{+path}", "file:///a/b/c", True),  # a reserved expansion may
    ("db://{table}/rows/{id}", "db://users/rows/7", True),
    ("db://{table}/rows/{id}", "db://users/x/rows/7", False),
    ("a/{x}.json", "a/b.c.json", True),
    ("a/{x}.json", "a/b.c.jso", False),
    ("{a}-{b}", "x-y-z", True),
    ("x{a}{b}y", "xhelloy", True),
    ("plain", "plain", True),
    ("plain", "plain2", False),
    ("broken{", "broken{", False),
    ("broken}", "broken}", False),
])
def test_template_matching_follows_rfc_6570_expansions(template: str, uri: str, expected: bool) -> None:
    assert matches(template, uri) is expected


def test_uris_over_the_cap_match_nothing() -> None:
    assert not matches("x://{a}", "x://" + "a" * MAX_URI)


def test_a_hostile_uri_is_matched_in_linear_time() -> None:
    """The regex this replaced took 24 s for this 3 kB URI; here it is one pass. No timing is
    asserted (that is bench's job): a backtracking matcher would simply not finish this test."""
    template = "h://" + "{v}" * 50 + "z"
    assert not matches(template, "h://" + "a" * (MAX_URI - 10))
