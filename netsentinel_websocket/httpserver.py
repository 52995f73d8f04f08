"""The runner's guarded HTTP server: what an untrusted peer may cost before it has a token.

Tornado's defaults suit a server behind a proxy, not one facing attackers: a 100 MB body is
buffered before any handler looks at the token, a request head may take an hour, and at the
descriptor limit the accept loop raises on every turn. Here every route gets a small body limit
(a larger one only where a handler raises it after authenticating), request heads and idle
connections are reaped after ``server.idle_timeout``, connections that are not (yet) WebSocket
connections are counted in all and per address, and the listening sockets shed connections
they cannot take instead of spinning.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from tornado import gen, httputil
from tornado.http1connection import HTTP1Connection
from tornado.httpserver import HTTPServer
from tornado.iostream import IOStream, StreamClosedError

from .config import HTTPServerSettings

log = logging.getLogger("netsentinel_websocket.httpserver")

MAX_HEADER_BYTES = 16 * 1024  # a request line, a few headers and a bearer token fit
REPORT_EVERY = 60.0  # seconds between two log lines about the same kind of refusal


class Throttled:
    """A warning logged at once, then at most every ``REPORT_EVERY`` seconds with how many
    times it happened since: an attacker must not be able to fill the disk with our logs."""

    def __init__(self, message: str) -> None:
        self._message = message
        self._count = 0
        self._last = -REPORT_EVERY

    def __call__(self, *args: Any) -> None:
        self._count += 1
        now = time.monotonic()
        if now - self._last >= REPORT_EVERY:
            log.warning(self._message + " [%d since the last such line]", *args, self._count)
            self._count = 0
            self._last = now


def raise_fd_limit() -> None:
    """Raise the soft descriptor limit to the hard one: each client holds a descriptor, and
    services still often start with a soft limit of 1024 (systemd's default)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= target:
        log.info("descriptor limit %d", soft)
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("could not raise the descriptor limit from %d to %d: %s", soft, target, exc)
    else:
        log.info("descriptor limit raised from %d to %d", soft, target)


class _Shedder:
    """Keeps one spare descriptor so that at the descriptor limit a pending connection can still
    be accepted and closed at once (the libuv/nginx trick): the client learns at once instead of
    timing out, and the listening socket stops being readable instead of waking the loop forever."""

    def __init__(self, listeners: int) -> None:
        self._listeners = listeners  # the spare is closed with the last of them
        self._spare: int | None = self._reserve()
        self._warn = Throttled(
            "descriptor limit reached (%s): new connections are closed at once; connected "
            "clients are kept"
        )

    @staticmethod
    def _reserve() -> int | None:
        try:
            return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None

    def shed(self, listener: socket.socket, exc: OSError) -> None:
        self._warn(errno.errorcode.get(exc.errno or 0, str(exc)))
        if self._spare is not None:
            os.close(self._spare)
        try:
            conn, _ = socket.socket.accept(listener)
        except OSError:
            pass
        else:
            conn.close()
        self._spare = self._reserve()

    def release(self) -> None:
        self._listeners -= 1
        if self._listeners == 0 and self._spare is not None:
            os.close(self._spare)
            self._spare = None


class _GuardedSocket(socket.socket):
    """A listening socket whose ``accept`` sheds a connection at EMFILE/ENFILE and ends the
    accept round (``BlockingIOError``) instead of raising into Tornado's accept loop."""

    shedder: _Shedder

    def accept(self) -> tuple[socket.socket, Any]:
        try:
            return super().accept()
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            self.shedder.shed(self, exc)
            raise BlockingIOError(errno.EAGAIN, "descriptor limit reached") from None

    def close(self) -> None:
        if self.fileno() >= 0:
            self.shedder.release()
        super().close()


def guard_sockets(sockets: Sequence[socket.socket]) -> list[socket.socket]:
    """The same listening sockets (from ``tornado.netutil.bind_sockets``), made to survive the
    descriptor limit; give the result to ``add_sockets``. The originals must not be used."""
    shedder = _Shedder(len(sockets))
    guarded: list[socket.socket] = []
    for sock in sockets:
        new = _GuardedSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())
        new.setblocking(False)
        new.shedder = shedder
        guarded.append(new)
    return guarded


def _content_length(headers: httputil.HTTPHeaders) -> int | None:
    """The announced body length, or None when absent or malformed (Tornado refuses those)."""
    values = [v.strip() for v in headers.get("Content-Length", "").split(",")]
    if not all(v.isdigit() and v.isascii() for v in values):
        return None
    return max(int(v) for v in values)


