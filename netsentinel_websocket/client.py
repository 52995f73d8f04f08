"""An asyncio client for the feed that reconnects by itself and loses nothing it can know of.

::

    async with Client(url, token=jwt, channels=["threats"], filter={"min_severity": "high"}) as c:
        async for item in c:
            if isinstance(item, Gap):
                ...  # events were lost (server restart, history too short): say so
            else:
                print(item.channel, item.offset, item.event["event_type"])

The client remembers each channel's last ``(epoch, offset)``. The feed ends only when the
application asks (:meth:`Client.aclose`, leaving the ``async with``). Any other end is worth
retrying unless it says this client is wrong: 1001 shutdown, 4009 slow consumer, a dropped or
refused connection, a server restart, 4004 with a token provider, and 1000 from the server too
(its heartbeat gave up on a silent path: "ping timed out"). The client waits a jittered
exponential back-off and subscribes again with ``since``: the server sends exactly the missed
events, or a ``gap`` (surfaced as :class:`Gap`) when its history cannot. Events already seen are
never yielded twice. 4001 (and 4004 without a token provider) raise
:class:`AuthenticationError`.

Reading is pulled by the consumer: a consumer that does not iterate stops reading the socket,
so the server (not this process) bounds what is buffered, and closes with 4009 when it is over
``websocket.queue.max_bytes``; the client then resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import random
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, WebSocketError
from tornado.websocket import websocket_connect as _websocket_connect

from . import disconnect, protocol
from .errors import NetSentinelError
from .positions import Position
from .protocol import BEARER_PREFIX, SUBPROTOCOL

__all__ = [
    "AuthenticationError",
    "Client",
    "ClientError",
    "ConnectionClosedError",
    "Event",
    "Gap",
    "HandshakeError",
    "Position",
    "Reconnect",
    "SubscriptionError",
    "TokenProvider",
]

log = logging.getLogger("netsentinel_websocket.client")

MIB = 1024 * 1024
CLOSE_NORMAL = disconnect.NORMAL.code
# Closes that say "this client is wrong", where trying again would only repeat the mistake.
# (1007 invalid data, 1008 policy, 1010 a missing extension are RFC 6455's own.)
FATAL_CLOSES = frozenset(
    {
        disconnect.PROTOCOL_ERROR.code,
        disconnect.BINARY.code,
        1007,
        1008,
        disconnect.TOO_BIG.code,
        1010,
    }
)
# Handshake answers worth another try (overload, a proxy in front of a restarting server).
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 599})

TokenProvider = Callable[[], "str | Awaitable[str]"]


# --- what the caller gets ---


@dataclass(frozen=True, slots=True)
class Event:
    """One event delivered on one channel at one position."""

    channel: str
    epoch: str
    offset: int
    event: dict[str, Any]

    @property
    def position(self) -> Position:
        return Position(self.epoch, self.offset)

    @property
    def event_type(self) -> str:
        return str(self.event.get("event_type", ""))

    @property
    def severity(self) -> str:
        return str(self.event.get("severity", ""))

    @property
    def data(self) -> dict[str, Any]:
        data = self.event.get("data")
        return data if isinstance(data, dict) else {}

    def as_message(self) -> dict[str, Any]:
        """The wire message it came in, for archiving or printing as JSON."""
        return {
            "type": "event",
            "channel": self.channel,
            "epoch": self.epoch,
            "offset": self.offset,
            "event": self.event,
        }


@dataclass(frozen=True, slots=True)
class Gap:
    """Events the server could not resend: those after ``since`` and, in ``resumed.epoch``,
    those up to ``resumed.offset``. Delivery goes on after ``resumed``.

    A new epoch means the server's history was lost (memory broker restarted, or Redis lost
    its data: then the gap may come mid-connection, resumed at offset 0 of the new epoch); the
    same epoch means the history no longer reached back to ``since``.
    """

    channel: str
    since: Position
    resumed: Position

    def as_message(self) -> dict[str, Any]:
        """The wire ``gap`` message, plus where delivery resumed."""
        return {
            "type": "gap",
            "channel": self.channel,
            "epoch": self.resumed.epoch,
            "from": self.since.as_dict(),
            "resumed": self.resumed.as_dict(),
        }


@dataclass(frozen=True, slots=True)
class Reconnect:
    """Passed to ``on_reconnect`` before each wait: why, which attempt, how long."""

    code: int | None  # the close code; None when there was no close frame (dropped, refused)
    reason: str
    attempt: int  # 1 for the first retry after a working connection
    delay: float


class ClientError(NetSentinelError):
    """The client stopped and will not retry."""


class AuthenticationError(ClientError):
    """The server refused the token: 4001, or 4004 (expired during the session, no provider)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"authentication refused ({code}): {reason or 'no reason given'}")
        self.code = code
        self.reason = reason


