"""HTTP feeds for what cannot speak WebSocket: ``/ws/sse`` (Server-Sent Events) and
``/ws/history/<channel>``.

An SSE reader is a hub subscriber like a WebSocket connection: the same handover on resume,
the same groups (keyed by its channel set too, see :mod:`.hub`), the same admission caps and an
:class:`~.outbox.Outbox` with the same bound. The hub's chunks are already framed for HTTP/1.1
chunked encoding, so once the headers are out they go to the socket as they are, through the
transport the WebSocket uses. A reader over the bound is cut off (counted as a slow consumer);
at shutdown a stream ends cleanly after what is queued has been written.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import tornado.web
from tornado.http1connection import HTTP1Connection

from . import backfill, disconnect, sse
from .auth import Principal, bearer_token
from .disconnect import Disconnect
from .http import NodeHandler
from .node import Node
from .outbox import Outbox
from .sse import SSEError
from .transport import StreamTransport

log = logging.getLogger("netsentinel_websocket.feeds")

#: How a stream that was dropped rather than ended is counted (as a WebSocket's abnormal close).
GONE = Disconnect(1006, "connection lost")


@dataclass(frozen=True, slots=True)
class Reading:
    """What an SSE reader holds of a session (what the node and the admin API read of every
    connection): its principal and channels."""

    principal: Principal
    subscriptions: tuple[str, ...]


class FeedHandler(NodeHandler):
    """Base: the bearer header, or ``?token=`` where ``websocket.auth.allow_query_token``."""

    async def reader(self) -> Principal | None:
        """The request's principal; otherwise answers 401 and None."""
        query = self.get_query_argument("token", None)
        if "Authorization" in self.request.headers or query is None:
            header = self.request.headers.get("Authorization", "")
            return await self.authenticate(bearer_token(header))
        if not self.node.settings.session.allow_query_token:
            self.write_json(401, {"error": "query token not allowed"})
            return None
        return await self.authenticate(query)

    def may_read(self, principal: Principal, channels: tuple[str, ...]) -> bool:
        """Known channels the token may subscribe to; otherwise answers 404/403 and False."""
        unknown = [c for c in channels if c not in self.node.channels]
        if unknown:
            self.write_json(404, {"error": f"unknown channel {unknown[0][:40]!r}"})
            return False
        forbidden = [c for c in channels if not principal.can_subscribe(c)]
        if forbidden:
            self.write_json(403, {"error": f"token lacks channel:{forbidden[0]}"})
            return False
        return True


class HistoryHandler(FeedHandler):
    """``GET /ws/history/<channel>?since=<epoch>:<offset>&limit=N``: one page of history."""

    async def get(self, channel: str) -> None:
        principal = await self.reader()
        if principal is None or not self.may_read(principal, (channel,)):
            return
        try:
            since = backfill.parse_since(self.get_query_argument("since", None))
            limit = backfill.parse_limit(self.get_query_argument("limit", None))
        except SSEError as exc:
            self.write_json(400, {"error": str(exc)})
            return
        broker = self.node.broker
        try:
            page = await backfill.page(
                lambda pos: broker.recover(channel, pos), broker.position(channel), since, limit
            )
        except Exception as exc:  # a broker outage: say so, never a 500 with a traceback
            log.warning("history of channel %s unavailable: %r", channel, exc)
            self.node.metrics.broker_errors.labels("recover").inc()
            self.write_json(503, {"error": "history unavailable"})
            return
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(page.body(channel, None if principal.sensitive else self.node.redactor))


