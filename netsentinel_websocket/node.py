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
from collections.abc import Collection
from typing import Any, Protocol
from urllib.parse import urlsplit

from pluggy import HookCaller

from . import disconnect
from .auth import Principal, TokenVerifier
from .broker import Broker
from .broker_memory import MemoryBroker
from .config import ConfigError, WebSocketSettings
from .disconnect import Disconnect
from .events import EventError, normalize_event, serialize_event
from .geo import GeoError, GeoIP, open_backend
from .hub import Hub, Subscriber
from .metrics import Metrics, close_label
from .positions import PreparedEvent
from .pressure import Pressure
from .redact import Redactor
from .revocation import Revocation, Revocations
from .routing import Router

log = logging.getLogger("netsentinel_websocket")

#: The event type of an acknowledgement announcement (see :meth:`Node.announce_ack`).
ACK_EVENT_TYPE = "alert.acknowledged"


class Seat(Protocol):
    """What every connection holds of its session: whom it speaks for (None until a token is
    accepted) and the channels it is on."""

    @property
    def principal(self) -> Principal | None: ...

    @property
    def subscriptions(self) -> Collection[str]: ...


class Connection(Subscriber, Protocol):
    """What the node (admission, shutdown, revocation) and the admin API need of a connection,
    a WebSocket (``connection.WebSocketEndpoint``) or an SSE reader (``feeds.SSEHandler``)."""

    connection_id: str
    opened_at: float

    @property
    def address(self) -> str: ...

    @property
    def session(self) -> Seat: ...

    @property
    def events_sent(self) -> int: ...

    @property
    def queued_bytes(self) -> int: ...

    def close_with(self, reason: Disconnect) -> None: ...

    def close_when_drained(self, reason: Disconnect) -> None: ...

    def abort(self) -> None: ...


