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
import weakref
from collections.abc import Iterator
from typing import Any

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

#: The headers Tornado keeps of the handshake's answer (see :meth:`_shed_request`).
_RESPONSE_HEADERS = (
    "Server",
    "Date",
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Accept",
    "Sec-WebSocket-Protocol",
    "Sec-WebSocket-Extensions",
)


class _Heartbeat:
    """One timer for all of a node's WebSocket connections, in place of Tornado's ping task per
    connection (a task, its coroutine and its sleeps: about 1 KiB a connection). Every
    ``interval`` it pings each connection; ``timeout`` later (at most ``interval``; 0: never)
    those that have not answered are closed with 1000 "ping timed out", as Tornado's own
    heartbeat does."""

    def __init__(self, interval: float, timeout: float) -> None:
        self._interval = interval
        self._timeout = min(timeout, interval)
        self._members: dict[WebSocketEndpoint, None] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(self, conn: WebSocketEndpoint) -> None:
        self._members[conn] = None
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._interval, self._ping)

    def discard(self, conn: WebSocketEndpoint) -> None:
        self._members.pop(conn, None)

    def _ping(self) -> None:
        self._timer = None
        if not self._members:
            return  # the next connection starts the timer again
        pinged = [conn for conn in tuple(self._members) if conn.send_ping()]
        loop = asyncio.get_running_loop()
        if self._timeout > 0:
            loop.call_later(self._timeout, self._check, pinged)
        self._timer = loop.call_later(self._interval, self._ping)

    def _check(self, pinged: list[WebSocketEndpoint]) -> None:
        for conn in pinged:
            if conn in self._members and not conn.answered:
                conn.close(None, "ping timed out")


#: The heartbeat of each node (a node has one set of heartbeat settings).
_HEARTBEATS: weakref.WeakKeyDictionary[Node, _Heartbeat] = weakref.WeakKeyDictionary()


class WebSocketEndpoint(WebSocketHandler):
    """``/ws``: one client connection."""

    # Our state in slots: Tornado's handler already sets 27 instance attributes, and past 30
    # an instance's attributes leave the class's shared key table for a dict of their own
    # (1.5 KiB per connection).
    __slots__ = (
        "node",
        "connection_id",
        "session",
        "_outbox",
        "_ip",
        "_admitted",
        "_subject_counted",
        "_closing",
        "_close_sent",
        "_timer",
        "_subprotocol_token",
        "_opened",
        "opened_at",
        "answered",
    )

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
        self.answered = True  # the last heartbeat ping got its pong (see _Heartbeat)

    # --- Tornado settings, taken from the node's configuration ---

    @property
    def ping_interval(self) -> float | None:
        """None: Tornado's ping task per connection is replaced by the node's one
        :class:`_Heartbeat`."""
        return None

    @property
    def max_message_size(self) -> int:
        return self.node.settings.endpoint.max_message_bytes

    def get_compression_options(self) -> dict[str, Any] | None:
        """permessage-deflate for clients that offer it (every browser does), unless
        ``websocket.compression`` is off; see :class:`~.wsprotocol.StrictProtocol` for what is
        negotiated and :mod:`.frames` for how frames are compressed once per group."""
        return {} if self.node.settings.endpoint.compression else None

    @property
    def deflate(self) -> int | None:
        """The window bits of the compressed frames this client takes; None: plain frames."""
        ws = self.ws_connection
        return ws.deflate if isinstance(ws, StrictProtocol) else None

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
        endpoint = self.node.settings.endpoint
        transport = StreamTransport(ws.stream, self._broken, endpoint.send_buffer)
        self._outbox = Outbox(transport, endpoint.queue_max_bytes, self.node.pressure)
        refusal = self.node.admit(self, self._ip)
        if refusal is not None:
            self.close_with(refusal)
            return
        self._admitted = True
        self._heartbeat(join=True)
        header = self.request.headers.get("Authorization")
        query = self.get_query_argument("token", None)
        subprotocol, self._subprotocol_token = self._subprotocol_token, None
        self._shed_request()
        await self._run(self.session.handshake(header, subprotocol, query))

    def _shed_request(self) -> None:
        """Empty the upgrade request's headers and arguments, all read by now: Tornado's
        handshake coroutine holds them for the connection's whole life (about 1.5 KiB a
        connection), and they may carry the token. Tornado reads neither once the stream is
        detached; the address is kept in ``_ip``."""
        request = self.request
        request.headers.clear()
        request.arguments.clear()
        request.query_arguments.clear()
        for name in _RESPONSE_HEADERS:  # the 101 answer's, long written
            self.clear_header(name)

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
            self, request.id, request.channels, request.filter, request.since, self.deflate
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
        self.node.announce_ack(request.alert_id, action.subject, request.note)
        return True

    def _arm(self, delay: float | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if delay is not None:
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    # --- heartbeat ---

    def _heartbeat(self, join: bool) -> None:
        """Join (or leave) the node's heartbeat, when ``websocket.heartbeat.interval`` is set."""
        endpoint = self.node.settings.endpoint
        if endpoint.ping_interval is None:
            return
        beat = _HEARTBEATS.get(self.node)
        if beat is None:
            beat = _HEARTBEATS[self.node] = _Heartbeat(
                endpoint.ping_interval, endpoint.ping_timeout
            )
        if join:
            beat.add(self)
        else:
            beat.discard(self)

    def send_ping(self) -> bool:
        """A heartbeat ping; False when the connection can take none (closing)."""
        ws = self.ws_connection
        if ws is None or ws.is_closing():
            return False
        self.answered = False
        ws.write_ping(b"")
        return True

    def on_pong(self, data: bytes) -> None:
        self.answered = True

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
        outbox: Outbox | None = getattr(self, "_outbox", None)  # made in open()
        if outbox is not None:
            outbox.clear()  # a dropped peer is no longer behind
        self._heartbeat(join=False)
        if not self._admitted:
            return
        principal = self.session.principal
        subject = principal.subject if principal else None
        self.node.release(self, self._ip, subject if self._subject_counted else None)
        code = self._close_sent or self.close_code or 1006
        duration = time.monotonic() - self._opened
        self.node.record_close(self, "ws", subject, code, duration, log)