_TOO_LARGE = (
    b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
    b"Cache-Control: no-store\r\nConnection: close\r\nContent-Length: 28\r\n\r\n"
    b'{"error": "body too large"}\n'
)


class _BodyGate(httputil.HTTPMessageDelegate):
    """Answers 413 to a request that announces a body over its route's limit, before the
    application sees it and without reading the body; passes every other request on."""

    def __init__(
        self,
        inner: httputil.HTTPMessageDelegate,
        conn: httputil.HTTPConnection,
        limits: Callable[[str], int],
    ) -> None:
        self._inner = inner
        self._conn = conn
        self._limits = limits
        self._passed = False

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        assert isinstance(start_line, httputil.RequestStartLine)
        length = _content_length(headers)
        if length is not None and length > self._limits(start_line.path.split("?", 1)[0]):
            return self._refuse()
        self._passed = True
        return self._inner.headers_received(start_line, headers)

    async def _refuse(self) -> None:
        # Detaching ends Tornado's handling of the request (it would otherwise answer a bare 400
        # and log it); the connection is closed once the answer is written or after a second.
        assert isinstance(self._conn, HTTP1Connection)
        stream = self._conn.detach()
        try:
            await gen.with_timeout(
                timedelta(seconds=1), stream.write(_TOO_LARGE), (StreamClosedError,)
            )
        except (StreamClosedError, TimeoutError):
            pass
        finally:
            stream.close()

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return self._inner.data_received(chunk)

    def finish(self) -> None:
        self._inner.finish()

    def on_connection_close(self) -> None:
        if self._passed:
            self._inner.on_connection_close()


class GuardedHTTPServer(HTTPServer):
    """Tornado's HTTPServer with the ``server.*`` bounds of the runner.

    ``body_limits`` maps request paths to the largest body their handler may accept once it has
    authenticated the request (it raises the connection's limit with ``set_max_body_size``);
    every other path gets ``server.max_body_bytes``.
    """

    def initialize(  # type: ignore[override]
        self,
        request_callback: httputil.HTTPServerConnectionDelegate,
        settings: HTTPServerSettings,
        *,
        body_limits: Mapping[str, int] | None = None,
        ssl_options: Any = None,
    ) -> None:
        super().initialize(
            request_callback,
            ssl_options=ssl_options,
            xheaders=False,
            max_header_size=MAX_HEADER_BYTES,
            idle_connection_timeout=settings.idle_timeout,
            body_timeout=settings.body_timeout,
            max_body_size=settings.max_body_bytes,
        )
        self._default_limit = settings.max_body_bytes
        self._body_limits = dict(body_limits or {})
        self._max_pending = settings.max_pending
        self._max_per_ip = settings.max_pending_per_ip
        self._pending: dict[IOStream, str] = {}
        self._per_ip: dict[str, int] = {}
        self._warn_total = Throttled(
            "HTTP connection from %s closed at accept: server.max_pending (%d) reached"
        )
        self._warn_per_ip = Throttled(
            "HTTP connection from %s closed at accept: server.max_pending_per_ip (%d) reached"
        )

    def body_limit(self, path: str) -> int:
        """The largest body a request to ``path`` may announce."""
        return self._body_limits.get(path, self._default_limit)

    def handle_stream(self, stream: IOStream, address: Any) -> None:
        ip = address[0] if isinstance(address, tuple) else str(address)
        if len(self._pending) >= self._max_pending:
            self._warn_total(ip, self._max_pending)
            stream.close()
            return
        if self._per_ip.get(ip, 0) >= self._max_per_ip:
            self._warn_per_ip(ip, self._max_per_ip)
            stream.close()
            return
        self._pending[stream] = ip
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        super().handle_stream(stream, address)

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        inner = super().start_request(server_conn, request_conn)
        return _BodyGate(inner, request_conn, self.body_limit)

    def on_close(self, server_conn: object) -> None:
        """Called when the connection closes or is handed over to a WebSocket (detached)."""
        super().on_close(server_conn)
        ip = self._pending.pop(server_conn.stream, None)  # type: ignore[attr-defined]
        if ip is not None:
            left = self._per_ip[ip] - 1
            if left:
                self._per_ip[ip] = left
            else:
                del self._per_ip[ip]
