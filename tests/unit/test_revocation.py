"""The revocation set without I/O: what a revocation refuses, replacement, expiry, bounds."""

from __future__ import annotations

import pytest

from netsentinel_websocket import revocation
from netsentinel_websocket.auth import AuthError, Principal
from netsentinel_websocket.revocation import (
    Revocation,
    RevocationError,
    Revocations,
    new_revocation,
)

NOW = 1_700_000_000.0
DAY = 86400.0


def principal(sub: str = "alice", iat: float | None = NOW - 60, jti: str | None = None):
    return Principal(sub, frozenset({"channel:*"}), NOW + 3600, issued_at=iat, token_id=jti)


def test_a_subject_revocation_refuses_tokens_issued_before_it_and_only_those():
    seen: list[Revocation] = []
    revocations = Revocations(seen.append)
    rev = new_revocation(NOW, DAY, sub="alice", reason="leaked", by="admin")
    assert revocations.add(rev, NOW)
    assert seen == [rev]
    assert revocations.revoked(principal(iat=NOW - 60), NOW) == rev
    assert revocations.revoked(principal(iat=None), NOW) == rev  # no iat counts as before
    assert revocations.revoked(principal(iat=NOW + 1), NOW + 1) is None  # a new token is fine
    assert revocations.revoked(principal("bob"), NOW) is None
    with pytest.raises(AuthError) as refused:
        revocations.check(principal(), NOW)
    assert refused.value.reason == "token revoked"
    revocations.check(principal("bob"), NOW)  # no error


def test_a_jti_revocation_refuses_that_token_until_it_expires():
    revocations = Revocations()
    rev = new_revocation(NOW, DAY, jti="t-1", exp=NOW + 600)
    assert rev.expires == NOW + 600
    revocations.add(rev, NOW)
    assert revocations.revoked(principal(jti="t-1"), NOW) == rev
    assert revocations.revoked(principal(jti="t-2"), NOW) is None
    assert revocations.revoked(principal(), NOW) is None  # a token without jti
    assert revocations.revoked(principal(jti="t-1"), NOW + 600) is None  # its token expired
    revocations.prune(NOW + 600)
    assert len(revocations) == 0


def test_a_jti_revocation_without_exp_lasts_max_age_and_exp_is_capped_by_it():
    assert new_revocation(NOW, DAY, jti="t").expires == NOW + DAY
    assert new_revocation(NOW, DAY, jti="t", exp=NOW + 10 * DAY).expires == NOW + DAY
    assert new_revocation(NOW, DAY, sub="s").expires is None  # until lifted


def test_lift_replace_and_a_second_revocation_of_the_same_subject():
    revocations = Revocations()
    first = new_revocation(NOW, DAY, sub="alice")
    second = new_revocation(NOW + 5, DAY, sub="alice")
    revocations.add(first, NOW)
    assert revocations.add(second, NOW + 5)
    assert not revocations.add(second, NOW + 5)  # the same id again: nothing new
    assert revocations.all() == [second]  # replaced: later, so it refuses at least as much
    assert revocations.lift(first.id) is None
    assert revocations.lift(second.id) == second
    assert revocations.revoked(principal(), NOW + 5) is None

    jti = new_revocation(NOW, DAY, jti="t")
    revocations.add(jti, NOW)
    fresh = revocations.replace([first], NOW)  # what a shared store holds after a reconnect
    assert fresh == [first] and revocations.all() == [first]
    assert revocations.replace([first], NOW) == []


def test_a_lapsed_revocation_is_not_added_and_wire_form_round_trips():
    revocations = Revocations()
    rev = new_revocation(NOW, DAY, jti="t", exp=NOW - 1, reason="r", by="admin")
    assert not revocations.add(rev, NOW)
    assert Revocation.from_dict(rev.as_dict()) == rev
    assert "sub" not in rev.as_dict()


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"sub": "a", "jti": "b"},
        {"sub": ""},
        {"sub": 7},
        {"jti": "x" * 257},
        {"sub": "a", "reason": 1},
        {"sub": "a", "reason": "x" * 201},
        {"sub": "a", "exp": NOW},
        {"jti": "a", "exp": "soon"},
        {"jti": "a", "exp": True},
    ],
)
def test_bad_fields_are_refused(fields):
    with pytest.raises(RevocationError):
        new_revocation(NOW, DAY, **fields)


def test_the_set_is_bounded(monkeypatch):
    monkeypatch.setattr(revocation, "MAX_REVOCATIONS", 3)
    revocations = Revocations()
    for n in range(3):
        revocations.add(new_revocation(NOW, DAY, sub=f"s{n}"), NOW)
    with pytest.raises(RevocationError):
        revocations.add(new_revocation(NOW, DAY, sub="s3"), NOW)
    revocations.add(new_revocation(NOW, DAY, sub="s0"), NOW)  # a replacement still fits
    assert len(revocations) == 3


def test_ten_thousand_revocations_keep_the_check_cheap():
    revocations = Revocations()
    for n in range(5000):
        revocations.add(new_revocation(NOW, DAY, sub=f"user-{n}"), NOW)
        revocations.add(new_revocation(NOW, DAY, jti=f"token-{n}", exp=NOW + n + 1), NOW)
    assert len(revocations) == 10_000
    assert revocations.revoked(principal("user-42"), NOW) is not None
    assert revocations.revoked(principal("nobody", jti="token-42"), NOW) is not None
    revocations.prune(NOW + 100)  # the first 100 jti tokens expired
    assert len(revocations) == 9_900
