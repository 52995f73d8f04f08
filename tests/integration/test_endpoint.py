"""The WebSocket endpoint's own edges, on a real server: what the upgrade handler hands over,
pings answered without growing, and a failure that costs one connection only."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import ssl
import struct
import time

import orjson
import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from netsentinel_websocket.session import Session

from ..conftest import WSClient, base_config, make_token, parse_frames
from ..keyfiles import write_tls_pair


def masked(payload: bytes, opcode: int = 0x1, fin: bool = True) -> bytes:
    """One masked client frame (payloads under 126 bytes)."""
    assert len(payload) < 126
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes((0x80 * fin | opcode, 0x80 | len(payload))) + mask + body


UPGRADE = (
    "GET /ws HTTP/{version}\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def upgrade_request(version: str = "1.1") -> bytes:
    return UPGRADE.format(version=version, key=base64.b64encode(os.urandom(16)).decode()).encode()


async def read_until(sock: socket.socket, done, timeout: float = 5) -> bytes:
    """Bytes from ``sock`` until ``done(bytes)`` holds."""
    loop = asyncio.get_running_loop()
    data = b""
    deadline = time.monotonic() + timeout
    while not done(data):
        left = deadline - time.monotonic()
        assert left > 0, data[:200]
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 1 << 16), left)
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.gen_test(timeout=20)
async def test_frames_sent_with_the_upgrade_request_are_read(server_factory):
    """A client may write its first frames in the same packet as the upgrade request: Tornado
    has read them with the request head, and the endpoint must start from them."""
    server = await server_factory()
    sock = socket.socket()
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", server.port))
    auth = json.dumps({"type": "auth", "token": make_token()}).encode()
    frames = masked(b"", 0x9) + masked(json.dumps({"type": "ping", "id": 7}).encode())
    await loop.sock_sendall(sock, upgrade_request() + _auth_frames(auth) + frames)
    data = await read_until(sock, lambda d: b'"pong"' in d)
    rest = data.split(b"\r\n\r\n", 1)[1]
    got = parse_frames(rest)
    opcodes = [opcode for opcode, _ in got]
    assert 0xA in opcodes  # the control pong
    texts = [json.loads(line) for op, p in got if op == 1 for line in p.split(b"\n") if line]
    assert [m["type"] for m in texts] == ["welcome", "pong"]
    assert texts[1]["id"] == 7
    sock.close()


def _auth_frames(auth: bytes) -> bytes:
    """The ``auth`` message (over 125 bytes) as fragments of at most 100 bytes."""
    parts = [auth[i : i + 100] for i in range(0, len(auth), 100)]
    return b"".join(
        masked(part, 0x1 if i == 0 else 0x0, fin=i == len(parts) - 1)
        for i, part in enumerate(parts)
    )


@pytest.mark.gen_test(timeout=20)
async def test_a_ping_flood_without_reading_is_answered_with_the_latest_only(
    server_factory, raw_client, make_event
):
    """10,000 pings from a client that does not read: at most one pong in flight and the
    latest waiting (RFC 6455 5.5.3), so the server holds no more than its socket's buffer;
    a subscriber beside it gets every event published meanwhile, in order."""
    server = await server_factory()
    client = await raw_client(server.port, rcvbuf=4096)
    assert (await client.message())["type"] == "welcome"
    (conn,) = server.node.connections
    healthy = await server.subscriber(["events"])
    flood = b"".join(masked(b"%05d" % i + b"x" * 100, 0x9) for i in range(10_000))
    client.sock.setblocking(True)
    client.sock.settimeout(10)
    client.sock.sendall(flood)  # 1.1 MB: the server reads it all or this times out
    client.sock.setblocking(False)
    for n in range(50):  # while the server reads the flood
        await server.publish(make_event(n, severity="low"))
        await asyncio.sleep(0.01)
    got = await healthy.events(50)
    assert [m["offset"] for m in got] == list(range(1, 51))
    assert [m["event"]["data"]["n"] for m in got] == list(range(50))
    assert len(conn._stream._write_buffer) < 64 * 1024
    pongs = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        opcode, payload = await client.frame()
        assert opcode == 0xA
        pongs.append(payload)
        if payload.startswith(b"09999"):
            break
    assert pongs[-1].startswith(b"09999")  # the latest is always answered
    assert len(pongs) < 10_000  # the ones in between were not
    assert conn in server.node.connections and not conn.closed  # a flood of pings is no breach


@pytest.mark.gen_test(timeout=20)
async def test_a_failure_while_handling_a_message_drops_that_connection_only(
    server_factory, make_event, monkeypatch, caplog
):
    server = await server_factory()
    healthy = await server.subscriber(["events"])
    doomed = await server.subscriber(["events"])
    receive = Session.receive

    def failing(self, message, now, wall):
        if "boom" in message:
            raise RuntimeError("a bug in handling")
        return receive(self, message, now, wall)

    monkeypatch.setattr(Session, "receive", failing)
    doomed.send({"type": "ping", "id": "boom"})
    code, _ = await doomed.closed()
    assert code is None  # dropped: no close frame
    assert "a bug in handling" in caplog.text
    while len(server.node.connections) > 1:
        await asyncio.sleep(0.01)
    await server.publish(make_event(1, severity="low"))
    assert (await healthy.events(1))[0]["offset"] == 1
    assert (await healthy.request({"type": "ping", "id": 2}))["type"] == "pong"


@pytest.mark.gen_test(timeout=30)
async def test_the_endpoint_works_over_tls(serve_process, tmp_path):
    """``server.tls.*``: the stream handed over after the 101 is a TLS stream; events, large
    frames both ways, pings and the close handshake go through it as over plain TCP."""
    cert, key = write_tls_pair(tmp_path, "server")
    proc = serve_process(base_config(server__tls__cert=str(cert), server__tls__key=str(key)))
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    request = HTTPRequest(
        f"wss://127.0.0.1:{proc.port}/ws",
        headers={"Authorization": f"Bearer {make_token()}"},
        ssl_options=context,
    )
    client = WSClient(await websocket_connect(request, ping_interval=0.2))
    assert (await client.recv())["type"] == "welcome"
    reply = await client.request({"type": "subscribe", "id": 1, "channels": ["events"]})
    assert reply["type"] == "subscribed", reply
    big = "x" * 60_000  # a request near the 64 KiB message limit, read over TLS records
    client.send({"type": "ping", "id": big})
    assert (await client.recv_type("error"))["code"] == "bad_request"
    blob = "y" * 30_000  # 20 of them: frames larger than a TLS record and the send buffer
    line = {"event_type": "honeypot.ssh.login", "severity": "low"}
    proc.send_lines([orjson.dumps({**line, "data": {"blob": blob, "n": n}}) for n in range(20)])
    got = await client.events(20, timeout=10)
    assert [m["event"]["data"]["n"] for m in got] == list(range(20))
    assert all(m["event"]["data"]["blob"] == blob for m in got)
    await asyncio.sleep(0.5)  # pings from the client, answered by the server
    client.conn.close(1000, "bye")
    code, _ = await client.closed()
    assert code == 1000


async def until_no_connection(server, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while server.node.connections or server.node._per_ip:
        assert time.monotonic() < deadline, (len(server.node.connections), server.node._per_ip)
        await asyncio.sleep(0.05)


@pytest.mark.gen_test(timeout=30)
async def test_upgrades_that_end_before_the_101_leave_no_connection_behind(server_factory):
    """An HTTP/1.0 upgrade is refused (its connection would close after the 101), and a peer
    that resets right after its request leaves nothing counted: neither can fill the caps."""
    server = await server_factory(websocket__auth__timeout=0.5, websocket__limits__per_ip=3)
    loop = asyncio.get_running_loop()
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setblocking(False)
    await loop.sock_sendall(sock, upgrade_request("1.0"))
    answer = await read_until(sock, lambda d: b"\r\n\r\n" in d)
    assert answer.startswith(b"HTTP/1.0 400") or answer.startswith(b"HTTP/1.1 400"), answer
    sock.close()
    for _ in range(20):  # request, then RST at once
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.sendall(upgrade_request())
        sock.close()
        await asyncio.sleep(0.01)
    await until_no_connection(server, 5)
    client = await server.subscriber(["events"])  # per_ip 3 is not taken by ghosts
    assert (await client.request({"type": "ping", "id": 1}))["type"] == "pong"


async def stalled_subscriber(server, raw_client, make_event):
    """A raw client subscribed to ``events`` that stops reading while 80 events of 10 KB
    wait for it: the server has a large write in flight and frames queued behind it."""
    client = await raw_client(server.port, rcvbuf=16 * 1024)
    await client.subscribe(["events"])
    for n in range(80):
        await server.publish(make_event(n, severity="low", blob="x" * 10_000))
    await asyncio.sleep(0.3)
    return client


async def frames_until_close(client, timeout: float = 10) -> tuple[int, list[dict], bytes]:
    """Read every frame up to the close frame: events seen, and the close payload."""
    events, deadline = [], time.monotonic() + timeout
    while True:
        opcode, payload = await client.frame(max(0.01, deadline - time.monotonic()))
        if opcode == 0x8:
            return len(events), events, payload
        assert opcode == 0x1
        events += [json.loads(line) for line in payload.split(b"\n") if line]


@pytest.mark.gen_test(timeout=30)
async def test_a_close_behind_a_large_write_still_reaches_the_client(
    server_factory, raw_client, make_event
):
    """The echo of a client's close (and our 1002 for a broken frame) follows whole frames:
    the stream is closed once they are written, not at once."""
    server = await server_factory()
    for frame_out, code in ((masked(struct.pack("!H", 1000) + b"bye", 0x8), 1000), (None, 1002)):
        client = await stalled_subscriber(server, raw_client, make_event)
        if frame_out is None:  # unmasked: a protocol breach
            frame_out = bytes((0x81, 2)) + b"{}"
        client.sock.send(frame_out)
        await asyncio.sleep(0.2)
        count, events, payload = await frames_until_close(client)
        assert int.from_bytes(payload[:2], "big") == code
        assert count > 0 and all(m["type"] in ("event", "subscribed") for m in events)
        client.close()
        await until_no_connection(server, 6)
    assert server.node.metrics.write_errors._value.get() == 0


@pytest.mark.gen_test(timeout=20)
async def test_a_close_without_a_code_is_counted_as_1005(server_factory, raw_client):
    server = await server_factory()
    client = await raw_client(server.port)
    assert (await client.message())["type"] == "welcome"
    client.sock.send(masked(b"", 0x8))
    opcode, payload = await client.frame()
    assert (opcode, payload) == (0x8, b"")  # echoed as it came
    await until_no_connection(server, 5)
    closes = server.node.metrics.closes.labels("1005")._value.get()
    assert closes == 1


@pytest.mark.gen_test(timeout=30)
async def test_a_timeout_equal_to_the_interval_closes_no_peer_that_answers(server_factory):
    """The heartbeat checks a round's answers before it pings again, even when both are due
    at the same moment (the defaults are 20 s and 20 s)."""
    server = await server_factory(
        websocket__heartbeat__interval=0.2, websocket__heartbeat__timeout=0.2
    )
    clients = [await server.subscriber(["events"]) for _ in range(20)]  # they answer pings
    await asyncio.sleep(3)  # 15 rounds
    assert len(server.node.connections) == 20
    for client in clients:
        assert (await client.request({"type": "ping", "id": 1}))["type"] == "pong"
