"""Ingest for the standalone runner: parsing what arrives, and the TCP JSON-lines listener.

OpenCanary's ``SocketJSONHandler`` writes one JSON record per line; ``WebhookHandler`` posts
the form ``message=<json record>`` (or ``{"message": "<json string>"}`` when configured with a
JSON content type); NetSentinel producers send StandardEvent objects. Parsing is pure
(``parse_item``, ``parse_body``, ``parse_form``, ``LineSplitter``); a bad item becomes a reason,
never an exception that could cost the connection or the other lines.

The TCP listener has no token, so it trusts only where a connection comes from
(``websocket.ingest.tcp_allow``) and bounds what any connection can hold: at most
``max_connections`` at once, each with at most one partial line of ``max_line_bytes`` for at most
``idle_timeout`` seconds (see :class:`IngestServer`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import select
import socket
import struct
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qsl

import orjson
from tornado.ioloop import IOLoop
from tornado.iostream import IOStream, StreamClosedError
from tornado.tcpserver import TCPServer

from . import cowrie
from .config import IpNetwork, TCPIngestSettings
from .errors import NetSentinelError
from .events import EventError, normalize_event
from .filefollow import file_source
from .metrics import INGEST_REFUSALS, Metrics
from .opencanary import RecordError, is_opencanary_record, normalize
from .pressure import Pressure

log = logging.getLogger("netsentinel_websocket.ingest")

#: Bytes asked of the socket per read (Tornado's ``read_chunk_size``), and the most one read
#: hands to the splitter.
READ_CHUNK = 64 * 1024
#: Hard cap of a stream's own read buffer; it holds at most about two chunks (the pending read
#: and one read while the handler is busy), so this is never reached by a sender.
STREAM_BUFFER = 4 * READ_CHUNK
#: Log lines about dropped lines (per connection) or refusals (per reason): the first ones,
#: then every thousandth; the counters have them all.
LOGGED_FIRST = 10
LOGGED_EVERY = 1000


def worth_logging(count: int) -> bool:
    """Whether the ``count``-th occurrence of a repeated problem gets a log line: a sender must
    not be able to fill the disk with our logs."""
    return count <= LOGGED_FIRST or count % LOGGED_EVERY == 0


#: On shutdown, the longest wait for open connections to fall quiet before they are reset.
DRAIN_TIMEOUT = 1.0

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class IngestError(NetSentinelError, ValueError):
    """One item that cannot be ingested: ``str()`` is the message given back or logged (never
    text from the item), ``reason`` one of ``metrics.INGEST_REASONS`` for the counter."""

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


#: Protocol of recent Cowrie sessions, for Cowrie 2.x records that name it only on connect.
COWRIE_SESSIONS = cowrie.SessionProtocols()


def parse_item(item: Any) -> dict[str, Any]:
    """A NetSentinel event from an OpenCanary or Cowrie record, a webhook body or a
    StandardEvent."""
    if not isinstance(item, dict):
        raise IngestError("item must be a JSON object", "not_object")
    if len(item) == 1 and isinstance(item.get("message"), str):  # only a message: a webhook's
        try:
            item = orjson.loads(item["message"])
        except orjson.JSONDecodeError:
            raise IngestError("webhook message is not valid JSON") from None
        if not isinstance(item, dict):
            raise IngestError("webhook message must hold a JSON object")
    try:
        if "event_type" in item:  # an event, even one with a logtype or an eventid
            event = normalize_event(item)
        elif cowrie.is_cowrie_record(item):
            event = cowrie.normalize(item, COWRIE_SESSIONS)
        elif is_opencanary_record(item):
            event = normalize(item)
        else:
            raise IngestError("neither an OpenCanary record (logtype) nor an event (event_type)")
    except (RecordError, EventError) as exc:
        raise IngestError(str(exc)) from None
    if file_source(event["id"]) is not None:  # a sender must not pose as a followed file's line
        raise IngestError("ids of the form file:<id>:<offset> are reserved for file ingest")
    return event


def parse_body(body: bytes) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``POST /ingest``: one object, an array, or a webhook body; (events, errors by index)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return [], [{"index": None, "error": "body is not valid JSON"}]
    return _parse_items(data if isinstance(data, list) else [data])


def is_form(content_type: str, body: bytes) -> bool:
    """Whether a ``POST /ingest`` body is OpenCanary's default webhook form (``message=...``),
    answered 200. A JSON text sent with the form type (``curl -d`` does that) stays JSON: a
    form's first byte is never ``{`` or ``[``, which it would send percent-encoded."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/x-www-form-urlencoded" and body.lstrip()[:1] not in (b"{", b"[")


