"""Ingest for the standalone runner: parsing what arrives, and the TCP JSON-lines listener.

OpenCanary's ``SocketJSONHandler`` writes one JSON record per line; ``WebhookHandler`` posts
``{"message": "<json string>"}``; NetSentinel producers send StandardEvent objects. Parsing is
pure (``parse_item``, ``parse_body``, ``LineSplitter``); a bad item becomes a reason, never an
exception that could cost the connection or the other lines.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import orjson
from tornado.iostream import IOStream, StreamClosedError
from tornado.tcpserver import TCPServer

from .events import EventError, normalize_event
from .metrics import Metrics
from .opencanary import RecordError, is_opencanary_record, normalize

log = logging.getLogger("netsentinel_websocket.ingest")

READ_CHUNK = 256 * 1024
LOGGED_PER_CONNECTION = 10


class IngestError(ValueError):
    """One item that cannot be ingested; the message is the reason given back or logged."""


def parse_item(item: Any) -> dict[str, Any]:
    """A NetSentinel event from an OpenCanary record, a webhook body or a StandardEvent."""
    if not isinstance(item, dict):
        raise IngestError("item must be a JSON object")
    if set(item) == {"message"} and isinstance(item["message"], str):
        try:
            item = orjson.loads(item["message"])
        except orjson.JSONDecodeError:
            raise IngestError("webhook message is not valid JSON") from None
        if not isinstance(item, dict):
            raise IngestError("webhook message must hold a JSON object")
    try:
        if is_opencanary_record(item):
            return normalize(item)
        if "event_type" not in item:
            raise IngestError("neither an OpenCanary record (logtype) nor an event (event_type)")
        return normalize_event(item)
    except (RecordError, EventError) as exc:
        raise IngestError(str(exc)) from None


def parse_body(body: bytes) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``POST /ingest``: one object, an array, or a webhook body; (events, errors by index)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return [], [{"index": None, "error": "body is not valid JSON"}]
    items = data if isinstance(data, list) else [data]
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
        raise IngestError("not valid JSON (or not UTF-8)") from None
    return parse_item(item)


class LineSplitter:
    """Splits a byte stream into lines, refusing (and skipping) lines over ``max_bytes``."""

    TOO_LONG = object()

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._buffer = bytearray()
        self._skipping = False

    def feed(self, data: bytes) -> Iterator[bytes | object]:
        """Complete lines (without the newline), or ``TOO_LONG`` once per oversized line."""
        self._buffer += data
        start = 0
        while True:
            end = self._buffer.find(b"\n", start)
            if end < 0:
                break
            if self._skipping:
                self._skipping = False
            elif end - start > self._max:
                yield self.TOO_LONG
            else:
                line = bytes(self._buffer[start:end]).strip()
                if line:
                    yield line
            start = end + 1
        del self._buffer[:start]
        if len(self._buffer) > self._max:
            if not self._skipping:
                self._skipping = True
                yield self.TOO_LONG
            self._buffer.clear()


class IngestServer(TCPServer):
    """Newline-delimited JSON over TCP, compatible with OpenCanary's ``SocketJSONHandler``."""

    def __init__(
        self,
        publish: Callable[[dict[str, Any]], Any],
        metrics: Metrics,
        max_line_bytes: int,
    ) -> None:
        super().__init__(max_buffer_size=READ_CHUNK * 4)
        self._publish = publish
        self._metrics = metrics
        self._max_line = max_line_bytes

    async def handle_stream(self, stream: IOStream, address: Any) -> None:
        peer = address[0] if isinstance(address, tuple) else str(address)
        splitter = LineSplitter(self._max_line)
        rejected = 0
        try:
            while True:
                data = await stream.read_bytes(READ_CHUNK, partial=True)
                for line in splitter.feed(data):
                    try:
                        if line is LineSplitter.TOO_LONG:
                            raise IngestError(f"line longer than {self._max_line} bytes")
                        event = parse_line(line)  # type: ignore[arg-type]
                    except IngestError as exc:
                        rejected += 1
                        self._metrics.ingest_rejected.labels(_reason_label(str(exc))).inc()
                        if rejected <= LOGGED_PER_CONNECTION or rejected % 1000 == 0:
                            log.warning(
                                "ingest from %s: line dropped (%s); %d so far", peer, exc, rejected
                            )
                        continue
                    await self._publish(event)
        except StreamClosedError:
            pass


def _reason_label(reason: str) -> str:
    """A bounded label for the rejected-lines counter."""
    if reason.startswith("line longer"):
        return "too_long"
    if reason.startswith("not valid JSON"):
        return "malformed"
    if reason.startswith("item must be"):
        return "not_object"
    return "invalid"
