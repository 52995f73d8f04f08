"""The WebSocket endpoint: one client connection's lifecycle on top of Tornado.

Protocol decisions come from the pure modules (``protocol``, ``auth``, ``ratelimit``); this
module moves bytes and runs timers. Every server message goes through one ordered outbound
path: straight to the socket when nothing is pending, else into a bounded per-connection queue
(``websocket.queue.max_bytes``) that is drained one write at a time; a client over the bound is
closed with 4009, and the close frame follows at most one frame already in flight.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Iterator

from tornado.iostream import SSLIOStream, StreamClosedError
from tornado.websocket import WebSocketHandler, WebSocketProtocol, WebSocketProtocol13

from . import protocol
from .auth import AuthError, Principal, bearer_token
from .frames import text_frame
from .metrics import close_label
from .node import Node
from .outbox import Outbox
from .protocol import Ack, Auth, Ping, ProtocolError, Subscribe, Unsubscribe
from .ratelimit import TokenBucket, Verdict
from .wsprotocol import StrictProtocol

log = logging.getLogger("netsentinel_websocket.connection")

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED = 1003
CLOSE_UNAUTHENTICATED = 4001
CLOSE_TOKEN_EXPIRED = 4004
CLOSE_RATE = 4008
CLOSE_SLOW = 4009
CLOSE_TOO_MANY = 4029


class WebSocketEndpoint(WebSocketHandler):
    """``/ws``: authenticate, then subscribe/unsubscribe/ping/auth/ack and receive events."""

    def initialize(self, node: Node) -> None:
        self.node = node
        self.principal: Principal | None = None
        self.connection_id = secrets.token_hex(8)
        self._outbox: Outbox  # made in open(), once Tornado has a stream
        self._ip = self.request.remote_ip or "?"
        self._admitted = False
        self._subject_counted = False
        self._closing = False
        self._close_sent: int | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._bucket = TokenBucket(node.settings["websocket.limits.messages_per_second"], 0)
        self._subprotocol_token: str | None = None
        self._opened = time.monotonic()

    # --- Tornado settings, taken from the node's configuration ---

    @property
    def ping_interval(self) -> float | None:
        return self.node.settings["websocket.heartbeat.interval"] or None

    @property
    def ping_timeout(self) -> float | None:
        return self.node.settings["websocket.heartbeat.timeout"]

    @property
    def max_message_size(self) -> int:
        return self.node.settings["websocket.limits.max_message_bytes"]

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
        return self.principal is not None and self.principal.sensitive

    @property
    def closed(self) -> bool:
        """True once no more frames may go out: we are closing, or Tornado is (the client's
        close frame, a ping timeout, a dropped stream)."""
        ws = self.ws_connection
        return self._closing or ws is None or ws.is_closing()

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

    def _send(self, message: bytes) -> None:
        self.send_frame(text_frame(message))

    def _slow_consumer(self) -> None:
        """Over the bound: drop what is queued; the close frame follows the write in flight."""
        self.node.metrics.slow_consumer_closes.inc()
        self._close(CLOSE_SLOW, "slow consumer")

    def _broken(self) -> None:
        self.node.metrics.write_errors.inc()
        self.abort()

    # --- lifecycle ---

    async def open(self) -> None:
        self.set_nodelay(True)
        self._outbox = Outbox(
            _StreamTransport(self), self.node.settings["websocket.queue.max_bytes"]
        )
        reason = self.node.admit(self, self._ip)
        if reason is not None:
            self._close(CLOSE_TOO_MANY if reason != "server shutting down" else 1001, reason)
            return
        self._admitted = True
        token, problem = self._handshake_token()
        if problem:
            self._refuse(problem)
        elif token is not None:
            await self._authenticate(token, None)
        else:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(
                self.node.settings["websocket.auth.timeout"], self._refuse, "auth timeout"
            )

    def _handshake_token(self) -> tuple[str | None, str | None]:
        """The token from the header, the subprotocol or (if allowed) the query."""
        header = self.request.headers.get("Authorization")
        if header is not None:
            token = bearer_token(header)
            return (token, None) if token else (None, "malformed authorization header")
        if self._subprotocol_token is not None:
            return self._subprotocol_token, None
        query = self.get_query_argument("token", None)
        if query is not None:
            if not self.node.settings["websocket.auth.allow_query_token"]:
                return None, "query token not allowed"
            return query, None
        return None, None

    async def _authenticate(self, token: str, request_id: protocol.RequestId) -> None:
        """First authentication or an in-band refresh."""
        try:
            principal = await self.node.verifier.verify(token)
        except AuthError as exc:
            self._refuse(exc.reason)
            return
        if self._closing:
            return
        previous = self.principal
        if previous is None:
            reason = self.node.admit_subject(principal.subject)
            if reason is not None:
                self._close(CLOSE_TOO_MANY, reason)
                return
            self._subject_counted = True
            self.principal = principal
            self._send(
                protocol.welcome(
                    self.connection_id,
                    self.node.node_id,
                    time.time(),
                    principal.allowed_channels(self.node.channels),
                    principal.expires_at,
                )
            )
            log.info(
                "open id=%s sub=%s addr=%s",
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
        else:
            if principal.subject != previous.subject:
                self._refuse("subject changed")
                return
            self.principal = principal
            lost = [c for c in self.node.hub.subscriptions(self) if not principal.can_subscribe(c)]
            if lost:
                self.node.hub.unsubscribe(self, lost)
                self._send(protocol.reply("unsubscribed", None, channels=lost))
            if principal.sensitive != previous.sensitive:
                self.node.hub.regroup(self)
        if request_id is not None or previous is not None:
            self._send(protocol.reply("auth_ok", request_id, expires_at=int(principal.expires_at)))
        self._arm_expiry(principal)

    def _arm_expiry(self, principal: Principal) -> None:
        if self._timer is not None:
            self._timer.cancel()
        delay = principal.expires_at + self.node.settings["websocket.auth.jwt.leeway"] - time.time()
        self._timer = asyncio.get_running_loop().call_later(
            max(0.0, delay), self._close, CLOSE_TOKEN_EXPIRED, "token expired"
        )

    def _refuse(self, reason: str) -> None:
        self.node.metrics.auth_failures.labels(reason).inc()
        log.info("auth refused id=%s addr=%s reason=%s", self.connection_id, self._ip, reason)
        self._close(CLOSE_UNAUTHENTICATED, reason)

    async def on_message(self, message: str | bytes) -> None:
        if self._closing:
            return
        if isinstance(message, bytes):
            self._close(CLOSE_UNSUPPORTED, "binary frames are not accepted")
            return
        if self.principal is None:
            await self._first_message(message)
            return
        verdict = self._bucket.take(time.monotonic())
        if verdict is Verdict.CLOSE:
            self._close(CLOSE_RATE, "message rate exceeded")
            return
        if verdict is Verdict.LIMITED:
            # not parsed any further, but the reply still names its request
            request_id = protocol.peek_id(message)
            self._error(ProtocolError("rate_limited", "too many messages; slow down", request_id))
            return
        try:
            request = protocol.parse(message)
            await self._dispatch(request)
        except ProtocolError as exc:
            self._error(exc)

    async def _first_message(self, message: str) -> None:
        try:
            request = protocol.parse(message)
        except ProtocolError:
            request = None
        if not isinstance(request, Auth):
            self._refuse("authentication required")
            return
        await self._authenticate(request.token, request.id)

    async def _dispatch(self, request: protocol.Request) -> None:
        assert self.principal is not None
        if isinstance(request, Subscribe):
            await self._subscribe(request)
        elif isinstance(request, Unsubscribe):
            removed = self.node.hub.unsubscribe(self, request.channels)
            self._send(protocol.reply("unsubscribed", request.id, channels=removed))
        elif isinstance(request, Ping):
            self._send(protocol.reply("pong", request.id, server_time=time.time()))
        elif isinstance(request, Auth):
            await self._authenticate(request.token, request.id)
        elif isinstance(request, Ack):
            self._acknowledge(request)

    async def _subscribe(self, request: Subscribe) -> None:
        principal = self.principal
        assert principal is not None
        for channel in request.channels:
            if channel not in self.node.channels:
                raise ProtocolError("unknown_channel", f"no channel {channel!r}", request.id)
            if not principal.can_subscribe(channel):
                raise ProtocolError("forbidden", f"token does not allow {channel!r}", request.id)
        current = self.node.hub.subscriptions(self)
        total = len(set(current) | set(request.channels))
        if total > self.node.settings["websocket.limits.max_subscriptions"]:
            raise ProtocolError("too_many_subscriptions", "subscription limit reached", request.id)
        channels = list(request.channels)
        await self.node.hub.subscribe(
            self,
            channels,
            request.filter,
            request.since,
            lambda positions, recovered: protocol.subscribed(
                request.id, channels, positions, recovered
            ),
        )

    def _acknowledge(self, request: Ack) -> None:
        principal = self.principal
        assert principal is not None
        if not principal.has("alerts:ack"):
            raise ProtocolError("forbidden", "token lacks alerts:ack", request.id)
        hook = self.node.ack_hook
        if hook is None or not hook.get_hookimpls():  # an ack_ok must mean someone recorded it
            raise ProtocolError("unavailable", "no host handles acknowledgements", request.id)
        try:
            hook(alert_id=request.alert_id, subject=principal.subject, note=request.note)
        except Exception:
            log.exception("netsentinel_alert_acknowledged failed for alert %r", request.alert_id)
            raise ProtocolError("ack_failed", "the host could not record it", request.id) from None
        self._send(protocol.reply("ack_ok", request.id))

    def _error(self, exc: ProtocolError) -> None:
        self.node.metrics.client_errors.labels(exc.code).inc()
        self._send(protocol.error(exc.code, exc.message, exc.request_id))

    # --- closing ---

    def close_when_drained(self, code: int, reason: str) -> None:
        """Close after what is queued has been written (graceful shutdown); takes no new
        frames meanwhile, so a busy feed cannot keep the queue from draining."""
        self._closing = True
        self._outbox.when_idle(lambda: self._close(code, reason))

    def _close(self, code: int, reason: str) -> None:
        if self._close_sent is not None:
            return
        self._closing = True
        self._close_sent = code
        self._outbox.clear()
        self.close(code, reason)

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
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._admitted:
            return
        subject = self.principal.subject if self.principal else None
        self.node.release(self, self._ip, subject if self._subject_counted else None)
        code = self._close_sent or self.close_code or 1006
        self.node.metrics.closes.labels(close_label(code)).inc()
        log.info(
            "close id=%s sub=%s addr=%s code=%s duration=%.1fs events=%d",
            self.connection_id,
            subject or "-",
            self._ip,
            code,
            time.monotonic() - self._opened,
            self.events_sent,
            extra={
                "event": "ws_close",
                "conn": self.connection_id,
                "subject": subject,
                "address": self._ip,
                "code": code,
                "duration": round(time.monotonic() - self._opened, 3),
                "events_sent": self.events_sent,
            },
        )


class _StreamTransport:
    """The outbox's transport on Tornado's stream: a frame goes straight to the socket when
    Tornado has nothing pending (its pings and pongs share the stream; bytes written past its
    buffer would cut into the middle of its frame), the rest through the stream's buffer."""

    __slots__ = ("_handler", "_stream", "_sock")

    def __init__(self, handler: WebSocketEndpoint) -> None:
        ws = handler.ws_connection
        assert ws is not None and ws.stream is not None
        self._handler = handler
        self._stream = ws.stream
        self._sock = None if isinstance(ws.stream, SSLIOStream) else ws.stream.socket

    def send_now(self, data: bytes | memoryview) -> int:
        if self._sock is None or self._stream.writing() or self._stream.closed():
            return 0
        try:
            return self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError:
            return 0  # the stream's own write meets the error and reports it

    def write(self, data: bytes | memoryview, done: Callable[[bool], None]) -> None:
        try:
            future = self._stream.write(data)
        except StreamClosedError:
            self._handler._broken()
            return

        def written(f: asyncio.Future[None]) -> None:
            ok = not f.cancelled() and f.exception() is None
            if not ok:
                self._handler._broken()
            done(ok)

        future.add_done_callback(written)
