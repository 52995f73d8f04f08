"""Graceful shutdown: what was queued is flushed, then every client gets 1001."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from tests.conftest import base_config, close_code, frame_messages, make_token


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
