"""permessage-deflate (RFC 7692): negotiated when a client offers it, always without server
context takeover, and each group's frame compressed once for all its members."""

from __future__ import annotations

import asyncio
import os
import socket
import zlib
from typing import Any

import orjson
import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from netsentinel_websocket import frames
from tests.conftest import WSClient, make_token, next_frame, raw_handshake


class DeflateClient:
    """A bare-socket client that offers ``extensions`` and inflates frames itself, so the test
    sees the bits on the wire (RSV1, the window used) rather than a library's view of them."""

    def __init__(self, sock: socket.socket, answer: dict[str, str]) -> None:
        self.sock = sock
        self.answer = answer  # the handshake response's headers, lower-case names
        self.buffer = b""
        self.compressed_frames = 0
        self.wire_bytes = 0

    @classmethod
    async def connect(cls, port: int, extensions: str) -> DeflateClient:
        header = f"Sec-WebSocket-Extensions: {extensions}\r\n"
        sock, answer, rest = await raw_handshake(port, extra_headers=header)
        client = cls(sock, answer)
        client.buffer = rest
        return client

    @property
    def window_bits(self) -> int:
        """The server's window under the agreed parameters (15 unless limited)."""
        for part in self.answer.get("sec-websocket-extensions", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == "server_max_window_bits":
                return int(value)
        return 15

    async def messages(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The messages of the next text frame, inflated if it is compressed."""
        loop = asyncio.get_running_loop()
        while (found := self._next()) is None:
            chunk = await asyncio.wait_for(loop.sock_recv(self.sock, 1 << 20), timeout)
            if not chunk:
                raise ConnectionError("EOF")
            self.buffer += chunk
        first, payload = found
        assert first & 0x0F == 1, first
        if first & 0x40:  # RSV1: compressed, standing alone (no context takeover)
            self.compressed_frames += 1
            payload = zlib.decompressobj(-self.window_bits).decompress(payload + b"\0\0\xff\xff")
        return [orjson.loads(line) for line in payload.split(b"\n")]

    def _next(self) -> tuple[int, bytes] | None:
        frame = next_frame(self.buffer)
        if frame is None:
            return None
        _, payload, end = frame
        first = self.buffer[0]
        self.wire_bytes += end
        self.buffer = self.buffer[end:]
        return first, payload

    def send(self, message: dict[str, Any]) -> None:
        payload = orjson.dumps(message)
        assert len(payload) < 126
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.send(bytes((0x81, 0x80 | len(payload))) + mask + masked)

    async def subscribe(self, channels: list[str]) -> None:
        assert (await self.messages())[0]["type"] == "welcome"
        self.send({"type": "subscribe", "id": 1, "channels": channels})
        assert (await self.messages())[0]["type"] == "subscribed"

    async def events(self, n: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while len(out) < n:
            out += [m for m in await self.messages() if m["type"] == "event"]
        return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def deflate_client():
    clients: list[DeflateClient] = []

    async def connect(port: int, extensions: str = "permessage-deflate") -> DeflateClient:
        client = await DeflateClient.connect(port, extensions)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


@pytest.mark.gen_test(timeout=20)
async def test_tornado_client_offering_deflate_gets_it_without_server_context_takeover(
    server_factory, make_event
):
    server = await server_factory()
    request = HTTPRequest(server.url, headers={"Authorization": f"Bearer {make_token()}"})
    conn = await websocket_connect(request, compression_options={})
    agreed = conn.headers.get("Sec-WebSocket-Extensions", "")
    assert agreed.startswith("permessage-deflate") and "server_no_context_takeover" in agreed
    client = WSClient(conn)
    assert (await client.recv())["type"] == "welcome"
    reply = await client.request({"type": "subscribe", "id": 1, "channels": ["events"]})
    assert reply["type"] == "subscribed"
    for n in range(30):
        await server.publish(make_event(n, severity="low", note="x" * 200))
    events = await client.events(30)
    assert [e["offset"] for e in events] == list(range(1, 31))
    assert [e["event"]["data"]["n"] for e in events] == list(range(30))
    client.close()


@pytest.mark.gen_test(timeout=20)
async def test_websockets_library_client_decodes_compressed_events(server_factory, make_event):
    websockets_client = pytest.importorskip("websockets.asyncio.client")
    server = await server_factory()
    async with websockets_client.connect(
        server.url, additional_headers={"Authorization": f"Bearer {make_token()}"}
    ) as ws:
        assert "server_no_context_takeover" in ws.response.headers["Sec-WebSocket-Extensions"]
        assert orjson.loads(await ws.recv())["type"] == "welcome"
        await ws.send(orjson.dumps({"type": "subscribe", "id": 1, "channels": ["events"]}).decode())
        assert orjson.loads(await ws.recv())["type"] == "subscribed"
        for n in range(20):
            await server.publish(make_event(n, severity="low", note="y" * 300))
        events: list[dict[str, Any]] = []
        while len(events) < 20:
            frame = await asyncio.wait_for(ws.recv(), 5)
            events += [orjson.loads(line) for line in frame.split("\n")]
        assert [e["event"]["data"]["n"] for e in events] == list(range(20))


@pytest.mark.gen_test(timeout=20)
async def test_a_group_frame_is_compressed_once_for_all_its_members(
    server_factory, make_event, deflate_client, monkeypatch
):
    server = await server_factory()
    calls: list[int] = []
    real = frames.deflate

    def counting(payload: bytes, window_bits: int) -> bytes:
        calls.append(window_bits)
        return real(payload, window_bits)

    monkeypatch.setattr(frames, "deflate", counting)
    compressing = [await deflate_client(server.port) for _ in range(3)]
    plain = await server.subscriber(["events"])
    for client in compressing:
        await client.subscribe(["events"])
    calls.clear()  # the welcome and subscribe replies are plain anyway
    events = [make_event(n, severity="low", note="z" * 300) for n in range(10)]
    for event in events:  # one loop turn: one flush, one frame per group
        await server.runner.pipeline.feed_raw(event)
    for client in compressing:
        got = await client.events(10)
        assert [e["event"]["data"]["n"] for e in got] == list(range(10))
        assert client.compressed_frames >= 1
    assert [e["offset"] for e in await plain.events(10)] == list(range(1, 11))
    frames_per_member = max(c.compressed_frames for c in compressing)
    assert len(calls) == frames_per_member, (calls, frames_per_member)  # not 3x
    assert set(calls) == {15}


@pytest.mark.gen_test(timeout=20)
async def test_compressed_frames_are_smaller_on_the_wire(
    server_factory, make_event, deflate_client, raw_client
):
    server = await server_factory()
    compressed = await deflate_client(server.port)
    await compressed.subscribe(["events"])
    plain = await raw_client(server.port)
    await plain.subscribe(["events"])
    for n in range(50):
        await server.publish(make_event(n, severity="low", src_ip="198.51.100.7", note="a b c"))
    assert len(await compressed.events(50)) == 50
    plain_bytes = 0
    received = 0
    while received < 50:
        opcode, payload = await plain.frame()
        plain_bytes += len(payload)
        received += payload.count(b'"type":"event"')
    assert compressed.wire_bytes < plain_bytes / 3, (compressed.wire_bytes, plain_bytes)


@pytest.mark.gen_test(timeout=20)
async def test_a_limited_server_window_is_honoured(server_factory, make_event, deflate_client):
    server = await server_factory()
    client = await deflate_client(
        server.port, "permessage-deflate; server_max_window_bits=10; client_max_window_bits"
    )
    agreed = client.answer["sec-websocket-extensions"]
    assert "server_max_window_bits=10" in agreed and "server_no_context_takeover" in agreed
    await client.subscribe(["events"])
    for n in range(20):
        await server.publish(make_event(n, severity="low", note=os.urandom(600).hex()))
    got = await client.events(20)  # inflated with a 10-bit window: a larger one would fail
    assert [e["event"]["data"]["n"] for e in got] == list(range(20))


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; server_max_window_bits=8",  # below zlib's raw minimum
        "permessage-deflate; server_max_window_bits",  # needs a value
        "permessage-deflate; client_max_window_bits=99",
        "permessage-deflate; mystery=1",  # unknown parameter
        "permessage-deflate; server_no_context_takeover=yes",  # takes no value
        "x-webkit-deflate-frame",
    ],
)
async def test_offers_we_cannot_honour_are_declined_not_failed(
    server_factory, make_event, deflate_client, offer
):
    server = await server_factory()
    client = await deflate_client(server.port, offer)
    assert "sec-websocket-extensions" not in client.answer
    await client.subscribe(["events"])
    await server.publish(make_event(1, severity="low"))
    assert (await client.events(1))[0]["offset"] == 1
    assert client.compressed_frames == 0


@pytest.mark.gen_test(timeout=20)
async def test_the_first_acceptable_offer_is_taken(server_factory, make_event, deflate_client):
    server = await server_factory()
    client = await deflate_client(
        server.port,
        "permessage-deflate; server_max_window_bits=8, permessage-deflate; "
        "client_no_context_takeover",
    )
    agreed = client.answer["sec-websocket-extensions"]
    assert "client_no_context_takeover" in agreed and "server_max_window_bits" not in agreed
    await client.subscribe(["events"])
    await server.publish(make_event(1, severity="low", note="q" * 500))
    assert (await client.events(1))[0]["offset"] == 1
    assert client.compressed_frames == 1


@pytest.mark.gen_test(timeout=20)
async def test_compression_off_answers_every_offer_with_plain_frames(
    server_factory, make_event, deflate_client
):
    server = await server_factory(websocket__compression=False)
    client = await deflate_client(server.port)
    assert "sec-websocket-extensions" not in client.answer
    await client.subscribe(["events"])
    await server.publish(make_event(1, severity="low", note="x" * 500))
    assert (await client.events(1))[0]["offset"] == 1
    assert client.compressed_frames == 0
