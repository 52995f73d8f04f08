"""Revoked tokens without I/O: the set every node checks each token against.

A revocation names a subject or a token id (``jti``). A subject's revocation refuses the tokens
of that subject issued before it (by ``iat``; a token without ``iat`` counts as before), so the
subject gets back in with a token issued afterwards; a ``jti`` revocation refuses that one
token. The check is two dictionary lookups whatever the number of revocations.

Bounds: a ``jti`` revocation is forgotten once the token it names has expired (its ``exp`` when
the revoker gave it, else ``websocket.revocation.max_age`` after the revocation), and the set
holds at most :data:`MAX_REVOCATIONS`. A subject's revocation lasts until it is lifted (a token
without ``iat`` could come back otherwise). Propagation to other nodes and persistence are the
broker's (:meth:`~.broker.Broker.revoke`); closing live connections is the node's.
"""

from __future__ import annotations

import heapq
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from .auth import AuthError, Principal

MAX_REVOCATIONS = 100_000
MAX_FIELD = 256  # characters of a sub, jti or revoker
MAX_REASON = 200
REVOKED = "token revoked"  # the refusal's reason: close 4001, HTTP 401


class RevocationError(ValueError):
    """A revocation that cannot be made (bad fields, or the set is full)."""


@dataclass(frozen=True, slots=True)
class Revocation:
    """One revocation: of a subject (``sub``) or of one token (``jti``), never both."""

    id: str
    at: float  # epoch seconds: a subject's tokens issued before this are refused
    sub: str | None = None
    jti: str | None = None
    reason: str = ""
    by: str = ""  # the admin subject who revoked
    expires: float | None = None  # a jti revocation may be forgotten after this

    def refuses(self, principal: Principal) -> bool:
        """True when ``principal``'s token is one this revocation refuses."""
        if self.jti is not None:
            return principal.token_id == self.jti
        issued = principal.issued_at
        return principal.subject == self.sub and (issued is None or issued < self.at)

    def lapsed(self, now: float) -> bool:
        """True once the token a jti revocation names has expired anyway."""
        return self.expires is not None and self.expires <= now

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Revocation:
        """A revocation as :meth:`as_dict` wrote it (stored or sent by another node)."""
        return cls(
            id=str(data["id"]),
            at=float(data["at"]),
            sub=data.get("sub"),
            jti=data.get("jti"),
            reason=str(data.get("reason", "")),
            by=str(data.get("by", "")),
            expires=None if data.get("expires") is None else float(data["expires"]),
        )


def new_revocation(
    now: float,
    max_age: float,
    *,
    sub: Any = None,
    jti: Any = None,
    reason: Any = "",
    exp: Any = None,
    by: str = "",
) -> Revocation:
    """A revocation from an admin request's fields; :class:`RevocationError` says what is wrong.

    A ``jti`` revocation expires at the token's ``exp`` when given (at most ``max_age`` on),
    else ``max_age`` after ``now``."""
    if (sub is None) == (jti is None):
        raise RevocationError("give exactly one of sub and jti")
    for name, value in (("sub", sub), ("jti", jti)):
        if value is not None and (not isinstance(value, str) or not 0 < len(value) <= MAX_FIELD):
            raise RevocationError(f"{name} must be a string of 1 to {MAX_FIELD} characters")
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise RevocationError(f"reason must be a string of at most {MAX_REASON} characters")
    if exp is not None and (
        sub is not None or isinstance(exp, bool) or not isinstance(exp, int | float)
    ):
        raise RevocationError("exp is a number, and only goes with jti")
    expires = None
    if jti is not None:
        expires = now + max_age if exp is None else min(float(exp), now + max_age)
    return Revocation(secrets.token_hex(8), now, sub, jti, reason, by[:MAX_FIELD], expires)


class Revocations:
    """The revocations in force: indexed by subject and by jti for an O(1) check.

    A second revocation of the same subject (or jti) replaces the first: it is later, so it
    refuses at least as much."""

    __slots__ = ("_on_revoked", "_by_id", "_by_subject", "_by_jti", "_expiry")

    def __init__(self, on_revoked: Callable[[Revocation], None] | None = None) -> None:
        """``on_revoked`` is called with each revocation put in force (the node closes the
        live connections it refuses)."""
        self._on_revoked = on_revoked
        self._by_id: dict[str, Revocation] = {}
        self._by_subject: dict[str, Revocation] = {}
        self._by_jti: dict[str, Revocation] = {}
        self._expiry: list[tuple[float, str]] = []  # heap of (expires, id) of jti revocations

    def __len__(self) -> int:
        return len(self._by_id)

    def revoked(self, principal: Principal, now: float) -> Revocation | None:
        """The revocation that refuses ``principal``'s token, if any (two lookups)."""
        found = self._by_subject.get(principal.subject)
        if found is not None and found.refuses(principal):
            return found
        found = None if principal.token_id is None else self._by_jti.get(principal.token_id)
        return None if found is None or found.lapsed(now) else found

    def check(self, principal: Principal, now: float) -> None:
        """Raise :class:`~.auth.AuthError` (``token revoked``) when a revocation refuses
        ``principal``: the one check of the WebSocket and of every bearer-token endpoint."""
        if self.revoked(principal, now) is not None:
            raise AuthError(REVOKED)

    def add(self, revocation: Revocation, now: float) -> bool:
        """Put a revocation in force and tell ``on_revoked``; False when it was already (the
        same id), or is of a token that expired anyway. :class:`RevocationError` when the set
        is full."""
        if revocation.id in self._by_id or revocation.lapsed(now):
            return False
        self.prune(now)
        index = self._by_subject if revocation.sub is not None else self._by_jti
        key = revocation.sub if revocation.sub is not None else revocation.jti
        assert key is not None
        replaced = index.get(key)
        if replaced is None and len(self._by_id) >= MAX_REVOCATIONS:
            raise RevocationError(f"{MAX_REVOCATIONS} revocations in force; lift some first")
        if replaced is not None:
            del self._by_id[replaced.id]
        index[key] = self._by_id[revocation.id] = revocation
        if revocation.expires is not None:
            heapq.heappush(self._expiry, (revocation.expires, revocation.id))
        if self._on_revoked is not None:
            self._on_revoked(revocation)
        return True

    def lift(self, revocation_id: str) -> Revocation | None:
        """Take a revocation out of force; the one lifted, or None when there was none."""
        revocation = self._by_id.pop(revocation_id, None)
        if revocation is not None:
            index = self._by_subject if revocation.sub is not None else self._by_jti
            key = revocation.sub if revocation.sub is not None else revocation.jti
            if index.get(key or "") is revocation:
                del index[key or ""]
        return revocation

    def replace(self, revocations: list[Revocation], now: float) -> list[Revocation]:
        """Hold exactly ``revocations`` (what the shared store holds, after a reconnect); the
        ones that are new here, whose live connections must now be closed."""
        known = set(self._by_id)
        for revocation_id in known - {r.id for r in revocations}:
            self.lift(revocation_id)
        return [r for r in revocations if r.id not in known and self.add(r, now)]

    def prune(self, now: float) -> None:
        """Forget the jti revocations whose token has expired (amortized O(log n) each)."""
        while self._expiry and self._expiry[0][0] <= now:
            self.lift(heapq.heappop(self._expiry)[1])

    def all(self) -> list[Revocation]:
        """Every revocation in force, oldest first."""
        return sorted(self._by_id.values(), key=lambda r: r.at)
