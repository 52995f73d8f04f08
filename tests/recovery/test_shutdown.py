"""Graceful shutdown: ingest is refused first, what was accepted is flushed to every
subscriber, then every client gets 1001."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from netsentinel_websocket.client import Event, Gap, Reconnect
from tests.conftest import base_config, close_code, event, frame_messages, make_token

from .faults import client, collect, numbers, until


async def drain(client) -> tuple[list[int], int | None]:
    """Event offsets until the server closes, and the close code."""
    offsets = []
    while True:
        frame = await client.conn.read_message()
        if frame is None:
            return offsets, client.conn.close_code
        offsets.extend(m["offset"] for m in frame_messages(frame.encode()) if m["type"] == "event")


@pytest.mark.gen_test(timeout=20)
async def test_shutdown_flushes_pending_events_then_closes_with_1001(server_factory, make_event):
    server = await server_factory()
    clients = [await server.subscriber(["events"]) for _ in range(5)]
    reading = [asyncio.create_task(drain(c)) for c in clients]
    for n in range(1, 301):  # still pending in the hub when shutdown starts
        await server.publish(make_event(n, severity="low"))
    started = time.monotonic()
    await server.plugin.netsentinel_shutdown(app=server.runner.app)
    assert time.monotonic() - started < 2
    for offsets, code in await asyncio.gather(*reading):
        assert offsets == list(range(1, 301)) and code == 1001
    assert not server.node.connections


@pytest.mark.gen_test(timeout=20)
async def test_shutdown_drains_a_lagging_clients_queue_before_the_close(
    server_factory, make_event, raw_client
):
    server = await server_factory(
        websocket__queue__max_bytes=16 * 1024 * 1024, websocket__shutdown__grace=1.5
    )
    lagging = await raw_client(server.port, rcvbuf=64 * 1024)
    await lagging.subscribe(["events"])
    (conn,) = server.node.connections
    n = 0
    while not conn.queued_bytes:  # past what the kernel buffers: the server holds a queue
        n += 1
        assert n < 400
        await server.publish(make_event(n, severity="low", blob="z" * 50_000))
        await asyncio.sleep(0)
    stopping = asyncio.create_task(server.plugin.netsentinel_shutdown(app=server.runner.app))
    offsets = []
    while True:
        opcode, payload = await lagging.frame(timeout=5)
        if opcode == 8:
            break
        offsets.extend(m["offset"] for m in frame_messages(payload) if m["type"] == "event")
    assert offsets == list(range(1, n + 1))
    assert close_code(payload) == 1001
    await stopping


def test_sigterm_closes_clients_with_1001_and_exits_0(serve_process, io_loop):
    proc = serve_process(base_config())

    async def scenario():
        clients = []
        for _ in range(3):
            req = HTTPRequest(proc.url, headers={"Authorization": f"Bearer {make_token()}"})
            conn = await websocket_connect(req)
            assert json.loads(await conn.read_message())["type"] == "welcome"
            conn.write_message(json.dumps({"type": "subscribe", "id": 1, "channels": ["events"]}))
            assert json.loads(await conn.read_message())["type"] == "subscribed"
            clients.append(conn)
        line = json.dumps({"event_type": "honeypot.ssh.login", "severity": "low", "source": "t"})
        proc.send_lines([line.encode()])
        for conn in clients:
            assert json.loads(await conn.read_message())["type"] == "event"
        started = time.monotonic()
        proc.proc.terminate()
        for conn in clients:
            assert await asyncio.wait_for(conn.read_message(), 5) is None
            assert conn.close_code == 1001
        return started

    started = io_loop.run_sync(scenario, timeout=20)
    assert proc.proc.wait(10) == 0
    assert time.monotonic() - started < 5


class Poster:
    """One keep-alive HTTP/1.1 connection posting batches of events to ``/ingest`` (``n`` from
    each of ``starts`` to ``n + BATCH - 1`` per request); records which were acknowledged (202)
    and how the server refused the rest."""

    BATCH = 200

    def __init__(self, port: int, starts: range, token: str) -> None:
        self.port, self.starts, self.token = port, starts, token
        self.acked: list[int] = []
        self.refused: list[str] = []  # "503", or how the connection ended

    async def run(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            for start in self.starts:
                batch = range(start, start + self.BATCH)
                body = json.dumps([event(n, severity="low") for n in batch]).encode()
                writer.write(
                    b"POST /ingest HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                    + f"Authorization: Bearer {self.token}\r\n".encode()
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                status, length = await self._response(reader)
                await reader.readexactly(length)
                if status != 202:
                    self.refused.append(str(status))
                    return
                self.acked.extend(batch)
        except (OSError, asyncio.IncompleteReadError) as exc:
            self.refused.append(type(exc).__name__)
        finally:
            writer.close()

    @staticmethod
    async def _response(reader: asyncio.StreamReader) -> tuple[int, int]:
        head = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
        headers = dict(h.lower().split(": ", 1) for h in head[1:] if h)
        return int(head[0].split()[1]), int(headers.get("content-length", 0))


@pytest.mark.parametrize("broker", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
def test_sigterm_mid_burst_loses_no_acknowledged_event(serve_process, request, broker):
    """Every POST /ingest answered 202 reaches the subscriber before its 1001; after SIGTERM
    the ingest answers 503 (or the connection is gone) instead of acknowledging."""
    cfg = base_config(websocket__history__size=20_000)
    if broker == "redis":
        cfg["websocket.broker"] = request.getfixturevalue("redis_server").url
    server = serve_process(cfg)

    async def scenario() -> tuple[list[Poster], list[Event | Gap], list[Reconnect]]:
        reconnects: list[Reconnect] = []
        items: list[Event | Gap] = []
        token = make_token(scope="ingest")
        step = Poster.BATCH
        posters = [Poster(server.port, range(i * step, 10**7, 8 * step), token) for i in range(8)]
        async with client(server.url, reconnects) as c:
            consumer = asyncio.create_task(collect(c, items))
            posting = [asyncio.create_task(p.run()) for p in posters]
            await until(lambda: len(items) >= 2000)
            server.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(asyncio.gather(*posting), 20)
            assert await asyncio.to_thread(server.proc.wait, 20) == 0
            await until(lambda: bool(reconnects))
            consumer.cancel()
        return posters, items, reconnects

    posters, items, reconnects = asyncio.run(scenario())
    assert reconnects[0].code == 1001
    assert not [i for i in items if isinstance(i, Gap)]
    assert [i.offset for i in items] == list(range(1, len(items) + 1))
    received = numbers(items)
    assert len(set(received)) == len(received)
    acked = {n for p in posters for n in p.acked}
    assert acked - set(received) == set()  # every acknowledged event was delivered
    refusals = [r for p in posters for r in p.refused]
    assert len(refusals) == 8 and "503" in refusals