class Node:
    """Everything one plugin instance runs with.

    ``settings`` holds the sections of the handlers it serves (``endpoint``, ``session``,
    ``http``) as well as its own (``node``) and the verifier's (``jwt``)."""

    def __init__(self, settings: WebSocketSettings, broker: Broker | None = None) -> None:
        self.settings = settings
        own = settings.node
        self.node_id = own.node_id or f"{socket.gethostname()}-{os.getpid()}"
        self.metrics = Metrics()
        self.verifier = TokenVerifier(settings.jwt)
        self.channels = own.channels
        self.router = Router(own.routes)
        self.redactor = Redactor(own.redact)
        self.geoip = self._geoip()
        self.broker = broker or self._engine()
        self.revocations = Revocations(self._revoked)  # kept in step by the broker
        self.broker.follow_revocations(self.revocations)
        self.hub = Hub(self.broker, self.redactor, self.metrics)
        self.ack_hook: HookCaller | None = None  # the host's netsentinel_alert_acknowledged
        self.connections: dict[Connection, None] = {}
        # how far the connections are behind: the runner's ingest waits on it
        self.pressure = Pressure(
            own.pressure, self.connections.__len__, self.metrics.ingest_held.inc
        )
        self._per_ip: Counter[str] = Counter()
        self._per_subject: Counter[str] = Counter()
        self._events_in = self.metrics.events_in.labels()
        self._published = {c: self.metrics.events_published.labels(c) for c in self.channels}
        self._started = False
        self._stopping = False
        self._drained = asyncio.Event()  # set whenever no connection is open
        self._drained.set()
        self.started_at = time.time()

    def _engine(self) -> Broker:
        """The broker ``websocket.broker`` names: the node is where the engine is chosen, so
        the broker interface knows none of its implementations."""
        own = self.settings.node
        if own.broker == "memory":
            return MemoryBroker(own.history_size, own.history_max_bytes)
        from .broker_redis import RedisBroker  # needs the optional redis package

        return RedisBroker(
            own.broker,
            own.history_size,
            history_bytes=own.history_max_bytes,
            metrics=self.metrics,
            buffer_size=own.broker_buffer,
            channels=self.channels,
            max_event_bytes=own.max_event_bytes,
        )

    def _geoip(self) -> GeoIP | None:
        """Country enrichment when enabled; data that vanished since validation still names
        its key."""
        own = self.settings.node.geoip
        if not own.enabled:
            return None
        try:
            return GeoIP(open_backend(own.database))
        except GeoError as exc:
            raise ConfigError("websocket.geoip.database", str(exc)) from None

    # --- lifecycle ---

    async def start(self) -> None:
        """Start the broker (idempotent: the host may call both startup and processor.start)."""
        if self._started:
            return
        self._started = True
        await self.broker.start(self.hub.on_publication, self.hub.on_loss)
        self.metrics.broker_up.set(1 if self.broker.ready else 0)

    async def stop(self) -> None:
        """Deliver what was published (the broker's :meth:`~Broker.delivered`), flush, close
        every client with 1001 (after its queue drains), stop; all within the grace. The host
        stops publishing first (the runner refuses ingest), so nothing acknowledged is left."""
        if not self._started or self._stopping:
            return
        self._stopping = True
        deadline = time.monotonic() + self.settings.node.shutdown_grace
        try:
            await asyncio.wait_for(self.broker.delivered(), self.settings.node.shutdown_grace)
        except asyncio.TimeoutError:
            log.warning("shutdown: the broker did not deliver everything within the grace")
        self.hub.flush()
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

    # --- the pipeline side ---

    def publish(self, event: Any) -> None:
        """Normalize, enrich, route and hand an event to the broker; O(1) in subscribers, never
        awaits."""
        try:
            normalized = normalize_event(event)
            if self.geoip is not None:
                self.geoip.enrich(normalized)
            full = serialize_event(normalized, self.settings.node.max_event_bytes)
        except EventError as exc:
            self.metrics.pipeline_rejected.labels(exc.reason).inc()
            log.warning("pipeline event dropped: %s", exc)
            return
        self._events_in.inc()
        channels = self.router.route(normalized["event_type"], normalized["severity"])
        if not channels:
            return
        prepared = PreparedEvent(normalized, time.time(), full)
        for channel in channels:
            self.broker.publish(channel, prepared)
            self._published[channel].inc()

    def announce_ack(self, alert_id: str, subject: str, note: str | None) -> None:
        """Publish an acknowledgement the host recorded as an ordinary ``alert.acknowledged``
        event (routed like any ``alert.*``, to ``alerts`` by default), so every open dashboard
        on every node sees who acknowledged what and when, and history keeps it."""
        self.publish(
            {
                "event_type": ACK_EVENT_TYPE,
                "severity": "info",
                "source": "netsentinel-websocket",
                "data": {"alert_id": alert_id, "by": subject, "note": note, "at": time.time()},
                "tags": ["ack"],
            }
        )

    # --- connection admission ---

    def admit(self, conn: Connection, ip: str) -> Disconnect | None:
        """Register a new connection; how to close it when a global or per-address cap is
        reached or the node is stopping."""
        if self._stopping:
            return disconnect.SHUTDOWN
        limits = self.settings.node.limits
        if len(self.connections) >= limits.max_connections:
            return disconnect.TOO_MANY
        if self._per_ip[ip] >= limits.per_ip:
            return disconnect.TOO_MANY.because("too many connections from this address")
        self.connections[conn] = None
        self._drained.clear()
        self._per_ip[ip] += 1
        self.metrics.connections.set(len(self.connections))
        return None

    def admit_subject(self, subject: str) -> Disconnect | None:
        """Count an authenticated subject; how to close the connection when its cap is
        reached."""
        if self._per_subject[subject] >= self.settings.node.limits.per_subject:
            return disconnect.TOO_MANY.because("too many connections for this subject")
        self._per_subject[subject] += 1
        return None

    def release(self, conn: Connection, ip: str, subject: str | None) -> None:
        """Forget a closed connection."""
        if self.connections.pop(conn, False) is not False:
            _decrement(self._per_ip, ip)
        if subject is not None:
            _decrement(self._per_subject, subject)
        self.hub.remove(conn)
        self.metrics.connections.set(len(self.connections))
        if not self.connections:
            self._drained.set()

    def record_close(
        self,
        conn: Connection,
        kind: str,
        subject: str | None,
        code: int,
        duration: float,
        logger: logging.Logger,
    ) -> None:
        """Count a closed connection (``kind`` ``ws`` or ``sse``) under its close code's label
        and write its close line: one accounting for both kinds of connection."""
        self.metrics.closes.labels(close_label(code)).inc()
        logger.info(
            "%s id=%s sub=%r addr=%s code=%s duration=%.1fs events=%d",
            "close" if kind == "ws" else f"{kind} close",
            conn.connection_id,
            subject or "-",
            conn.address,
            code,
            duration,
            conn.events_sent,
            extra={
                "event": f"{kind}_close",
                "conn": conn.connection_id,
                "subject": subject,
                "address": conn.address,
                "code": code,
                "duration": round(duration, 3),
                "events_sent": conn.events_sent,
            },
        )

    def _revoked(self, revocation: Revocation) -> None:
        """A revocation came into force (from any node): close the live connections it
        refuses, at once."""
        for conn in list(self.connections):
            principal = conn.session.principal
            if principal is not None and revocation.refuses(principal):
                conn.close_with(disconnect.REVOKED)

    def origin_allowed(self, origin: str, host: str) -> bool:
        """Browsers must come from a listed origin or the same origin (the dashboard page).

        Same-origin is always allowed, as Tornado 6.6+ does before asking us; comparing the
        parsed host:port keeps older Tornado versions in step."""
        origin = origin.lower()  # browsers send scheme and host in lower case; configs may not
        if any(o == "*" or o.lower() == origin for o in self.settings.node.allowed_origins):
            return True
        return urlsplit(origin).netloc == host.lower()

    def stats(self) -> dict[str, Any]:
        """Counters for ``/ws/stats``."""
        return {
            "node_id": self.node_id,
            "uptime": time.time() - self.started_at,
            "connections": len(self.connections),
            "behind": self.pressure.behind,
            "subscribers": self.hub.subscriber_counts(),
            "channels": {c: self.broker.position(c).as_dict() for c in self.channels},
            "broker": self.broker.state(),
        }


def _decrement(counter: Counter[str], key: str) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]
