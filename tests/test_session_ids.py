"""Signed legacy session ids (supervisor.doors.http.session_ids): what verifies and what never does.
Time is passed in, so expiry is exact."""

from __future__ import annotations

from typing import Any

import pytest

from supervisor.doors.http.session_ids import CLOCK_SKEW, MAX_ID_BYTES, SessionIds, owner_of

SECRET = "0123456789abcdef0123"
NOW = 1_800_000_000.0


def issue(ids: SessionIds, **over: Any) -> str:
    claims: dict[str, Any] = {"path": "/mcp/echo", "owner": owner_of(b"Bearer t"),
                              "version": "2025-06-18", "capabilities": {"sampling": {}},
                              "client_info": {"name": "c", "version": "1"}, "now": NOW}
    claims.update(over)
    return ids.issue(**claims)


def test_an_id_verifies_on_any_node_with_the_same_secret() -> None:
    sid = issue(SessionIds(SECRET, "a", 3600))
    claims = SessionIds(SECRET, "b", 3600).verify(sid, NOW + 10)
    assert claims is not None
    assert (claims["p"], claims["v"], claims["c"], claims["i"], claims["n"]) == (
        "/mcp/echo", "2025-06-18", {"sampling": {}}, {"name": "c", "version": "1"}, "a")
    assert claims["o"] == owner_of(b"Bearer t") and "t" not in claims["o"]


def test_two_sessions_of_one_client_get_different_ids() -> None:
    ids = SessionIds(SECRET, "a", 3600)
    assert issue(ids) != issue(ids)


@pytest.mark.parametrize("change", ["claims", "signature", "truncated", "version", "dots"])
def test_a_tampered_id_never_verifies(change: str) -> None:
    ids = SessionIds(SECRET, "a", 3600)
    sid = issue(ids)
    version, claims, signature = sid.split(".")
    forged = {
        "claims": f"{version}.{claims[:-2]}{'A' if claims[-2] != 'A' else 'B'}{claims[-1]}.{signature}",
        "signature": f"{version}.{claims}.{signature[::-1]}",
        "truncated": sid[:-1],
        "version": f"v2.{claims}.{signature}",
        "dots": f"{sid}.x",
    }[change]
    assert ids.verify(forged, NOW) is None


def test_another_secret_never_verifies() -> None:
    sid = issue(SessionIds(SECRET, "a", 3600))
    assert SessionIds(SECRET + "x", "a", 3600).verify(sid, NOW) is None


@pytest.mark.parametrize(("age", "good"), [
    (0, True), (3600, True), (3600.5, False), (-CLOCK_SKEW, True), (-CLOCK_SKEW - 1, False)])
def test_an_id_expires_after_its_ttl_and_tolerates_some_clock_skew(age: float, good: bool) -> None:
    ids = SessionIds(SECRET, "a", 3600)
    sid = issue(ids)
    assert (ids.verify(sid, NOW + age) is not None) is good


def test_claims_too_big_for_a_header_get_a_local_id_that_verifies_nowhere() -> None:
    ids = SessionIds(SECRET, "a", 3600)
    sid = issue(ids, capabilities={"x": "y" * MAX_ID_BYTES})
    assert len(sid) < 64 and ids.verify(sid, NOW) is None


def test_junk_is_refused_without_an_exception() -> None:
    ids = SessionIds(SECRET, "a", 3600)
    for junk in ("", ".", "..", "v1..", "v1.!!!.!!!", "v1." + "A" * 5000 + ".x", "\u00e9.\u00e9.\u00e9"):
        assert ids.verify(junk, NOW) is None


def test_owner_is_a_hash_of_the_credential_and_empty_without_one() -> None:
    assert owner_of(None) == owner_of(b"") == ""
    assert owner_of(b"Bearer a") != owner_of(b"Bearer b")
    assert "Bearer" not in owner_of(b"Bearer a")
