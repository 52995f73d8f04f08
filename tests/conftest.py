"""Shared fixtures: tokens, in-process servers, subprocess servers and WebSocket clients.

Every test talks to a real Tornado server on a free port through a real WebSocket client.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import settings as hypothesis_settings
from tornado.httpclient import AsyncHTTPClient, HTTPRequest, HTTPResponse
from tornado.websocket import WebSocketClientConnection, websocket_connect

from netsentinel_websocket.auth import mint
from netsentinel_websocket.plugin import WebSocketPlugin
from netsentinel_websocket.runner import Runner

# Property tests draw new random examples on every plain `pytest` run (exploration), and the
# same examples under tox/CI (HYPOTHESIS_PROFILE=ci), so a landing never depends on luck.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

SECRET = "test-secret-0123456789-abcdefghij"
ALL_SCOPES = "channel:* alerts:ack events:sensitive admin ingest"


def make_token(
    sub: str = "tester", scope: str | list[str] = "channel:*", ttl: float = 3600, **extra: Any
) -> str:
    """An HS256 token for the test secret."""
    return mint(SECRET, sub, scope, ttl, extra=extra or None)


@pytest.fixture
def token_factory():
    return make_token


def base_config(**overrides: Any) -> dict[str, Any]:
    """A minimal enabled configuration on free ports; keys given with ``__`` for dots."""
    config: dict[str, Any] = {
        "websocket.enabled": True,
        "websocket.auth.jwt.secret": SECRET,
        "websocket.ingest.tcp": "127.0.0.1:0",
        "server.bind": "127.0.0.1",
        "server.port": 0,
        "websocket.heartbeat.interval": 0,
    }
    config.update({k.replace("__", "."): v for k, v in overrides.items()})
    return config


class WSClient:
    """A real WebSocket client that splits coalesced frames into messages."""

    def __init__(self, conn: WebSocketClientConnection) -> None:
        self.conn = conn
        self._pending: list[dict[str, Any]] = []

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next message; raises ConnectionError when the server closed."""
        while not self._pending:
            frame = await asyncio.wait_for(self.conn.read_message(), timeout)
            if frame is None:
                raise ConnectionError(f"closed {self.conn.close_code} {self.conn.close_reason}")
            self._pending.extend(orjson.loads(part) for part in frame.split("\n") if part)
        return self._pending.pop(0)

    async def recv_type(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        """Skip messages until one of type ``kind``."""
        deadline = time.monotonic() + timeout
        while True:
            msg = await self.recv(max(0.01, deadline - time.monotonic()))
            if msg.get("type") == kind:
                return msg

    async def events(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The next ``n`` event messages."""
        out = []
        while len(out) < n:
            out.append(await self.recv_type("event", timeout))
        return out

    def send(self, message: Any) -> None:
        self.conn.write_message(
            message if isinstance(message, (str, bytes)) else json.dumps(message)
        )

    async def request(self, message: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        """Send a message and return the reply with the same id (skipping events)."""
        self.send(message)
        deadline = time.monotonic() + timeout
        while True:
            msg = await self.recv(max(0.01, deadline - time.monotonic()))
            if msg.get("type") != "event" and msg.get("id") == message.get("id"):
                return msg

    async def closed(self, timeout: float = 5.0) -> tuple[int | None, str | None]:
        """Wait until the server closes; returns (code, reason), ignoring messages."""
        deadline = time.monotonic() + timeout
        while True:
            frame = await asyncio.wait_for(
                self.conn.read_message(), max(0.01, deadline - time.monotonic())
            )
            if frame is None:
                return self.conn.close_code, self.conn.close_reason

    def close(self) -> None:
        self.conn.close()


class Server:
    """An in-process runner (plugin + web server + ingest) on free ports."""

    def __init__(self, runner: Runner, plugin: WebSocketPlugin) -> None:
        self.runner = runner
        self.plugin = plugin
        self.node = plugin.node
        self.port = runner.port
        self.ingest_port = runner.ingest_port
        self.http = f"http://127.0.0.1:{self.port}"
        self.url = f"ws://127.0.0.1:{self.port}{runner.settings['websocket.path']}"

    async def connect(
        self,
        token: str | None = None,
        *,
        subprotocols: list[str] | None = None,
        headers: dict[str, str] | None = None,
        query: str = "",
        authenticate: bool = True,
    ) -> WSClient:
        """Connect (with ``Authorization: Bearer`` unless told otherwise)."""
        hdrs = dict(headers or {})
        if authenticate and token is None and subprotocols is None:
            token = make_token()
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        req = HTTPRequest(self.url + query, headers=hdrs)
        conn = await websocket_connect(req, subprotocols=subprotocols)
        return WSClient(conn)

    async def subscriber(
        self, channels: list[str], token: str | None = None, **subscribe: Any
    ) -> WSClient:
        """A connected client that got its welcome and is subscribed to ``channels``."""
        client = await self.connect(token)
        assert (await client.recv())["type"] == "welcome"
        reply = await client.request(
            {"type": "subscribe", "id": 1, "channels": channels, **subscribe}
        )
        assert reply["type"] == "subscribed", reply
        client.subscribed = reply  # type: ignore[attr-defined]
        return client

    async def publish(self, event: dict[str, Any]) -> None:
        """Run an event (or OpenCanary record) through the pipeline, as ingest does."""
        await self.runner.pipeline.feed_raw(event)

    async def get(self, path: str, token: str | None = None) -> HTTPResponse:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return await AsyncHTTPClient().fetch(self.http + path, headers=headers, raise_error=False)

    async def stop(self) -> None:
        await self.runner.stop()


@pytest.fixture
def server_factory(io_loop) -> Iterator[Any]:
    """``await server_factory(**config_overrides)`` starts a server; all stop at teardown."""
    servers: list[Server] = []

    async def start(**overrides: Any) -> Server:
        config = base_config(**overrides)
        plugin = WebSocketPlugin()
        runner = Runner(config, plugins=[plugin])
        await runner.start()
        server = Server(runner, plugin)
        servers.append(server)
        return server

    yield start

    async def stop_all() -> None:
        for server in servers:
            await server.stop()

    io_loop.run_sync(stop_all, timeout=30)


def event(
    n: int = 0, event_type: str = "honeypot.ssh.login_attempt", severity: str = "high", **data: Any
) -> dict[str, Any]:
    """A NetSentinel event numbered ``n`` (in ``data.n``)."""
    return {
        "id": f"e-{n}",
        "event_type": event_type,
        "severity": severity,
        "source": "test",
        "data": {"n": n, "src_ip": "203.0.113.7", **data},
        "tags": ["test"],
    }


@pytest.fixture
def make_event():
    return event


# --- the runner as a subprocess ---


class ServeProcess:
    """``netsentinel-websocket serve`` in a subprocess, ready when it prints READY.

    Give it port 0 (``base_config`` does): the kernel picks a free port at bind time, so
    parallel test runs never race for one. After the first start the ports it got are written
    into its config, so ``start()`` again brings the server back where clients expect it.
    """

    def __init__(
        self, config: dict[str, Any], tmp: Path, *args: str, prefix: tuple[str, ...] = ()
    ) -> None:
        """``prefix``: a command to run the server under (e.g. ``prlimit --nofile=128``)."""
        self.config = dict(config)
        self.config_path = tmp / f"config-{time.monotonic_ns()}.json"
        self.config_path.write_text(json.dumps(self.config))
        self.args = args
        self.prefix = prefix
        self.log_path = tmp / f"serve-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.ingest_port = 0

    def start(self, timeout: float = 20) -> ServeProcess:
        cmd = [
            *self.prefix,
            sys.executable,
            "-m",
            "netsentinel_websocket",
            "serve",
            "--config",
            str(self.config_path),
            *self.args,
        ]
        self._close_pipes()
        # stderr goes to a file: a pipe nobody drains would stall a chatty server.
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ}
            )
        deadline = time.monotonic() + timeout
        self.stdout_lines: list[str] = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("serve exited: " + self.stderr_text())
            self.stdout_lines.append(line)
            if line.startswith("READY "):
                _, port, ingest = line.split()
                self.port, self.ingest_port = int(port), int(ingest)
                self._pin_ports()
                return self
        raise RuntimeError("serve did not become ready")

    def _pin_ports(self) -> None:
        self.config["server.port"] = self.port
        if self.config.get("websocket.ingest.tcp"):
            host = self.config["websocket.ingest.tcp"].rsplit(":", 1)[0]
            self.config["websocket.ingest.tcp"] = f"{host}:{self.ingest_port}"
        self.config_path.write_text(json.dumps(self.config))

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def send_lines(self, lines: list[bytes]) -> None:
        with socket.create_connection(("127.0.0.1", self.ingest_port)) as sock:
            sock.sendall(b"".join(line + b"\n" for line in lines))

    def stderr_text(self) -> str:
        """Everything the server logged so far (all runs of this instance)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 15) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_pipes()
        return self.proc.returncode

    def _close_pipes(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def serve_process(tmp_path) -> Iterator[Any]:
    """``serve_process(config, *args)`` starts ``serve``; all are stopped at teardown."""
    procs: list[ServeProcess] = []

    def start(config: dict[str, Any], *args: str, prefix: tuple[str, ...] = ()) -> ServeProcess:
        proc = ServeProcess(config, tmp_path, *args, prefix=prefix).start()
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()


def free_port() -> int:
    """A port free now (another process may take it later: prefer port 0 or ReservedPort)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ReservedPort:
    """A port held by a bound socket that does not listen: connections to it are refused and
    no other process can take it until :meth:`release` (parallel test runs share the range)."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]

    def release(self) -> int:
        self._sock.close()
        return self.port


def redis_url() -> str | None:
    """The test Redis, or None (tests skip unless NETSENTINEL_REQUIRE_REDIS=1 makes it fatal)."""
    url = os.environ.get("NETSENTINEL_TEST_REDIS", "redis://127.0.0.1:6379/15")
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return None
    return url


@pytest.fixture
def redis_test_url() -> str:
    url = redis_url()
    if url is None:
        if os.environ.get("NETSENTINEL_REQUIRE_REDIS") == "1":
            pytest.fail("Redis is required (NETSENTINEL_REQUIRE_REDIS=1) but not reachable")
        pytest.skip("no Redis reachable at 127.0.0.1:6379 (set NETSENTINEL_TEST_REDIS)")
    return url


__all__ = ["AsyncIterator"]


# --- raw WebSocket frames, and a client that reads only when told (delivery tests) ---


def next_frame(data: bytes, at: int = 0) -> tuple[int, bytes, int] | None:
    """The unmasked frame starting at ``at`` as (opcode, payload, end), or None if incomplete."""
    if len(data) < at + 2:
        return None
    n, start = data[at + 1] & 0x7F, at + 2
    if n >= 126:
        width = 2 if n == 126 else 8
        if len(data) < start + width:
            return None
        n, start = int.from_bytes(data[start : start + width], "big"), start + width
    if len(data) < start + n:
        return None
    return data[at] & 0x0F, data[start : start + n], start + n


def parse_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Every complete frame in ``data`` as (opcode, payload)."""
    frames, at = [], 0
    while (frame := next_frame(data, at)) is not None:
        frames.append(frame[:2])
        at = frame[2]
    return frames


def frame_messages(payload: bytes) -> list[dict[str, Any]]:
    """The JSON messages of one server text frame (coalesced with newlines)."""
    return [orjson.loads(part) for part in payload.split(b"\n") if part]


def close_code(payload: bytes) -> int | None:
    """The status code of a close frame's payload."""
    return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None


async def raw_handshake(
    port: int,
    path: str = "/ws",
    extra_headers: str = "",
    token: str | None = None,
    rcvbuf: int | None = None,
) -> tuple[socket.socket, dict[str, str], bytes]:
    """A WebSocket upgrade on a bare non-blocking socket (``extra_headers``: whole header lines
    with their CRLF): the socket, the 101 answer's headers (lower-case names) and the bytes
    already read after them. ``rcvbuf`` pins the kernel receive buffer."""
    import base64

    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"{extra_headers}Authorization: Bearer {token or make_token()}\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), 5)
        if not chunk:
            raise ConnectionError("EOF")
        buffer += chunk
    head, rest = buffer.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 101"), head
    answer = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        answer[name.strip().lower()] = value.strip()
    return sock, answer, rest


class RawClient:
    """A WebSocket client on a bare socket: it reads only when asked and never answers a ping
    or a close by itself, to play a stalled or dead peer the kernel still acknowledges."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    @classmethod
    async def connect(
        cls, port: int, token: str | None = None, *, rcvbuf: int | None = None, path: str = "/ws"
    ) -> RawClient:
        """Handshake with ``Authorization: Bearer``; ``rcvbuf`` pins the kernel receive buffer."""
        sock, _, rest = await raw_handshake(port, path, token=token, rcvbuf=rcvbuf)
        client = cls(sock)
        client.buffer = rest
        return client

    async def _fill(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        chunk = await asyncio.wait_for(loop.sock_recv(self.sock, 1 << 20), timeout)
        if not chunk:
            raise ConnectionError("EOF")
        self.buffer += chunk

    def send(self, message: dict[str, Any]) -> None:
        """One masked text frame (small messages only: the socket takes them at once)."""
        payload = json.dumps(message).encode()
        assert len(payload) < 126
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.send(bytes((0x81, 0x80 | len(payload))) + mask + masked)

    async def frame(self, timeout: float = 5.0) -> tuple[int, bytes]:
        """The next frame as (opcode, payload); ConnectionError at EOF."""
        deadline = time.monotonic() + timeout
        while (frame := next_frame(self.buffer)) is None:
            await self._fill(max(0.01, deadline - time.monotonic()))
        opcode, payload, end = frame
        self.buffer = self.buffer[end:]
        return opcode, payload

    async def message(self, timeout: float = 5.0) -> dict[str, Any]:
        """The first message of the next text frame."""
        opcode, payload = await self.frame(timeout)
        assert opcode == 1, (opcode, payload[:80])
        return frame_messages(payload)[0]

    async def subscribe(self, channels: list[str]) -> dict[str, Any]:
        """Read the welcome, subscribe, and return the ``subscribed`` reply."""
        assert (await self.message())["type"] == "welcome"
        self.send({"type": "subscribe", "id": 1, "channels": channels})
        reply = await self.message()
        assert reply["type"] == "subscribed", reply
        return reply

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw_client() -> Iterator[Any]:
    """``await raw_client(port, token=None, rcvbuf=None)``: a RawClient, closed at teardown."""
    clients: list[RawClient] = []

    async def connect(port: int, token: str | None = None, **kwargs: Any) -> RawClient:
        client = await RawClient.connect(port, token, **kwargs)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


# --- the hub without sockets ---


class FakeSubscriber:
    """The hub's Subscriber protocol without a socket: records every frame it takes, the
    number of events the hub said each holds, and their messages.

    ``paced=False`` plays a reader that keeps up: it takes every frame, replays included, at
    once. ``paced=True`` plays a reader that takes the next frame only when :meth:`take` is
    called: a replay's frames are drawn one call at a time, and frames sent meanwhile wait
    behind it (as a connection's outbox keeps them).
    """

    def __init__(self, sensitive: bool = False, *, paced: bool = False) -> None:
        self.sensitive = sensitive
        self.closed = False
        self.paced = paced
        self.frames: list[bytes] = []
        self.counts: list[int] = []  # events per frame, as the hub declared them
        self.messages: list[dict[str, Any]] = []
        self.errors: list[str] = []  # protocol violations (asserts in a loop callback get lost)
        self._waiting: deque[Any] = deque()  # (frame, count) tuples and replay iterators

    def send_replay(self, frames: Any) -> None:
        if self.closed:
            return
        self._waiting.append(frames)
        if not self.paced:
            self.take_all()

    def send_frame(self, frame: bytes, count: int = 0) -> None:
        if self.closed:  # as a real connection: frames after the close are dropped
            return
        if self._waiting:
            self._waiting.append((frame, count))
        else:
            self._record(frame, count)

    @property
    def waiting(self) -> bool:
        """True while frames (or a replay) wait to be taken."""
        return bool(self._waiting)

    def take(self) -> bool:
        """Take the next waiting frame (drawing a replay's next one); False when none waits."""
        while self._waiting and not self.closed:
            head = self._waiting[0]
            if isinstance(head, tuple):
                self._waiting.popleft()
                self._record(*head)
                return True
            drawn = next(head, None)
            if drawn is None:
                self._waiting.popleft()
                continue
            self._record(*drawn)
            return True
        return False

    def take_all(self) -> None:
        while self.take():
            pass

    def _record(self, frame: bytes, count: int) -> None:
        opcode, payload, end = next_frame(frame) or (0, b"", 0)
        if (opcode, end) != (1, len(frame)):
            self.errors.append(f"not exactly one text frame: {frame[:40]!r}")
        messages = frame_messages(payload)
        events = sum(m["type"] == "event" for m in messages)
        if events != count:
            self.errors.append(f"frame {len(self.frames)} holds {events} events, declared {count}")
        self.frames.append(frame)
        self.counts.append(count)
        self.messages.extend(messages)

    def events(self, channel: str | None = None) -> list[dict[str, Any]]:
        return [
            m for m in self.messages if m["type"] == "event" and channel in (None, m["channel"])
        ]


class YieldingBroker:
    """A broker whose ``recover`` yields to the loop before and after reading history (as a
    networked broker does), so publications keep arriving during a resume handover."""

    def __init__(self, inner: Any, before: int = 2, after: int = 2) -> None:
        self.inner = inner
        self.before = before
        self.after = after
        self.yields: list[tuple[int, int]] = []  # per recover call, overrides (before, after)
        self.on_resume: Any = None  # called each time recover resumes (to publish right then)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def recover(self, channel: str, since: Any) -> Any:
        before, after = self.yields.pop(0) if self.yields else (self.before, self.after)
        await self._pause(before)
        recovery = await self.inner.recover(channel, since)
        await self._pause(after)
        return recovery

    async def _pause(self, turns: int) -> None:
        for _ in range(turns):
            await asyncio.sleep(0)
            if self.on_resume is not None:
                self.on_resume()


# --- Redis: a private key prefix on the shared test Redis, or a redis-server of the test's own ---


def with_query(url: str, **params: str) -> str:
    """``url`` with query parameters added (the Redis broker reads ``prefix`` from the query)."""
    from urllib.parse import urlencode

    return url + ("&" if "?" in url else "?") + urlencode(params)


@pytest.fixture
def redis_prefixed_url(redis_test_url: str) -> Iterator[str]:
    """The test Redis with a key prefix of this test's own; its keys are deleted afterwards.
    Request it before ``server_factory``/``serve_process`` so the nodes stop first."""
    import uuid

    import redis

    prefix = f"nstest:{uuid.uuid4().hex[:12]}:"
    yield with_query(redis_test_url, prefix=prefix)
    client = redis.Redis.from_url(redis_test_url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


class RedisServer:
    """A ``redis-server`` on a free port without persistence: a restart loses every key."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited (port {self.port} taken?)")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    # Ours, not another test's redis that got the port first.
                    sock.sendall(b"INFO server\r\n")
                    if f"process_id:{self.proc.pid}\r".encode() in sock.recv(65536):
                        return self
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own (started), which the test may stop and restart."""
    import shutil

    if shutil.which("redis-server") is None:
        if os.environ.get("NETSENTINEL_REQUIRE_REDIS") == "1":
            pytest.fail("redis-server is required (NETSENTINEL_REQUIRE_REDIS=1) but not installed")
        pytest.skip("redis-server binary not installed")
    # redis-server cannot bind port 0 and report it, so a free port is picked first; another
    # process may take it in between (parallel tox envs), hence a few tries.
    for attempt in range(3):
        server = RedisServer(tmp_path)
        try:
            server.start()
            break
        except RuntimeError:
            server.stop()
            if attempt == 2:
                raise
    yield server
    server.stop()
