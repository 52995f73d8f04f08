"""A client that stops reading is closed with 4009 and never holds back the others."""

from __future__ import annotations

import asyncio
import time

import pytest

from netsentinel_websocket.client import Event, Gap, Reconnect
from tests.conftest import base_config, close_code, frame_messages

from .faults import Producer, client, collect, numbers, until

PAYLOAD = "x" * 50_000
READERS = 50


async def read_until_last(client) -> list[int]:
    """Offsets received until the event marked ``last``."""
    offsets = []
    while True:
        msg = await client.recv_type("event", timeout=15)
        offsets.append(msg["offset"])
        if msg["event"]["data"].get("last"):
            return offsets


@pytest.mark.gen_test(timeout=60)
async def test_stalled_client_is_closed_with_4009_while_50_others_get_everything(
    server_factory, make_event, raw_client
):
    server = await server_factory(websocket__queue__max_bytes=256 * 1024)
    metrics = server.node.metrics
    stalled = await raw_client(server.port, rcvbuf=64 * 1024)
    await stalled.subscribe(["events"])
    readers = [await server.subscriber(["events"]) for _ in range(READERS)]
    reading = [asyncio.create_task(read_until_last(r)) for r in readers]

    # Loopback buffers a few MB in the kernel before the server's own queue fills up.
    published, started = 0, time.monotonic()
    while metrics.slow_consumer_closes._value.get() == 0:
        assert published < 600, "the stalled client was never closed"
        published += 1
        await server.publish(make_event(published, severity="low", blob=PAYLOAD))
        await asyncio.sleep(0.002)  # the readers are in this process: let them read
    for n in range(published + 1, published + 11):  # delivery goes on after the close
        await server.publish(make_event(n, severity="low", blob=PAYLOAD, last=n == published + 10))
        await asyncio.sleep(0.002)
    total = published + 10
    results = await asyncio.gather(*reading)
    assert all(got == list(range(1, total + 1)) for got in results)
    assert time.monotonic() - started < 30

    # The stalled client finally reads: whole frames in order, then the close frame, last.
    offsets, frames = [], []
    while True:
        opcode, payload = await stalled.frame(timeout=10)
        frames.append(opcode)
        if opcode == 8:
            break
        offsets.extend(m["offset"] for m in frame_messages(payload) if m["type"] == "event")
    assert close_code(payload) == 4009
    assert set(frames[:-1]) == {1}
    assert offsets == list(range(1, len(offsets) + 1)) and len(offsets) < total
    assert metrics.slow_consumer_closes._value.get() == 1


@pytest.mark.gen_test(timeout=20)
async def test_queue_bound_keeps_server_memory_per_client_bounded(
    server_factory, make_event, raw_client
):
    """What the server holds for a stalled client never exceeds about twice the bound."""
    bound = 64 * 1024
    server = await server_factory(websocket__queue__max_bytes=bound)
    stalled = await raw_client(server.port, rcvbuf=16 * 1024)
    await stalled.subscribe(["events"])
    (conn,) = server.node.connections
    peak = 0
    for n in range(400):
        await server.publish(make_event(n, severity="low", blob="y" * 10_000))
        await asyncio.sleep(0)
        held = conn.queued_bytes + len(conn._stream._write_buffer)
        peak = max(peak, held)
        if server.node.metrics.slow_consumer_closes._value.get():
            break
    assert server.node.metrics.slow_consumer_closes._value.get() == 1
    assert peak <= 2 * bound + 20_000


BURST = 50_000


@pytest.mark.parametrize("history", [None, 1000], ids=["default-history", "history-1000"])
def test_a_reader_that_keeps_up_absorbs_a_burst_of_50000(serve_process, history):
    """50,000 events of ~240 bytes (11.9 MB) written to the TCP ingest at once, one reader
    (the bundled client). Its outbound queue may overflow (4009), but the default history
    (bounded by bytes, 16 MiB) still holds what it missed: it resumes without a gap. With a
    history of 1,000 events, whatever history no longer held is a gap the reader saw: never a
    silent loss, and a gap only after a cut."""
    overrides = {} if history is None else {"websocket__history__size": history}
    server = serve_process(base_config(**overrides))

    async def scenario() -> tuple[list[Event | Gap], list[Reconnect], float]:
        reconnects: list[Reconnect] = []
        items: list[Event | Gap] = []
        producer = Producer(server.ingest_port, pad=80)
        burst = b"".join(producer.line(n) + b"\n" for n in range(BURST))
        async with client(server.url, reconnects) as c:
            consumer = asyncio.create_task(collect(c, items))
            started = time.monotonic()
            await asyncio.to_thread(server.send_lines, [burst[:-1]])
            await until(lambda: c.positions["events"].offset == BURST, 60)
            took = time.monotonic() - started
            await asyncio.sleep(0.1)
            consumer.cancel()
        return items, reconnects, took

    items, reconnects, took = asyncio.run(scenario())
    print(f"burst of {BURST}: {took:.1f}s, reconnects {[r.code for r in reconnects]}")
    assert {r.code for r in reconnects} <= {4009}
    gaps = [i for i in items if isinstance(i, Gap)]
    assert len(gaps) <= len(reconnects)
    in_gaps = [n for g in gaps for n in range(g.since.offset, g.resumed.offset)]
    received = numbers(items)  # event n has offset n + 1
    assert sorted(received + in_gaps) == list(range(BURST))
    if history is None:
        assert gaps == []
        assert received == list(range(BURST))
        assert [i.offset for i in items] == list(range(1, BURST + 1))
