"""The plugin's HTTP endpoints: stats, health, metrics, the dashboard and its static files."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import orjson
import tornado.web

from .auth import AuthError, Principal, TokenVerifier, bearer_token
from .metrics import Metrics
from .node import Node

STATIC_DIR = Path(__file__).parent / "static"


class BearerHandler(tornado.web.RequestHandler):
    """Base for JSON endpoints guarded by an ``Authorization: Bearer`` token with a scope.

    Subclasses set ``verifier`` and ``metrics`` in ``initialize``.
    """

    verifier: TokenVerifier
    metrics: Metrics

    def write_json(self, status: int, body: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(orjson.dumps(body, default=str))

    async def bearer(self, scope: str) -> Principal | None:
        """The request's token if it carries ``scope``; otherwise answers 401/403 and None."""
        token = bearer_token(self.request.headers.get("Authorization", ""))
        if token is None:
            self.set_header("WWW-Authenticate", "Bearer")
            self.write_json(401, {"error": "missing bearer token"})
            return None
        try:
            principal = await self.verifier.verify(token)
        except AuthError as exc:
            self.metrics.auth_failures.labels(exc.reason).inc()
            self.set_header("WWW-Authenticate", 'Bearer error="invalid_token"')
            self.write_json(401, {"error": exc.reason})
            return None
        if not principal.has(scope):
            self.write_json(403, {"error": f"token lacks the {scope} scope"})
            return None
        return principal


class NodeHandler(BearerHandler):
    """Base for handlers that serve one node."""

    def initialize(self, node: Node) -> None:
        self.node = node
        self.verifier = node.verifier
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
        token = self.node.settings["websocket.dashboard.token"]
        meta = (
            f'<meta name="netsentinel-dev-token" content="{html.escape(token)}">' if token else ""
        )
        page = page.replace("<!--DEV-TOKEN-->", meta).replace(
            "<!--WS-PATH-->", html.escape(self.node.settings["websocket.path"])
        )
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        # No inline script or style, no framing (an "Ack" button must not be clickjacked).
        self.set_header(
            "Content-Security-Policy",
            "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
            "style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
            "form-action 'self'",
        )
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")
        self.finish(page)


def routes(node: Node) -> list[tuple[str, type[tornado.web.RequestHandler], dict[str, Any]]]:
    """The URL rules the plugin contributes to the host's Application."""
    from .connection import WebSocketEndpoint

    base = node.settings["websocket.path"]
    prefix = "" if base == "/" else base
    args = {"node": node}
    return [
        (base, WebSocketEndpoint, args),
        (f"{prefix}/stats", StatsHandler, args),
        (f"{prefix}/dashboard", DashboardHandler, args),
        (f"{prefix}/static/(.*)", tornado.web.StaticFileHandler, {"path": str(STATIC_DIR)}),
        ("/healthz", HealthHandler, args),
        ("/metrics", MetricsHandler, args),
    ]
