"""The WebSocket endpoint: a thin Tornado adapter around :class:`~.session.Session`.

The session decides (authentication, dispatch, scopes, timers, replies, closes); this module
carries out its actions: it verifies tokens, calls the hub and the host's hook, runs the one
timer, and writes through the connection's :class:`~.outbox.Outbox`, which owns the outbound
bound (``websocket.queue.max_bytes``) and the slow-consumer rule (4009).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Iterator

from tornado.websocket import WebSocketHandler, WebSocketProtocol, WebSocketProtocol13

from . import audit, disconnect, protocol
from .auth import AuthError
from .disconnect import Disconnect
from .frames import text_frame
from .node import Node
from .outbox import Outbox
from .session import (
    Acknowledge,
    Action,
    Arm,
    Close,
    Fail,
    Join,
    Leave,
    Regroup,
    Send,
    Session,
    Verify,
)
from .transport import StreamTransport
from .wsprotocol import StrictProtocol

log = logging.getLogger("netsentinel_websocket.connection")


class WebSocketEndpoint(WebSocketHandler):
    """``/ws``: one client connection."""

    def initialize(self, node: Node) -> None:
        self.node = node
        self.connection_id = secrets.token_hex(8)
        self.session = Session(
            node.settings.session,
            node.channels,
            self.connection_id,
            node.node_id,
            time.monotonic(),
        )
        self._outbox: Outbox  # made in open(), once Tornado has a stream
        self._ip = self.request.remote_ip or "?"
        self._admitted = False
        self._subject_counted = False
        self._closing = False
        self._close_sent: int | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._subprotocol_token: str | None = None
        self._opened = time.monotonic()
        self.opened_at = time.time()  # for the admin's connection list

    # --- Tornado settings, taken from the node's configuration ---

    @property
    def ping_interval(self) -> float | None:
        return self.node.settings.endpoint.ping_interval

    @property
    def ping_timeout(self) -> float | None:
        return self.node.settings.endpoint.ping_timeout

    @property
    def max_message_size(self) -> int:
        return self.node.settings.endpoint.max_message_bytes

    def get_websocket_protocol(self) -> WebSocketProtocol | None:
        protocol = super().get_websocket_protocol()
        if isinstance(protocol, WebSocketProtocol13):
            return StrictProtocol(self, False, protocol.params)
        return protocol

    def check_origin(self, origin: str) -> bool:
        return self.node.origin_allowed(origin, self.request.host)

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        self._subprotocol_token = protocol.token_from_subprotocols(subprotocols)
        return protocol.SUBPROTOCOL if protocol.SUBPROTOCOL in subprotocols else None

    # --- the Subscriber side used by the hub ---

    @property
    def sensitive(self) -> bool:
        principal = self.session.principal
        return principal is not None and principal.sensitive

    @property
    def closed(self) -> bool:
        """True once no more frames may go out: we are closing, or Tornado is (the client's
        close frame, a ping timeout, a dropped stream)."""
        ws = self.ws_connection
        return self._closing or ws is None or ws.is_closing()

    @property
    def address(self) -> str:
        return self._ip

    @property
    def events_sent(self) -> int:
        return self._outbox.sent

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting in the outbox behind the write in flight."""
        return self._outbox.queued

    def send_frame(self, frame: bytes, count: int = 0) -> None:
        """Write a prepared frame in order; over the outbound bound the client is closed with
        4009. Never raises, never waits."""
        if not self.closed and not self._outbox.push(frame, count):
            self._slow_consumer()

    def send_replay(self, frames: Iterator[tuple[bytes, int]]) -> None:
        """Write a resume replay, one frame per completed write (see :mod:`outbox`)."""
        if not self.closed and not self._outbox.push_replay(frames):
            self._slow_consumer()

    def _slow_consumer(self) -> None:
        """Over the bound: drop what is queued; the close frame follows the write in flight."""
        self.node.metrics.slow_consumer_closes.inc()
        self.close_with(disconnect.SLOW_CONSUMER)

    def _broken(self) -> None:
        self.node.metrics.write_errors.inc()
        self.abort()

    # --- Tornado's callbacks, handed to the session ---

    async def open(self) -> None:
        self.set_nodelay(True)
        ws = self.ws_connection
        assert ws is not None and ws.stream is not None
        transport = StreamTransport(ws.stream, self._broken)
        self._outbox = Outbox(transport, self.node.settings.endpoint.queue_max_bytes)
        refusal = self.node.admit(self, self._ip)
        if refusal is not None:
            self.close_with(refusal)
            return
        self._admitted = True
        await self._run(
            self.session.handshake(
                self.request.headers.get("Authorization"),
                self._subprotocol_token,
                self.get_query_argument("token", None),
            )
        )

    async def on_message(self, message: str | bytes) -> None:
        await self._run(self.session.receive(message, time.monotonic(), time.time()))

    def _on_timer(self) -> None:
        self._timer = None
        self._apply_all(self.session.timer())

    # --- carrying out the session's actions ---

    async def _run(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Verify):
                await self._verify(action)
            elif isinstance(action, Join):
                await self._join(action)
            else:
                self._apply(action)

    def _apply_all(self, actions: list[Action]) -> None:
        """Actions that need no waiting (a timer, a close decided outside the session)."""
        for action in actions:
            self._apply(action)

    def _apply(self, action: Action) -> None:
        if isinstance(action, Send):
            self.send_frame(text_frame(action.message))
        elif isinstance(action, Fail):
            self.node.metrics.client_errors.labels(action.error.code).inc()
            error = action.error
            self.send_frame(text_frame(protocol.error(error.code, error.message, error.request_id)))
        elif isinstance(action, Close):
            self._close(action.disconnect)
        elif isinstance(action, Arm):
            self._arm(action.delay)
        elif isinstance(action, Leave):
            self.node.hub.unsubscribe(self, action.channels)
        elif isinstance(action, Regroup):
            self.node.hub.regroup(self)
        elif isinstance(action, Acknowledge):
            recorded = self._acknowledge(action)
            request = action.request
            outcome = {True: "ok", False: "failed", None: "unavailable"}[recorded]
            audit.record(
                "ack",
                action.subject,
                self._ip,
                outcome,
                conn=self.connection_id,
                alert_id=request.alert_id,
                note=request.note,
            )
            self._apply_all(self.session.acknowledged(request.id, recorded))

    async def _verify(self, action: Verify) -> None:
        first = self.session.principal is None
        try:
            principal = await self.node.verifier.verify(action.token)
            self.node.revocations.check(principal, time.time())
        except AuthError as exc:
            await self._run(self.session.refused(exc.reason))
            return
        if first and not self.closed:
            refusal = self.node.admit_subject(principal.subject)
            if refusal is not None:
                self.close_with(refusal)
                return
            self._subject_counted = True
            log.info(
                "open id=%s sub=%r addr=%s",
                self.connection_id,
                principal.subject,
                self._ip,
                extra={
                    "event": "ws_open",
                    "conn": self.connection_id,
                    "subject": principal.subject,
                    "address": self._ip,
                },
            )
        await self._run(self.session.verified(principal, action.request_id, time.time()))

    async def _join(self, action: Join) -> None:
        request = action.request
        principal = self.session.principal
        audit.record(
            "subscribe",
            principal.subject if principal is not None else None,
            self._ip,
            "ok",
            conn=self.connection_id,
            channels=list(request.channels),
        )
        await self.node.hub.subscribe(
            self, request.id, request.channels, request.filter, request.since
        )

    def _acknowledge(self, action: Acknowledge) -> bool | None:
        """The host records the acknowledgement; None when nothing implements the hook (an
        ``ack_ok`` must mean someone recorded it)."""
        hook = self.node.ack_hook
        if hook is None or not hook.get_hookimpls():
            return None
        request = action.request
        try:
            hook(alert_id=request.alert_id, subject=action.subject, note=request.note)
        except Exception:
            log.exception("netsentinel_alert_acknowledged failed for alert %r", request.alert_id)
            return False
        return True

    def _arm(self, delay: float | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if delay is not None:
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    # --- closing ---

    def close_with(self, reason: Disconnect) -> None:
        """Close for a reason decided outside the protocol (caps, shutdown, slow consumer)."""
        self._apply_all(self.session.close(reason))

    def close_when_drained(self, reason: Disconnect) -> None:
        """Close after what is queued has been written (graceful shutdown); takes no new
        frames meanwhile, so a busy feed cannot keep the queue from draining."""
        self._closing = True
        self._outbox.when_idle(lambda: self.close_with(reason))

    def _close(self, reason: Disconnect) -> None:
        if self._close_sent is not None:
            return
        if reason.code == disconnect.UNAUTHENTICATED.code:
            self.node.metrics.auth_failures.labels(reason.reason).inc()
            log.info(
                "auth refused id=%s addr=%s reason=%s", self.connection_id, self._ip, reason.reason
            )
        self._closing = True
        self._close_sent = reason.code
        self._outbox.clear()
        self.close(reason.code, reason.reason)

    def abort(self) -> None:
        """Drop the connection at once (dead peer, or shutdown grace over): closing the stream
        runs Tornado's own teardown, which ends in :meth:`on_close`."""
        self._closing = True
        ws = self.ws_connection
        if ws is not None and ws.stream is not None:
            ws.stream.close()
        else:
            self.on_connection_close()

    def on_close(self) -> None:
        self._closing = True
        self._arm(None)
        if not self._admitted:
            return
        principal = self.session.principal
        subject = principal.subject if principal else None
        self.node.release(self, self._ip, subject if self._subject_counted else None)
        code = self._close_sent or self.close_code or 1006
        duration = time.monotonic() - self._opened
        self.node.record_close(self, "ws", subject, code, duration, log)