class SubscriptionError(ClientError):
    """The server refused the subscription (``forbidden``, ``unknown_channel``, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"subscription refused ({code}): {message}")
        self.code = code
        self.message = message


class HandshakeError(ClientError):
    """The HTTP upgrade was answered with a status that retrying will not change (403, 404)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"WebSocket handshake refused: HTTP {status} {message}".rstrip())
        self.status = status


class ConnectionClosedError(ClientError):
    """The server closed with a code that says this client is at fault (1003, 1009, ...)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"connection closed ({code}): {reason or 'no reason given'}")
        self.code = code
        self.reason = reason


# --- internals ---


class _Retry(Exception):
    """One connection attempt or connection ended in a way worth another try."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _decode(frame: str | bytes) -> list[protocol.ServerMessage]:
    """A server frame's messages; one that is not protocol v1 means a broken connection."""
    try:
        return protocol.decode_frame(frame)
    except protocol.MalformedMessage as exc:
        raise _Retry(None, f"malformed server message: {exc}") from None


def _close_outcome(code: int | None, reason: str, refreshable: bool) -> _Retry:
    """What a close the client did not ask for means: returns the retry to make or raises the
    error that stops. A 1000 from the server is retried like a drop: the server never ends a
    feed on its own, and its heartbeat closes a peer it stopped hearing with 1000 "ping
    timed out" (a path that went silent), which says nothing about the feed."""
    if code == disconnect.UNAUTHENTICATED.code or (
        code == disconnect.TOKEN_EXPIRED.code and not refreshable
    ):
        raise AuthenticationError(code, reason)
    if code in FATAL_CLOSES:
        raise ConnectionClosedError(code, reason)
    return _Retry(code, reason or ("connection lost" if code is None else "closed"))


