"""The plugin's HTTP endpoints: stats, health, metrics, the dashboard and its static files."""

from __future__ import annotations

import html
import re
import time
from pathlib import Path
from typing import Any

import orjson
import tornado.web

from .auth import AuthError, Principal, TokenVerifier, bearer_token
from .metrics import Metrics
from .node import Node
from .revocation import Revocations

STATIC_DIR = Path(__file__).parent / "static"

# A Host header that can go into a CSP source expression verbatim: a DNS name, an IPv4 address or
# a bracketed IPv6 address, and an optional port. Anything else (spaces, ';', quotes, '*') could
# rewrite the policy, so the page then gets 'self' alone.
_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?"
)


class BearerHandler(tornado.web.RequestHandler):
    """Base for JSON endpoints guarded by an ``Authorization: Bearer`` token with a scope.

    Subclasses set ``verifier``, ``revocations`` and ``metrics`` in ``initialize``.
    """

    verifier: TokenVerifier
    revocations: Revocations
    metrics: Metrics

    def write_json(self, status: int, body: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(orjson.dumps(body, default=str))

    async def bearer(self, scope: str) -> Principal | None:
        """The request's token if it carries ``scope``; otherwise answers 401/403 and None."""
        principal = await self.authenticate(
            bearer_token(self.request.headers.get("Authorization", ""))
        )
        if principal is not None and not principal.has(scope):
            self.write_json(403, {"error": f"token lacks the {scope} scope"})
            return None
        return principal

    async def authenticate(self, token: str | None) -> Principal | None:
        """Whom ``token`` speaks for; otherwise answers 401 and None."""
        if token is None:
            self.set_header("WWW-Authenticate", "Bearer")
            self.write_json(401, {"error": "missing bearer token"})
            return None
        try:
            principal = await self.verifier.verify(token)
            self.revocations.check(principal, time.time())
        except AuthError as exc:
            self.metrics.auth_failures.labels(exc.reason).inc()
            self.set_header("WWW-Authenticate", 'Bearer error="invalid_token"')
            self.write_json(401, {"error": exc.reason})
            return None
        return principal


class NodeHandler(BearerHandler):
    """Base for handlers that serve one node."""

    def initialize(self, node: Node) -> None:
        self.node = node
        self.verifier = node.verifier
        self.revocations = node.revocations
        self.metrics = node.metrics


class StatsHandler(NodeHandler):
    """``GET /ws/stats``: JSON counters for operators (``admin`` scope)."""

    async def get(self) -> None:
        if await self.bearer("admin") is not None:
            self.write_json(200, self.node.stats())


class HealthHandler(NodeHandler):
    """``GET /healthz``: 200 when the broker is ready, 503 when it is not."""

    def get(self) -> None:
        ready = self.node.broker.ready
        self.node.metrics.broker_up.set(1 if ready else 0)
        body = {
            "status": "ok" if ready else "degraded",
            "node_id": self.node.node_id,
            "broker": self.node.broker.state(),
            "connections": len(self.node.connections),
        }
        self.write_json(200 if ready else 503, body)


class MetricsHandler(NodeHandler):
    """``GET /metrics``: the Prometheus text format."""

    def get(self) -> None:
        self.node.metrics.broker_up.set(1 if self.node.broker.ready else 0)
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(self.node.metrics.render())


class DashboardHandler(NodeHandler):
    """``GET /ws/dashboard``: the live page (no external assets)."""

    def get(self) -> None:
        page = (STATIC_DIR / "dashboard.html").read_text(encoding="utf-8")
        pages = self.node.settings.http
        token = pages.dashboard_token
        meta = (
            f'<meta name="netsentinel-dev-token" content="{html.escape(token)}">' if token else ""
        )
        page = page.replace("<!--DEV-TOKEN-->", meta).replace(
            "<!--WS-PATH-->", html.escape(pages.path)
        )
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        # No inline script or style, no framing (an "Ack" button must not be clickjacked), and
        # WebSockets only to this page's own host: a script injected somehow cannot ship the
        # feed elsewhere. Browsers before CSP 3 do not count ws(s) of the same host as 'self'.
        host = self.request.host
        own = f" ws://{host} wss://{host}" if _HOST.fullmatch(host) else ""
        self.set_header(
            "Content-Security-Policy",
            f"default-src 'self'; connect-src 'self'{own}; img-src 'self' data:; "
            "style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
            "form-action 'self'",
        )
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")
        self.finish(page)


class StaticFiles(tornado.web.StaticFileHandler):
    """The dashboard's files; a path the filesystem cannot even look up (a NUL byte, a name too
    long) is a 404, not an uncaught exception with a traceback in the log."""

    def validate_absolute_path(self, root: str, absolute_path: str) -> str | None:
        try:
            return super().validate_absolute_path(root, absolute_path)
        except (ValueError, OSError):
            raise tornado.web.HTTPError(404) from None


def routes(node: Node) -> list[tuple[str, type[tornado.web.RequestHandler], dict[str, Any]]]:
    """The URL rules the plugin contributes to the host's Application."""
    from .connection import WebSocketUpgrade

    base = node.settings.http.path
    prefix = "" if base == "/" else base
    args = {"node": node}
    return [
        (base, WebSocketUpgrade, args),
        (f"{prefix}/stats", StatsHandler, args),
        (f"{prefix}/dashboard", DashboardHandler, args),
        (f"{prefix}/static/(.*)", StaticFiles, {"path": str(STATIC_DIR)}),
        ("/healthz", HealthHandler, args),
        ("/metrics", MetricsHandler, args),
    ]
