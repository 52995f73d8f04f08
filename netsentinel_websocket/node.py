"""One running instance of the plugin: settings, broker, hub, verifier, metrics, connections.

The node is the glue the Tornado handlers and the processor share; it holds no protocol logic
of its own beyond connection admission (the caps) and turning pipeline events into
publications.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pluggy import HookCaller

from . import disconnect
from .auth import JWTSettings, TokenVerifier
from .broker import Broker
from .broker_memory import MemoryBroker
from .config import ConfigError, Settings
from .disconnect import Disconnect
from .events import EventError, normalize_event, serialize_event
from .hub import Hub
from .metrics import Metrics
from .positions import PreparedEvent
from .redact import Redactor
from .routing import Router

log = logging.getLogger("netsentinel_websocket")


def build_verifier(settings: Settings) -> TokenVerifier:
    """The token verifier for these settings; a key that cannot work is a ConfigError."""
    key_path = settings["websocket.auth.jwt.public_key"]
    try:
        public_key = Path(key_path).read_text() if key_path else None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("websocket.auth.jwt.public_key", f"cannot read: {exc}") from None
    jwt_settings = JWTSettings(
        algorithms=settings["websocket.auth.jwt.algorithms"],
        secret=settings["websocket.auth.jwt.secret"],
        public_key=public_key,
        jwks_url=settings["websocket.auth.jwt.jwks_url"],
        audience=settings["websocket.auth.jwt.audience"],
        issuer=settings["websocket.auth.jwt.issuer"],
        leeway=settings["websocket.auth.jwt.leeway"],
        jwks_min_refresh=settings["websocket.auth.jwt.jwks_min_refresh"],
        jwks_max_age=settings["websocket.auth.jwt.jwks_max_age"],
    )
    try:
        return TokenVerifier(jwt_settings)
    except ValueError as exc:
        key = "websocket.auth.jwt.public_key" if public_key else "websocket.auth.jwt.algorithms"
        if "secret" in str(exc):
            key = "websocket.auth.jwt.secret"
        raise ConfigError(key, str(exc)) from None


class Node:
    """Everything one plugin instance runs with."""

    def __init__(self, settings: Settings, broker: Broker | None = None) -> None:
        self.settings = settings
        self.node_id = settings["websocket.node_id"] or f"{socket.gethostname()}-{os.getpid()}"
        self.metrics = Metrics()
        self.verifier = build_verifier(settings)
        self.channels = tuple(settings["websocket.channels"])
        self.router = Router(settings["websocket.routes"])
        self.redactor = Redactor(settings["websocket.redact"])
        self.broker = broker or self._engine()
        self.hub = Hub(self.broker, self.redactor, self.metrics)
        self.ack_hook: HookCaller | None = None  # the host's netsentinel_alert_acknowledged
        self.connections: dict[Any, None] = {}
        self._per_ip: Counter[str] = Counter()
        self._per_subject: Counter[str] = Counter()
        self._published = {c: self.metrics.events_published.labels(c) for c in self.channels}
        self._max_event_bytes: int = settings["websocket.limits.max_event_bytes"]
        self._started = False
        self._stopping = False
        self._drained = asyncio.Event()  # set whenever no connection is open
        self._drained.set()
        self.started_at = time.time()

    def _engine(self) -> Broker:
        """The broker ``websocket.broker`` names: the node is where the engine is chosen, so
        the broker interface knows none of its implementations."""
        s = self.settings
        if s["websocket.broker"] == "memory":
            return MemoryBroker(s["websocket.history.size"], s["websocket.history.max_bytes"])
        from .broker_redis import RedisBroker  # needs the optional redis package

        return RedisBroker(
            s["websocket.broker"],
            s["websocket.history.size"],
            history_bytes=s["websocket.history.max_bytes"],
            metrics=self.metrics,
            buffer_size=s["websocket.broker.buffer"],
            channels=self.channels,
        )

    # --- lifecycle ---

    async def start(self) -> None:
        """Start the broker (idempotent: the host may call both startup and processor.start)."""
        if self._started:
            return
        self._started = True
        await self.broker.start(self.hub.on_publication)
        self.metrics.broker_up.set(1 if self.broker.ready else 0)

    async def stop(self) -> None:
        """Flush, close every client with 1001 (after its queue drains, within the grace), stop."""
        if not self._started or self._stopping:
            return
        self._stopping = True
        self.hub.flush()
        grace = self.settings["websocket.shutdown.grace"]
        deadline = time.monotonic() + grace
        for conn in list(self.connections):
            conn.close_when_drained(disconnect.SHUTDOWN)
        if self.connections:
            try:
                await asyncio.wait_for(self._drained.wait(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                pass
        for conn in list(self.connections):
            conn.abort()
        await self.broker.stop()
        self._started = False
        self._stopping = False

    @property
    def stopping(self) -> bool:
        return self._stopping

    # --- the pipeline side ---

    def publish(self, event: Any) -> None:
        """Normalize, route and hand an event to the broker; O(1) in subscribers, never awaits."""
        try:
            normalized = normalize_event(event)
            full = serialize_event(normalized, self._max_event_bytes)
        except EventError as exc:
            self.metrics.pipeline_rejected.labels(exc.reason).inc()
            log.warning("pipeline event dropped: %s", exc)
            return
        self.metrics.events_in.inc()
        channels = self.router.route(normalized["event_type"], normalized["severity"])
        if not channels:
            return
        prepared = PreparedEvent(normalized, time.time(), full)
        for channel in channels:
            self.broker.publish(channel, prepared)
            self._published[channel].inc()

    # --- connection admission ---

    def admit(self, conn: Any, ip: str) -> Disconnect | None:
        """Register a new connection; how to close it when a global or per-address cap is
        reached or the node is stopping."""
        if self._stopping:
            return disconnect.SHUTDOWN
        if len(self.connections) >= self.settings["websocket.limits.max_connections"]:
            return disconnect.TOO_MANY
        if self._per_ip[ip] >= self.settings["websocket.limits.per_ip"]:
            return disconnect.TOO_MANY.because("too many connections from this address")
        self.connections[conn] = None
        self._drained.clear()
        self._per_ip[ip] += 1
        self.metrics.connections.set(len(self.connections))
        return None

    def admit_subject(self, subject: str) -> Disconnect | None:
        """Count an authenticated subject; how to close the connection when its cap is
        reached."""
        if self._per_subject[subject] >= self.settings["websocket.limits.per_subject"]:
            return disconnect.TOO_MANY.because("too many connections for this subject")
        self._per_subject[subject] += 1
        return None

    def release(self, conn: Any, ip: str, subject: str | None) -> None:
        """Forget a closed connection."""
        if self.connections.pop(conn, False) is not False:
            _decrement(self._per_ip, ip)
        if subject is not None:
            _decrement(self._per_subject, subject)
        self.hub.remove(conn)
        self.metrics.connections.set(len(self.connections))
        if not self.connections:
            self._drained.set()

    def origin_allowed(self, origin: str, host: str) -> bool:
        """Browsers must come from a listed origin or the same origin (the dashboard page).

        Same-origin is always allowed, as Tornado 6.6+ does before asking us; comparing the
        parsed host:port keeps older Tornado versions in step."""
        origin = origin.lower()  # browsers send scheme and host in lower case; configs may not
        if any(o == "*" or o.lower() == origin for o in self.settings["websocket.allowed_origins"]):
            return True
        return urlsplit(origin).netloc == host.lower()

    def stats(self) -> dict[str, Any]:
        """Counters for ``/ws/stats``."""
        return {
            "node_id": self.node_id,
            "uptime": time.time() - self.started_at,
            "connections": len(self.connections),
            "subscribers": self.hub.subscriber_counts(),
            "channels": {c: self.broker.position(c).as_dict() for c in self.channels},
            "broker": self.broker.state(),
        }


def _decrement(counter: Counter[str], key: str) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]
