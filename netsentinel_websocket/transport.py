"""An outbox's transport on a Tornado stream, shared by the WebSocket and SSE handlers.

A prepared frame (or chunk) goes straight to the socket when Tornado has nothing pending on
the stream (its own writes share it: WebSocket pings and pongs, HTTP headers; bytes written
past its buffer would cut into the middle of them), the rest through the stream's buffer.

The socket's send buffer is pinned (``websocket.queue.send_buffer``) so that what a subscriber
has not taken waits in its outbox, where the node's backpressure sees it (:mod:`.pressure`).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from tornado.iostream import IOStream, SSLIOStream, StreamClosedError


class StreamTransport:
    """:class:`~.outbox.Transport` on ``stream``; ``broken`` is called when the peer is gone
    (it must drop the connection: nothing more goes out)."""

    __slots__ = ("_stream", "_sock", "_broken")

    def __init__(self, stream: IOStream, broken: Callable[[], None], send_buffer: int = 0) -> None:
        """``send_buffer``: the socket's ``SO_SNDBUF``; 0 leaves it to the kernel."""
        self._stream = stream
        self._sock = None if isinstance(stream, SSLIOStream) else stream.socket
        self._broken = broken
        if send_buffer and stream.socket is not None:
            try:
                stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
            except OSError:
                pass  # the peer is already gone: the first write will tell

    def send_now(self, data: bytes | memoryview) -> int:
        if self._sock is None or self._stream.writing() or self._stream.closed():
            return 0
        try:
            return self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError:  # a dead peer: drop the connection; nothing more goes out
            self._broken()
            return len(data)

    def write(self, data: bytes | memoryview, done: Callable[[bool], None]) -> None:
        try:
            future = self._stream.write(data)
        except StreamClosedError:
            self._broken()
            return

        def written(f: asyncio.Future[None]) -> None:
            ok = not f.cancelled() and f.exception() is None
            if not ok:
                self._broken()
            done(ok)

        future.add_done_callback(written)
