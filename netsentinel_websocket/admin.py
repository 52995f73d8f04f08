"""The admin API (contract section 13): revocations, this node's connections, forced closes.

Every call needs a token with the ``admin`` scope and speaks JSON; every call, refused ones
included, writes one audit line (:mod:`.audit`). A revocation goes through the broker, which
puts it in force on every node (:meth:`~.broker.Broker.revoke`); the connection list and
forced closes are this node's only.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import tornado.web

from . import audit, disconnect
from .auth import Principal
from .broker import BrokerUnavailable
from .http import NodeHandler
from .node import Node
from .revocation import RevocationError, new_revocation

REVOKE_FIELDS = frozenset({"sub", "jti", "reason", "exp"})
DISCONNECT_FIELDS = frozenset({"connection_id", "sub"})


class AdminHandler(NodeHandler):
    """Base: the ``admin`` scope, a JSON object in, JSON out, one audit line per call."""

    action = ""

    async def admin(self) -> Principal | None:
        """The caller when its token has the ``admin`` scope (else answered 401/403)."""
        principal = await self.bearer("admin")
        if principal is None:
            self._audit(None, "refused", status=self.get_status())
        return principal

    def body_fields(self, principal: Principal, allowed: frozenset[str]) -> dict[str, Any] | None:
        """The request's JSON object with only ``allowed`` keys (else answered 400)."""
        try:
            data = orjson.loads(self.request.body)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            self.answer(principal, 400, {"error": "the body must be a JSON object"}, "invalid")
            return None
        unknown = sorted(set(data) - allowed)
        if unknown:
            error = {"error": f"unknown fields: {', '.join(unknown)[:200]}"}
            self.answer(principal, 400, error, "invalid")
            return None
        return data

    def answer(
        self, principal: Principal, status: int, body: Any, outcome: str, **details: Any
    ) -> None:
        self._audit(principal.subject, outcome, status=status, **details)
        self.write_json(status, body)

    def _audit(self, subject: str | None, outcome: str, **details: Any) -> None:
        audit.record(self.action, subject, self.request.remote_ip or "?", outcome, **details)


class RevokeHandler(AdminHandler):
    """``POST /ws/admin/revoke`` ``{"sub": ..., "reason": ...}`` or ``{"jti": ..., "exp": ...}``:
    answers the revocation (201) once the broker has it in force on every node."""

    action = "revoke"

    async def post(self) -> None:
        principal = await self.admin()
        data = None if principal is None else self.body_fields(principal, REVOKE_FIELDS)
        if principal is None or data is None:
            return
        try:
            revocation = new_revocation(
                time.time(),
                self.node.settings.node.revocation_max_age,
                by=principal.subject,
                **data,
            )
            await self.node.broker.revoke(revocation)
        except RevocationError as exc:
            return self.answer(principal, 400, {"error": str(exc)}, "invalid")
        except BrokerUnavailable as exc:
            return self.answer(principal, 503, {"error": str(exc)}, "unavailable")
        target = {"sub": revocation.sub} if revocation.sub is not None else {"jti": revocation.jti}
        self.answer(principal, 201, revocation.as_dict(), "ok", revocation=revocation.id, **target)


class RevocationsHandler(AdminHandler):
    """``GET /ws/admin/revocations``: every revocation in force, oldest first."""

    action = "list_revocations"

    async def get(self) -> None:
        principal = await self.admin()
        if principal is not None:
            body = {"revocations": [r.as_dict() for r in self.node.revocations.all()]}
            self.answer(principal, 200, body, "ok")


class LiftHandler(AdminHandler):
    """``DELETE /ws/admin/revocations/<id>``: lift a revocation on every node."""

    action = "lift"

    async def delete(self, revocation_id: str) -> None:
        principal = await self.admin()
        if principal is None:
            return
        try:
            lifted = await self.node.broker.lift(revocation_id)
        except BrokerUnavailable as exc:
            return self.answer(principal, 503, {"error": str(exc)}, "unavailable")
        if not lifted:
            error = {"error": "no such revocation"}
            return self.answer(principal, 404, error, "not_found", revocation=revocation_id)
        self.answer(principal, 200, {"lifted": revocation_id}, "ok", revocation=revocation_id)


class ConnectionsHandler(AdminHandler):
    """``GET /ws/admin/connections``: this node's connections."""

    action = "list_connections"

    async def get(self) -> None:
        principal = await self.admin()
        if principal is not None:
            body = {
                "node_id": self.node.node_id,
                "connections": [describe(conn) for conn in self.node.connections],
            }
            self.answer(principal, 200, body, "ok")


class DisconnectHandler(AdminHandler):
    """``POST /ws/admin/disconnect`` ``{"connection_id": ...}`` or ``{"sub": ...}``: close this
    node's matching connections with 4003 (a client may come back: revoke to keep it out)."""

    action = "disconnect"

    async def post(self) -> None:
        principal = await self.admin()
        data = None if principal is None else self.body_fields(principal, DISCONNECT_FIELDS)
        if principal is None or data is None:
            return
        if len(data) != 1 or not all(isinstance(v, str) for v in data.values()):
            error = {"error": "give exactly one of connection_id and sub, as a string"}
            return self.answer(principal, 400, error, "invalid")
        [(field, value)] = data.items()
        closed = [conn for conn in list(self.node.connections) if describe(conn)[field] == value]
        if not closed:
            error = {"error": "no such connection on this node"}
            return self.answer(principal, 404, error, "not_found", **{field: value})
        for conn in closed:
            conn.close_with(disconnect.DISCONNECTED)
        ids = [conn.connection_id for conn in closed]
        self.answer(principal, 200, {"disconnected": ids}, "ok", connections=ids, **{field: value})


def describe(conn: Any) -> dict[str, Any]:
    """One connection for the list (``sub`` is None until its token is accepted)."""
    principal = conn.session.principal
    return {
        "connection_id": conn.connection_id,
        "sub": principal.subject if principal is not None else None,
        "address": conn.address,
        "channels": sorted(conn.session.subscriptions),
        "opened": conn.opened_at,
        "events_sent": conn.events_sent,
        "queued_bytes": conn.queued_bytes,
    }


def routes(node: Node) -> list[tuple[str, type[tornado.web.RequestHandler], dict[str, Any]]]:
    """The admin API's URL rules, under ``websocket.path`` (``/ws/admin/...``)."""
    base = node.settings.http.path
    admin = ("" if base == "/" else base) + "/admin"
    args = {"node": node}
    return [
        (f"{admin}/revoke", RevokeHandler, args),
        (f"{admin}/revocations", RevocationsHandler, args),
        (f"{admin}/revocations/([0-9a-f]{{1,64}})", LiftHandler, args),
        (f"{admin}/connections", ConnectionsHandler, args),
        (f"{admin}/disconnect", DisconnectHandler, args),
    ]
