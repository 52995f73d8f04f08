"""The WebSocket endpoint: the handshake, the frames, and a thin adapter around
:class:`~.session.Session`.

:class:`WebSocketUpgrade` answers the upgrade request (a Tornado handler, for as long as the
HTTP exchange lasts) and hands the stream to a :class:`WebSocketEndpoint`, which lives as long
as the connection. The endpoint is driven by callbacks, not a coroutine: between two reads a
connection holds its objects and one pending read, and no task, coroutine frame or HTTP object
(about 5 KiB a connection with Tornado's ``WebSocketHandler``). Its frames are read by a
:class:`~.wsreader.FrameReader` (the protocol rules, without I/O).

The session decides (authentication, dispatch, scopes, timers, replies, closes); the endpoint
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
from typing import cast

import tornado.web
from tornado.iostream import IOStream, StreamClosedError

from . import audit, disconnect, protocol, wsprotocol
from .auth import AuthError
from .disconnect import Disconnect
from .frames import PING, PONG, close_frame, control_frame, text_frame
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
from .wsreader import Closing, FrameReader, Ping, Pong, Refuse

log = logging.getLogger("netsentinel_websocket.connection")

#: Bytes asked of the socket per read (the reader holds at most one message besides).
READ_CHUNK = 64 * 1024
#: Seconds a client has to answer our close frame (or to take it) before the connection is
#: dropped.
CLOSE_TIMEOUT = 5.0
#: The code recorded for a client's close frame without one (RFC 6455 7.1.5).
NO_STATUS = 1005


class WebSocketUpgrade(tornado.web.RequestHandler):
    """``/ws`` until the 101 (RFC 6455 section 4.2): refuses what is not an upgrade this
    server takes, answers the rest, and hands the stream to a :class:`WebSocketEndpoint`.
    This handler and Tornado's HTTP objects are released once the 101 is written."""

    def initialize(self, node: Node) -> None:
        self.node = node

    def get(self) -> None:
        headers = self.request.headers
        refused = wsprotocol.refusal(headers, self.request.version)
        origin, host = headers.get("Origin"), self.request.host
        if refused is None and origin is not None and not self.node.origin_allowed(origin, host):
            refused = (403, "Cross origin websockets not allowed")
        if refused is not None:
            status, message = refused
            self.set_status(status)
            if status == 426:
                self.set_header("Sec-WebSocket-Version", "13")
            self.finish(message)
            return
        offered = [p.strip() for p in headers.get("Sec-WebSocket-Protocol", "").split(",")]
        deflate = None
        if self.node.settings.endpoint.compression:
            deflate = wsprotocol.negotiate_deflate(headers.get("Sec-WebSocket-Extensions", ""))
        self.clear_header("Content-Type")
        self.set_status(101)
        self.set_header("Upgrade", "websocket")
        self.set_header("Connection", "Upgrade")
        accept = wsprotocol.accept_value(headers["Sec-WebSocket-Key"])
        self.set_header("Sec-WebSocket-Accept", accept)
        if protocol.SUBPROTOCOL in offered:
            self.set_header("Sec-WebSocket-Protocol", protocol.SUBPROTOCOL)
        if deflate is not None:
            self.set_header("Sec-WebSocket-Extensions", deflate.answer)
        credentials = (
            headers.get("Authorization"),
            protocol.token_from_subprotocols(offered),
            self.get_query_argument("token", None),
        )
        self.finish()
        endpoint = WebSocketEndpoint(self.node, self.detach(), self.request.remote_ip, deflate)
        endpoint.open(*credentials)


class _Heartbeat:
    """One timer for all of a node's WebSocket connections, not a ping task per connection (a
    task, its coroutine and its sleeps: about 1 KiB a connection). Every
    ``interval`` it pings each connection; ``timeout`` later (at most ``interval``; 0: never)
    those that have not answered are closed with 1000 "ping timed out", as Tornado's own
    heartbeat does."""

    def __init__(self, interval: float, timeout: float) -> None:
        self._interval = interval
        self._timeout = min(timeout, interval)
        self._members: dict[WebSocketEndpoint, None] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._pinged: list[WebSocketEndpoint] = []  # the last round, until it is checked
        self._checker: asyncio.TimerHandle | None = None

    def add(self, conn: WebSocketEndpoint) -> None:
        self._members[conn] = None
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._interval, self._ping)

    def discard(self, conn: WebSocketEndpoint) -> None:
        self._members.pop(conn, None)

    def _ping(self) -> None:
        self._timer = None
        if self._checker is not None:  # due at the same moment (timeout == interval): first
            self._checker.cancel()
            self._check()
        if not self._members:
            return  # the next connection starts the timer again
        self._pinged = [conn for conn in tuple(self._members) if conn.send_ping()]
        loop = asyncio.get_running_loop()
        if self._timeout > 0:
            self._checker = loop.call_later(self._timeout, self._check)
        self._timer = loop.call_later(self._interval, self._ping)

    def _check(self) -> None:
        """Close those of the last round that have not answered, before anyone is pinged
        again (which would reset their answer)."""
        self._checker = None
        pinged, self._pinged = self._pinged, []
        for conn in pinged:
            if conn in self._members and not conn.answered:
                conn.close_with(disconnect.PING_TIMEOUT)