def parse_form(body: bytes) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """OpenCanary's ``WebhookHandler`` as it posts by default: ``requests`` form-encodes
    ``{"message": <the JSON record>}``; each ``message`` field is one item."""
    try:
        fields = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        return [], [{"index": None, "error": "body is not a valid form (or not UTF-8)"}]
    messages = [{"message": value} for name, value in fields if name == "message"]
    if not messages:
        return [], [{"index": None, "error": "form body has no message field"}]
    return _parse_items(messages)


def _parse_items(items: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    events, errors = [], []
    for index, item in enumerate(items):
        try:
            events.append(parse_item(item))
        except IngestError as exc:
            errors.append({"index": index, "error": str(exc)})
    return events, errors


def parse_line(line: bytes) -> dict[str, Any]:
    """One JSON line from the TCP listener."""
    try:
        item = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise IngestError("not valid JSON (or not UTF-8)", "malformed") from None
    return parse_item(item)


class LineSplitter:
    """Splits a byte stream into lines, refusing (and skipping) lines over ``max_bytes``.

    It holds at most ``max_bytes`` between feeds (the partial line), so a connection costs at
    most that plus the chunk being fed. Each byte is scanned for a newline once, so a line
    trickled in byte by byte costs linear time, not quadratic.
    """

    TOO_LONG = object()

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._buffer = bytearray()
        self._skipping = False
        #: The caller's clock when the held partial line began; None when no line is open.
        self.partial_since: float | None = None

    @property
    def held(self) -> int:
        """Bytes of the partial line kept for the next feed."""
        return len(self._buffer)

    def feed(self, data: bytes, now: float = 0.0) -> Iterator[bytes | object]:
        """Complete lines (without the newline), or ``TOO_LONG`` once per oversized line;
        ``now`` (any clock) dates a partial line that this chunk begins."""
        start = 0
        if self._skipping:
            end = data.find(b"\n")
            if end < 0:
                return
            self._skipping = False
            self.partial_since = None
            start = end + 1
        while (end := data.find(b"\n", start)) >= 0:
            size = len(self._buffer) + end - start
            if size > self._max:
                yield self.TOO_LONG
            else:
                if self._buffer:
                    self._buffer += data[start:end]
                    line = bytes(self._buffer).strip()
                else:
                    line = data[start:end].strip()
                if line:
                    yield line
            self._buffer.clear()
            self.partial_since = None
            start = end + 1
        if start == len(data):
            return
        if self.partial_since is None:
            self.partial_since = now
        if len(self._buffer) + len(data) - start > self._max:
            self._buffer.clear()
            self._skipping = True
            yield self.TOO_LONG
        else:
            self._buffer += data[start:]


def peer_ip(address: Any) -> IpAddress | None:
    """The client's address from what ``accept`` gave, IPv4-mapped IPv6 as IPv4; None when
    it is not an IP address."""
    if not isinstance(address, tuple) or not address or not isinstance(address[0], str):
        return None
    try:
        ip = ipaddress.ip_address(address[0].split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def allowed(ip: IpAddress | None, networks: Iterable[IpNetwork]) -> bool:
    """Whether ``ip`` is in one of ``networks`` (a network of the other family never matches)."""
    return ip is not None and any(ip in net for net in networks)


class _Connection:
    """One ingest connection: its stream, its splitter and its single deadline timer."""

    def __init__(self, stream: IOStream, peer: str, max_line: int, now: float) -> None:
        self.stream = stream
        self.peer = peer
        self.splitter = LineSplitter(max_line)
        self.last_read = now
        self.rejected = 0
        self.waiting = False  # for bytes; not while a line it sent is being published
        self.timer: object | None = None

    def quiet(self) -> bool:
        """Nothing of the sender's is left to handle: no line being published, none partly
        read, no bytes waiting in the socket (nor an end of stream not yet seen)."""
        sock = self.stream.socket
        return (
            self.waiting
            and not self.splitter.held
            and sock is not None
            and not select.select([sock], [], [], 0)[0]
        )

    def reset(self) -> None:
        """Close with a TCP reset instead of a FIN. A sender that never reads (OpenCanary's
        ``SocketJSONHandler``, any ``logging.handlers.SocketHandler``) does not notice a FIN:
        its next write succeeds locally and the record is dropped by our side. After a reset
        that write fails at once, so the sender reconnects and sends the record again."""
        sock = self.stream.socket
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass  # already closed by the peer: a plain close is all there is
        self.stream.close()


class IngestServer(TCPServer):
    """Newline-delimited JSON over TCP, compatible with OpenCanary's ``SocketJSONHandler``.

    Memory held by senders is bounded: at most ``max_connections`` connections (more, and any
    from outside ``allow``, are closed at accept and counted), each holding at most one partial
    line (``max_line_bytes``) plus its stream buffer (``STREAM_BUFFER``) and the chunk being
    split (``READ_CHUNK``), and, only while a complete line is being published, that line. A
    connection that sends nothing for ``idle_timeout`` seconds, or whose line is still
    incomplete that long after its first byte, is closed (one timer per connection, re-armed
    only when it fires early).

    With the node's ``pressure``, a connection whose last read was heavy (a burst) waits before
    its next read while too many subscribers are behind, at most
    ``websocket.backpressure.max_wait`` seconds per read, so a live event on another connection
    is not queued behind the whole burst; the sender's own socket holds the rest.
    """

    def __init__(
        self,
        publish: Callable[[dict[str, Any]], Any],
        metrics: Metrics,
        settings: TCPIngestSettings,
        pressure: Pressure | None = None,
    ) -> None:
        """``pressure``: the node's backpressure, waited on before each read after a heavy
        one (:mod:`.pressure`); None: read as fast as senders send."""
        super().__init__(max_buffer_size=STREAM_BUFFER, read_chunk_size=READ_CHUNK)
        self._publish = publish
        self._pressure = pressure
        self._metrics = metrics
        self._max_line = settings.max_line_bytes
        self._allow = settings.allow
        self._max_connections = settings.max_connections
        self._idle = settings.idle_timeout
        self._open: set[_Connection] = set()
        self._refused = dict.fromkeys(INGEST_REFUSALS, 0)

    def handle_stream(self, stream: IOStream, address: Any) -> Awaitable[None] | None:
        """Refuse at once what is not allowed or over the cap; serve the rest."""
        ip = peer_ip(address)
        peer = str(ip) if ip is not None else "unknown"
        refusal = self._refusal(ip)
        if refusal is not None:
            self._refuse(stream, peer, refusal)
            return None
        loop = IOLoop.current()
        conn = _Connection(stream, peer, self._max_line, loop.time())
        self._open.add(conn)
        self._metrics.ingest_connections.set(len(self._open))
        conn.timer = loop.call_at(conn.last_read + self._idle, self._expire, conn)
        return self._serve(conn)

    def _refusal(self, ip: IpAddress | None) -> str | None:
        if not allowed(ip, self._allow):
            return "not_allowed"
        if len(self._open) >= self._max_connections:
            return "too_many"
        return None

    def _refuse(self, stream: IOStream, peer: str, reason: str) -> None:
        """Close at accept, count, and log the first few (and every thousandth) refusals."""
        stream.close()
        self._metrics.ingest_refused.labels(reason).inc()
        self._refused[reason] += 1
        total = self._refused[reason]
        if worth_logging(total):
            log.warning("ingest from %s: connection refused (%s); %d so far", peer, reason, total)

    def _expire(self, conn: _Connection) -> None:
        """The connection's timer: close it if idle or stuck on a partial line, else re-arm."""
        if conn.stream.closed():  # closed by the peer; its handler is about to finish
            return
        since = conn.splitter.partial_since
        deadline = (since if since is not None else conn.last_read) + self._idle
        loop = IOLoop.current()
        if not conn.waiting:  # we are the slow side (publishing): the sender is not idle
            deadline = max(deadline, loop.time() + self._idle)
        if loop.time() < deadline:
            conn.timer = loop.call_at(deadline, self._expire, conn)
            return
        conn.timer = None
        if since is None:
            reason = "idle"
            log.info("ingest from %s: closed after %gs idle", conn.peer, self._idle)
        else:
            reason = "line_timeout"
            if conn.splitter.held:  # a line skipped as too long was counted when it overflowed
                self._metrics.ingest_rejected.labels("too_long").inc()
            log.warning(
                "ingest from %s: closed, a line still incomplete after %gs (%d bytes held)",
                conn.peer,
                self._idle,
                conn.splitter.held,
            )
        self._metrics.ingest_closed.labels(reason).inc()
        conn.reset()

    async def drain(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """Shutdown: stop accepting, publish what the open connections have already sent, and
        reset each once it is quiet (all of them after ``timeout``), so that a record written
        after that fails on the sender's side instead of being lost silently."""
        self._pressure = None  # what was sent is read as fast as it can be, held no more
        await asyncio.sleep(0.01)  # a turn of the loop accepts what waits in the backlog,
        self.stop()  # which closing the listener would reset
        loop = IOLoop.current()
        deadline = loop.time() + timeout
        while self._open:
            late = loop.time() >= deadline
            for conn in list(self._open):
                if not conn.stream.closed() and (late or conn.quiet()):
                    conn.reset()
            if late:
                return
            await asyncio.sleep(0.01)

    async def _serve(self, conn: _Connection) -> None:
        loop = IOLoop.current()
        data = b""
        try:
            while True:
                if self._pressure is not None:
                    await self._pressure.hold(len(data))  # not waiting: not idle meanwhile
                conn.waiting = True
                data = await conn.stream.read_bytes(READ_CHUNK, partial=True)
                conn.waiting = False
                conn.last_read = loop.time()
                for line in conn.splitter.feed(data, conn.last_read):
                    try:
                        if line is LineSplitter.TOO_LONG:
                            raise IngestError(
                                f"line longer than {self._max_line} bytes", "too_long"
                            )
                        event = parse_line(line)  # type: ignore[arg-type]
                    except IngestError as exc:
                        self._rejected(conn, exc)
                        continue
                    await self._publish(event)
        except StreamClosedError:
            pass
        finally:
            conn.stream.close()  # also when publishing raised: no socket left without a reader
            if conn.timer is not None:
                loop.remove_timeout(conn.timer)
            self._open.discard(conn)
            self._metrics.ingest_connections.set(len(self._open))

    def _rejected(self, conn: _Connection, exc: IngestError) -> None:
        """Count a dropped line and log it (peer and our own message only, never line text)."""
        conn.rejected += 1
        self._metrics.ingest_rejected.labels(exc.reason).inc()
        if worth_logging(conn.rejected):
            log.warning(
                "ingest from %s: line dropped (%s: %s); %d so far",
                conn.peer,
                exc.reason,
                exc,
                conn.rejected,
            )