class SSEHandler(FeedHandler):
    """``GET /ws/sse?channels=...``: one Server-Sent Events reader."""

    def initialize(self, node: Node) -> None:
        super().initialize(node)
        self.connection_id = secrets.token_hex(8)
        self.address = self.request.remote_ip or "?"
        self.opened_at = time.time()
        self._reading: Reading | None = None  # set once the reader is admitted
        self._outbox: Outbox | None = None
        self._ended: asyncio.Future[Disconnect] | None = None  # made once the reader is admitted
        self._closing = False  # ending once drained: no new frames
        self._expiry: asyncio.TimerHandle | None = None
        self._heartbeat: asyncio.TimerHandle | None = None

    @property
    def session(self) -> Reading:
        """Whom the reader speaks for and its channels (``node.Connection``): a reader is
        admitted, and so seen by the node, only once this is known."""
        assert self._reading is not None, "read before the reader was admitted"
        return self._reading

    # --- the Subscriber side used by the hub ---

    @property
    def sensitive(self) -> bool:
        return self._reading is not None and self._reading.principal.sensitive

    @property
    def closed(self) -> bool:
        return self._closing or self._ended is None or self._ended.done()

    @property
    def events_sent(self) -> int:
        return self._outbox.sent if self._outbox else 0

    @property
    def queued_bytes(self) -> int:
        return self._outbox.queued if self._outbox else 0

    def send_frame(self, frame: bytes, count: int = 0) -> None:
        if not self.closed and self._outbox is not None and not self._outbox.push(frame, count):
            self._slow_consumer()

    def send_replay(self, frames: Iterator[tuple[bytes, int]]) -> None:
        if not self.closed and self._outbox is not None and not self._outbox.push_replay(frames):
            self._slow_consumer()

    # --- the request ---

    async def get(self) -> None:
        principal = await self.reader()
        if principal is None:
            return
        query = {k: self.get_query_argument(k) for k in self.request.query_arguments}
        cursor = self.request.headers.get("Last-Event-ID") or query.get("last_event_id")
        try:
            channels = sse.parse_channels(
                query.get("channels"), self.node.settings.session.max_subscriptions
            )
            flt = sse.parse_query_filter(query)
            since = sse.decode_cursor(cursor, channels) if cursor else {}
        except SSEError as exc:
            self.write_json(400, {"error": str(exc)})
            return
        if not self.may_read(principal, channels):
            return
        if self.request.version != "HTTP/1.1":
            self.write_json(505, {"error": "Server-Sent Events need HTTP/1.1"})
            return
        self._reading = Reading(principal, channels)
        refusal = self.node.admit(self, self.address)
        if refusal is not None:
            self._refuse(refusal)
            return
        refusal = self.node.admit_subject(principal.subject)
        if refusal is not None:
            self.node.release(self, self.address, None)
            self._refuse(refusal)
            return
        self._ended = asyncio.get_running_loop().create_future()
        try:
            await self._serve(channels, flt, since)
        finally:
            self._teardown()

    async def _serve(self, channels: tuple[str, ...], flt: Any, since: Any) -> None:
        assert self._reading is not None and self._ended is not None
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Accel-Buffering", "no")
        await self.flush()  # the headers go out at once, before the first event
        connection = self.request.connection
        assert isinstance(connection, HTTP1Connection)
        stream = connection.stream
        stream.set_nodelay(True)
        endpoint = self.node.settings.endpoint
        self._outbox = Outbox(
            StreamTransport(stream, self.abort, endpoint.send_buffer),
            endpoint.queue_max_bytes,
            self.node.pressure,
        )
        log.info(
            "sse open id=%s sub=%r addr=%s channels=%s",
            self.connection_id,
            self.session.principal.subject,
            self.address,
            ",".join(channels),
            extra={
                "event": "sse_open",
                "conn": self.connection_id,
                "subject": self.session.principal.subject,
                "address": self.address,
            },
        )
        expires = self.session.principal.expires_at - time.time()
        self._expiry = asyncio.get_running_loop().call_later(
            max(0.0, expires), self.close_with, disconnect.TOKEN_EXPIRED
        )
        self._arm_heartbeat()
        await self.node.hub.stream(self, channels, flt, since)
        reason = await self._ended
        if reason.code not in (disconnect.SLOW_CONSUMER.code, GONE.code):
            self.finish()  # the terminating chunk: a clean end of the stream

    def _arm_heartbeat(self) -> None:
        self._heartbeat = asyncio.get_running_loop().call_later(
            self.node.settings.endpoint.sse_heartbeat, self._beat
        )

    def _beat(self) -> None:
        self.send_frame(sse.HEARTBEAT)
        if not self.closed:
            self._arm_heartbeat()

    def _refuse(self, refusal: Disconnect) -> None:
        status = 503 if refusal.code == disconnect.SHUTDOWN.code else 429
        self.write_json(status, {"error": refusal.reason})

    # --- ending ---

    def _end(self, reason: Disconnect) -> None:
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(reason)

    def close_with(self, reason: Disconnect) -> None:
        """End the stream for a reason decided outside (expiry, an operator, a revocation)
        after what is queued, within the shutdown grace."""
        self.close_when_drained(reason)

    def close_when_drained(self, reason: Disconnect) -> None:
        """End the stream cleanly once what is queued has been written; takes nothing new."""
        self._stop_timers()
        if self._outbox is None or self.closed:
            self._end(reason)
            return
        self._closing = True
        self._outbox.when_idle(lambda: self._end(reason))

    def _slow_consumer(self) -> None:
        """Over the bound: the reader is cut off (it resumes with ``Last-Event-ID``)."""
        self.node.metrics.slow_consumer_closes.inc()
        self._end(disconnect.SLOW_CONSUMER)
        self.abort()

    def abort(self) -> None:
        """Drop the connection at once (dead peer, slow consumer, shutdown grace over)."""
        self._end(GONE)
        if self._outbox is not None:
            self._outbox.clear()
        connection = self.request.connection
        if isinstance(connection, HTTP1Connection) and not connection.stream.closed():
            connection.stream.close()

    def on_connection_close(self) -> None:
        self._end(GONE)

    def _stop_timers(self) -> None:
        for timer in (self._expiry, self._heartbeat):
            if timer is not None:
                timer.cancel()
        self._expiry = self._heartbeat = None

    def _teardown(self) -> None:
        self._stop_timers()
        reason = self._ended.result() if self._ended and self._ended.done() else None
        if self._outbox is not None:
            self._outbox.clear()
        subject = self._reading.principal.subject if self._reading else None
        self.node.release(self, self.address, subject)
        code = reason.code if reason else 1006
        duration = time.time() - self.opened_at
        self.node.record_close(self, "sse", subject, code, duration, log)


def routes(node: Node) -> list[tuple[str, type[tornado.web.RequestHandler], dict[str, Any]]]:
    """The feeds' URL rules, beside :func:`.http.routes`."""
    base = node.settings.http.path
    prefix = "" if base == "/" else base
    args = {"node": node}
    return [
        (f"{prefix}/sse", SSEHandler, args),
        (f"{prefix}/history/([^/]+)", HistoryHandler, args),
    ]