#: The heartbeat of each node (a node has one set of heartbeat settings).
_HEARTBEATS: weakref.WeakKeyDictionary[Node, _Heartbeat] = weakref.WeakKeyDictionary()


class WebSocketEndpoint:
    """``/ws``: one client connection, from its 101 to its end."""

    __slots__ = (
        "node",
        "connection_id",
        "session",
        "deflate",
        "opened_at",
        "answered",
        "close_code",
        "_stream",
        "_reader",
        "_outbox",
        "_ip",
        "_admitted",
        "_subject_counted",
        "_closing",
        "_close_sent",
        "_client_closed",
        "_ended",
        "_timer",
        "_linger",
        "_busy",
        "_pong_busy",
        "_pong_next",
        "_opened",
    )

    def __init__(
        self, node: Node, stream: IOStream, ip: str | None, deflate: wsprotocol.Deflate | None
    ) -> None:
        self.node = node
        self.connection_id = secrets.token_hex(8)
        self.session = Session(
            node.settings.session, node.channels, self.connection_id, node.node_id, time.monotonic()
        )
        endpoint = node.settings.endpoint
        #: The window bits of the compressed frames this client takes; None: plain frames.
        self.deflate = deflate.bits if deflate is not None else None
        self.opened_at = time.time()  # for the admin's connection list
        self.answered = True  # the last heartbeat ping got its pong (see _Heartbeat)
        self.close_code: int | None = None  # the code of the client's close frame
        self._stream = stream
        self._reader = FrameReader(
            endpoint.max_message_bytes,
            deflate.client_bits if deflate is not None else None,
            deflate is not None and deflate.client_takeover,
        )
        transport = StreamTransport(stream, self._broken, endpoint.send_buffer)
        self._outbox = Outbox(transport, endpoint.queue_max_bytes, node.pressure)
        self._ip = ip or "?"
        self._admitted = False
        self._subject_counted = False
        self._closing = False
        self._close_sent: int | None = None  # the code of our close frame, once written
        self._client_closed = False  # the client's close frame has come
        self._ended = False  # the stream is closed and the connection forgotten
        self._timer: asyncio.TimerHandle | None = None  # the session's timer
        self._linger: asyncio.TimerHandle | None = None  # waiting for the client's close
        self._busy: asyncio.Task[None] | None = None  # a message being handled
        self._pong_busy = False  # a pong is being written
        self._pong_next: bytes | None = None  # the latest ping to answer after it
        self._opened = time.monotonic()

    # --- the Subscriber side used by the hub ---

    @property
    def sensitive(self) -> bool:
        principal = self.session.principal
        return principal is not None and principal.sensitive

    @property
    def closed(self) -> bool:
        """True once no more frames may go out: we are closing (also once the client's close
        frame came: it is answered at once), or the stream is gone."""
        return self._closing or self._stream.closed()

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
        if not self._closing:  # a write cut short by our own close is no write error
            self.node.metrics.write_errors.inc()
        self.abort()

    # --- reading: the stream's bytes to the reader, its events to the session ---

    def open(
        self, authorization: str | None, subprotocol_token: str | None, query_token: str | None
    ) -> None:
        """The 101 is written: admit the connection, hand the token it brought to the session
        and start reading."""
        self._stream.set_close_callback(self._on_stream_closed)
        if self._stream.closed():  # the 101 could not be written: its close callback has run
            self._ended = True
            return
        self._stream.set_nodelay(True)
        refusal = self.node.admit(self, self._ip)
        if refusal is not None:
            self.close_with(refusal)
            self._handle()
            return
        self._admitted = True
        self._heartbeat(join=True)
        self._handle(self.session.handshake(authorization, subprotocol_token, query_token))

    def _handle(self, actions: list[Action] | None = None) -> None:
        """Carry out ``actions``, then the reader's events until one must be waited for (a
        token to verify, a subscription to set up: the next is read after it) or the reader
        needs bytes (then one read is asked of the stream). A failure drops this connection
        only."""
        try:
            self._handle_events(actions)
        except Exception:
            log.exception("connection %s failed", self.connection_id)
            self.abort()

    def _handle_events(self, actions: list[Action] | None) -> None:
        while not self._ended:
            if actions:
                if any(isinstance(a, (Verify, Join)) for a in actions):
                    self._busy = asyncio.ensure_future(self._run(actions))
                    self._busy.add_done_callback(self._handled)
                    return
                self._apply_all(actions)
            event = self._reader.next()
            if event is None:
                self._read()
                return
            actions = self._event(event)

    def _handled(self, task: asyncio.Task[None]) -> None:
        self._busy = None
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            log.error("connection %s failed", self.connection_id, exc_info=exc)
            self.abort()
            return
        self._handle()

    def _read(self) -> None:
        try:
            future = cast("asyncio.Future[bytes]", self._stream.read_bytes(READ_CHUNK, True))
        except StreamClosedError:
            return  # the close callback ends the connection
        future.add_done_callback(self._on_read)

    def _on_read(self, future: asyncio.Future[bytes]) -> None:
        if future.cancelled() or future.exception() is not None:
            return  # the stream closed: its close callback ends the connection
        self._reader.feed(future.result())
        self._handle()

    def _event(self, event: str | bytes | Ping | Pong | Closing | Refuse) -> list[Action] | None:
        """One event of the reader: a message's actions, or None once it is dealt with."""
        if isinstance(event, (str, bytes)):
            return self.session.receive(event, time.monotonic(), time.time())
        if isinstance(event, Ping):
            self._pong(event.data)
        elif isinstance(event, Pong):
            self.answered = True
        elif isinstance(event, Closing):
            self._client_closed = True
            self.close_code = event.code if event.code is not None else NO_STATUS
            self._send_close(event.code, "")  # echoed (RFC 6455 5.5.1), then we are done
            self._drop_when_written()
        elif event.why is not None:
            self._send_close(event.why.code, event.why.reason)
            self._drop_when_written()  # a peer that broke the protocol gets no more than that
        else:
            self.abort()  # without a close frame
        return None

    def _on_timer(self) -> None:
        self._timer = None
        self._apply_all(self.session.timer())

    # --- carrying out the session's actions ---

    async def _run(self, actions: list[Action]) -> None:
        for action in actions:
            if self._ended:
                return  # the connection ended while an earlier action waited
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
        if self._close_sent is not None or self._stream.closed():  # a client's close: answered
            return False
        self.answered = False
        self._write(control_frame(PING))
        return True

    def _pong(self, data: bytes) -> None:
        """Answer a client's ping. At most one pong is in flight and only the latest ping
        waits behind it (RFC 6455 5.5.3), so a peer that pings without reading cannot grow
        our buffer; no pong follows our close frame."""
        if self._pong_busy:
            self._pong_next = data
            return
        if self._close_sent is not None:
            return
        try:
            future = self._stream.write(control_frame(PONG, data))
        except StreamClosedError:
            return
        self._pong_busy = True
        future.add_done_callback(self._pong_sent)

    def _pong_sent(self, future: asyncio.Future[None]) -> None:
        self._pong_busy = False
        data, self._pong_next = self._pong_next, None
        if data is not None and not future.cancelled() and future.exception() is None:
            self._pong(data)

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
        """The session's close: our close frame after the write in flight, then the client
        has ``CLOSE_TIMEOUT`` seconds to answer with its own before the connection is dropped."""
        if self._close_sent is not None:
            return
        if reason.code == disconnect.UNAUTHENTICATED.code:
            self.node.metrics.auth_failures.labels(reason.reason).inc()
            log.info(
                "auth refused id=%s addr=%s reason=%s", self.connection_id, self._ip, reason.reason
            )
        self._outbox.clear()
        self._send_close(reason.code, reason.reason)
        if self._client_closed:
            self._drop_when_written()
        else:
            self._linger_at_most()

    def _drop_when_written(self) -> None:
        """Close the stream once what it holds (our close frame last) has reached the socket:
        closing at once would throw away the close frame behind a large write in flight.
        ``CLOSE_TIMEOUT`` at most, for a peer that does not read."""
        try:
            flushed = self._stream.write(b"")  # done when everything before it is written
        except StreamClosedError:
            return
        flushed.add_done_callback(lambda _: self._stream.close())
        self._linger_at_most()

    def _linger_at_most(self) -> None:
        if self._linger is None and not self._stream.closed():
            self._linger = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self.abort)

    def _send_close(self, code: int | None, reason: str) -> None:
        """Write our close frame, once; nothing goes out after it."""
        if self._close_sent is not None:
            return
        self._closing = True
        self._close_sent = code or 0  # 0: a close frame without a code (the echo of one)
        self._write(close_frame(code, reason))

    def _write(self, frame: bytes) -> None:
        """A control frame, after what the stream has buffered (a failed write is seen by
        the stream, which then closes)."""
        try:
            self._stream.write(frame)
        except StreamClosedError:
            pass

    def abort(self) -> None:
        """Drop the connection at once (dead peer, protocol breach, close not answered,
        shutdown grace over); the stream's close callback ends it."""
        self._closing = True
        self._stream.close()

    def _on_stream_closed(self) -> None:
        """The stream is closed, by either side: forget the connection, once."""
        if self._ended:
            return
        self._ended = True
        self._closing = True
        self._arm(None)
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        self._outbox.clear()  # a dropped peer is no longer behind
        self._heartbeat(join=False)
        if not self._admitted:
            return
        principal = self.session.principal
        subject = principal.subject if principal else None
        self.node.release(self, self._ip, subject if self._subject_counted else None)
        code = self._close_sent or self.close_code or 1006
        duration = time.monotonic() - self._opened
        self.node.record_close(self, "ws", subject, code, duration, log)