class Client:
    """A subscription that survives disconnections; iterate it for :class:`Event`/:class:`Gap`.

    ``token`` or ``token_provider`` (called, sync or async, for every connection and for an
    in-band refresh before the token expires) authenticates; ``auth="subprotocol"`` sends it as
    ``Sec-WebSocket-Protocol: netsentinel.v1, bearer.<jwt>`` instead of the Authorization
    header. ``since`` resumes channels from saved positions (see :attr:`positions`).

    Entering the context connects and subscribes (retrying like any reconnection), so events
    published after ``__aenter__`` returns are delivered. One task iterates at a time.
    """

    def __init__(
        self,
        url: str,
        *,
        channels: Sequence[str],
        token: str | None = None,
        token_provider: TokenProvider | None = None,
        filter: Mapping[str, Any] | None = None,
        since: Mapping[str, Position] | None = None,
        auth: Literal["header", "subprotocol"] = "header",
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        connect_timeout: float = 10.0,
        ping_interval: float | None = 20.0,
        max_message_bytes: int = 128 * MIB,
        ssl_context: ssl.SSLContext | None = None,
        on_reconnect: Callable[[Reconnect], None] | None = None,
    ) -> None:
        if (token is None) == (token_provider is None):
            raise ValueError("give exactly one of token and token_provider")
        if not channels:
            raise ValueError("channels must name at least one channel")
        if auth not in ("header", "subprotocol"):
            raise ValueError("auth must be 'header' or 'subprotocol'")
        if not 0 < backoff_base <= backoff_cap:
            raise ValueError("need 0 < backoff_base <= backoff_cap")
        self.url = url
        self.channels = list(dict.fromkeys(channels))
        unknown = set(since or ()) - set(self.channels)
        if unknown:
            raise ValueError(f"since names channels that are not subscribed: {sorted(unknown)}")
        self.filter = dict(filter) if filter else None
        self._token = token
        self._provider = token_provider
        self._auth = auth
        self._backoff = (backoff_base, backoff_cap)
        self._connect_timeout = connect_timeout
        self._ping_interval = ping_interval
        self._max_message_bytes = max_message_bytes
        self._ssl = ssl_context
        self._on_reconnect = on_reconnect
        self._positions: dict[str, Position] = dict(since or {})
        self._pending: deque[protocol.ServerMessage] = deque()
        self._conn: WebSocketClientConnection | None = None
        self._ids = itertools.count(1)
        self._closed = False
        self._reading = False  # a task is waiting in __anext__ for the next frame
        self._skew = 0.0  # server clock minus ours, from the welcome
        self._refresh_timer: asyncio.TimerHandle | None = None
        self._refresh_task: asyncio.Task[None] | None = None
        self.expires_at: float | None = None
        #: True once a connection was established and subscribed: a later retry resumes.
        self.was_connected = False

    # --- public API ---

    @property
    def positions(self) -> dict[str, Position]:
        """Each channel's last delivered position: save it to resume later with ``since``."""
        return dict(self._positions)

    async def __aenter__(self) -> Client:
        try:
            await self._establish(None)
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> Client:
        return self

    async def __anext__(self) -> Event | Gap:
        while True:
            while self._pending:
                item = self._handle(self._pending.popleft())
                if item is not None:
                    return item
            conn = self._conn
            if self._closed:
                raise StopAsyncIteration
            if conn is None:
                await self._establish(None)
                continue
            self._reading = True
            try:
                frame = await conn.read_message()
            finally:
                self._reading = False
            if frame is not None:
                try:
                    self._pending.extend(_decode(frame))
                except _Retry as malformed:
                    self._conn = None
                    conn.close()
                    await self._establish(malformed)
                continue
            self._conn = None
            if self._closed:
                raise StopAsyncIteration
            retry = _close_outcome(
                conn.close_code, conn.close_reason or "", self._provider is not None
            )
            await self._establish(retry)

    async def aclose(self) -> None:
        """Close with 1000 and end the iteration; safe to call twice or from another task."""
        self._closed = True
        self._cancel_refresh()
        conn, self._conn = self._conn, None
        if conn is None or conn.protocol is None:
            return
        conn.close(CLOSE_NORMAL)
        if self._reading:
            return  # the iterating task gets the server's close frame and stops
        try:  # wait briefly for the server's close frame, so both sides see a clean 1000
            await asyncio.wait_for(_drain(conn), 1.0)
        except asyncio.TimeoutError:
            pass

    # --- connecting ---

    async def _establish(self, retry: _Retry | None) -> None:
        """Connect and subscribe, waiting a jittered back-off before every retry."""
        attempt = 0
        while not self._closed:
            if retry is not None:
                attempt += 1
                delay = self._delay(attempt)
                code = retry.code if retry.code is not None else "-"
                log.info(
                    "reconnecting in %.2fs (attempt %d): %s %s", delay, attempt, code, retry.reason
                )
                if self._on_reconnect is not None:
                    self._on_reconnect(Reconnect(retry.code, retry.reason, attempt, delay))
                await asyncio.sleep(delay)
                if self._closed:
                    return
            try:
                await self._open()
                return
            except _Retry as exc:
                retry = exc

    def _delay(self, attempt: int) -> float:
        """Exponential back-off with "equal jitter": never zero, never in lockstep."""
        base, cap = self._backoff
        ceiling = min(cap, base * 2 ** min(attempt - 1, 32))
        return random.uniform(ceiling / 2, ceiling)

    async def _open(self) -> None:
        token = await self._fresh_token()
        headers: dict[str, str] = {}
        subprotocols: list[str] | None = None
        if self._auth == "header":
            headers["Authorization"] = f"Bearer {token}"
        else:
            subprotocols = [SUBPROTOCOL, BEARER_PREFIX + token]
        request = HTTPRequest(
            self.url,
            headers=headers,
            connect_timeout=self._connect_timeout,
            request_timeout=self._connect_timeout,
            ssl_options=self._ssl,
        )
        try:
            conn = await _websocket_connect(
                request,
                subprotocols=subprotocols,
                ping_interval=self._ping_interval,
                max_message_size=self._max_message_bytes,
            )
        except HTTPClientError as exc:
            if exc.code in RETRY_STATUSES:
                raise _Retry(None, f"HTTP {exc.code}") from None
            raise HandshakeError(exc.code, exc.message or "") from None
        except ssl.SSLCertVerificationError as exc:
            raise HandshakeError(0, f"TLS certificate: {exc.verify_message}") from None
        except (OSError, StreamClosedError, WebSocketError, asyncio.TimeoutError) as exc:
            raise _Retry(None, _describe(exc)) from None
        try:
            await self._handshake(conn)
        except BaseException:
            conn.close()
            raise
        if self._closed:
            conn.close(CLOSE_NORMAL)
            return
        self._conn = conn

    async def _handshake(self, conn: WebSocketClientConnection) -> None:
        """Welcome, then subscribe (with ``since`` where a position is known)."""
        deadline = time.monotonic() + self._connect_timeout
        buf: deque[protocol.ServerMessage] = deque()
        welcome = await _next(conn, buf, deadline, self._provider is not None)
        if not isinstance(welcome, protocol.Welcome):
            raise _Retry(None, f"expected welcome, got {welcome.type[:40]!r}")
        self._skew = (welcome.server_time or time.time()) - time.time()
        request_id = next(self._ids)
        conn.write_message(
            protocol.subscribe_request(request_id, self.channels, self.filter, self._positions)
        )
        while True:
            reply = await _next(conn, buf, deadline, self._provider is not None)
            if isinstance(reply, (protocol.Subscribed, protocol.ErrorReply)) and (
                reply.id == request_id
            ):
                break
            self._pending.append(reply)
        if isinstance(reply, protocol.ErrorReply):
            raise SubscriptionError(reply.code, reply.message)
        self._positions.update(reply.positions)
        self.was_connected = True
        self._pending.extend(buf)  # gaps and recovered events follow the reply
        self._schedule_refresh(welcome.expires_at)

    # --- messages ---

    def _handle(self, msg: protocol.ServerMessage) -> Event | Gap | None:
        """What a server message means for the caller; None for protocol chatter."""
        if isinstance(msg, protocol.EventMessage):
            channel, epoch, offset = msg.channel, msg.epoch, msg.offset
            last = self._positions.get(channel)
            if last is not None and last.epoch == epoch and offset <= last.offset:
                return None  # already delivered: never twice
            self._positions[channel] = Position(epoch, offset)
            return Event(channel, epoch, offset, msg.event)
        if isinstance(msg, protocol.GapMessage):
            resumed = self._positions.get(msg.channel)
            if resumed is None or resumed.epoch != msg.epoch:  # a live gap into a new epoch
                resumed = self._positions[msg.channel] = Position(msg.epoch, 0)
            return Gap(msg.channel, msg.since, resumed)
        if isinstance(msg, protocol.AuthOk):
            self._schedule_refresh(msg.expires_at)
        elif isinstance(msg, protocol.Unsubscribed) and msg.id is None:
            lost = [c for c in msg.channels if c in self.channels]
            log.warning("the refreshed token no longer allows %s", ", ".join(lost))
            self.channels = [c for c in self.channels if c not in lost]
            for channel in lost:
                self._positions.pop(channel, None)
        elif isinstance(msg, protocol.ErrorReply):
            log.warning("server error %s: %s", msg.code, msg.message)
        return None

    # --- tokens ---

    async def _fresh_token(self) -> str:
        if self._provider is None:
            assert self._token is not None
            return self._token
        token = self._provider()
        if inspect.isawaitable(token):
            token = await token
        return token

    def _schedule_refresh(self, expires_at: float | None) -> None:
        """With a provider, send a new token in band well before this one expires."""
        self.expires_at = expires_at or None
        self._cancel_refresh()
        if self._provider is None or self.expires_at is None:
            return
        remaining = self.expires_at - (time.time() + self._skew)
        delay = max(0.0, remaining - min(60.0, remaining * 0.25))
        self._refresh_timer = asyncio.get_running_loop().call_later(delay, self._start_refresh)

    def _start_refresh(self) -> None:
        self._refresh_timer = None
        self._refresh_task = asyncio.ensure_future(self._refresh())

    async def _refresh(self) -> None:
        """A failure here is only logged: without a refresh the server closes with 4004, and
        the reconnection asks the provider again."""
        conn = self._conn
        try:
            token = await self._fresh_token()
            if conn is not None and conn is self._conn:
                conn.write_message(protocol.auth_request(next(self._ids), token))
        except WebSocketClosedError:
            pass
        except Exception as exc:
            log.warning("token refresh failed: %s", type(exc).__name__)

    def _cancel_refresh(self) -> None:
        if self._refresh_timer is not None:
            self._refresh_timer.cancel()
            self._refresh_timer = None
        if self._refresh_task is not None:
            self._refresh_task.cancel()
            self._refresh_task = None


async def _next(
    conn: WebSocketClientConnection,
    buf: deque[protocol.ServerMessage],
    deadline: float,
    refreshable: bool,
) -> protocol.ServerMessage:
    """The next message of a connection being set up; a close becomes its outcome."""
    while not buf:
        try:
            frame = await asyncio.wait_for(
                conn.read_message(), max(0.01, deadline - time.monotonic())
            )
        except asyncio.TimeoutError:
            raise _Retry(None, "no answer from the server") from None
        if frame is None:
            raise _close_outcome(conn.close_code, conn.close_reason or "", refreshable)
        buf.extend(_decode(frame))
    return buf.popleft()


async def _drain(conn: WebSocketClientConnection) -> None:
    while await conn.read_message() is not None:
        pass


def _describe(exc: BaseException) -> str:
    """A short reason for a failed attempt (never the request, which holds the token)."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return type(exc).__name__
