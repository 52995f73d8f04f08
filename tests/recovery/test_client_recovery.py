"""The client against a real ``serve`` subprocess while a producer streams numbered events
through the TCP ingest: server restarts, connections cut mid-stream by a proxy, and 4009
slow-consumer closes all end with every event exactly once or an explicit gap."""

from __future__ import annotations

import asyncio
import signal

import pytest

from netsentinel_websocket.client import Event, Gap, Reconnect

from ..conftest import base_config
from .faults import (
    Producer,
    Proxy,
    assert_contiguous,
    client,
    collect,
    numbers,
    split_at_gap,
    until,
)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "terminated"])
def test_server_restart_gives_every_event_once_or_a_gap(serve_process, sig):
    server = serve_process(base_config())

    async def scenario() -> list[Event | Gap]:
        reconnects: list[Reconnect] = []
        items: list[Event | Gap] = []
        producer = Producer(server.ingest_port)
        async with client(server.url, reconnects) as c:
            consumer = asyncio.create_task(collect(c, items))
            producing = asyncio.create_task(producer.run())
            await until(lambda: len(items) >= 40)
            server.proc.send_signal(sig)
            await asyncio.to_thread(server.proc.wait)
            await asyncio.to_thread(server.start)  # same config, same ports
            await until(lambda: any(isinstance(i, Gap) for i in items))
            producer.limit = producer.sent + 40
            await producing
            await until(lambda: numbers(items)[-1] == producer.sent - 1)
            consumer.cancel()
        expected = 1001 if sig == signal.SIGTERM else None
        assert reconnects[0].code == expected
        return items

    items = asyncio.run(scenario())
    gap, before, after = split_at_gap(items)
    assert_contiguous(before)
    assert_contiguous(after)
    assert before[0].offset == 1 and numbers(before)[0] == 0
    assert gap.since == before[-1].position  # nothing delivered is reported lost
    assert gap.resumed.epoch == after[0].epoch != before[-1].epoch
    assert after[0].offset == gap.resumed.offset + 1  # what the new server had is in the gap
    first_of_new_epoch = numbers(after)[0] - gap.resumed.offset
    assert first_of_new_epoch > numbers(before)[-1]  # so no event came twice


def test_cut_connection_resumes_without_loss_or_duplicate(serve_process):
    server = serve_process(base_config())
    total = 300

    async def scenario() -> tuple[list[Event | Gap], list[Reconnect]]:
        proxy = Proxy(server.port)
        await proxy.start()
        reconnects: list[Reconnect] = []
        items: list[Event | Gap] = []
        producer = Producer(server.ingest_port, pad=2000, interval=0.002)
        producer.limit = total
        url = f"ws://127.0.0.1:{proxy.port}/ws"
        async with client(url, reconnects) as c:
            consumer = asyncio.create_task(collect(c, items))
            producing = asyncio.create_task(producer.run())
            for mark in (50, 150):
                await until(lambda mark=mark: len(items) >= mark)
                proxy.cut()
                await until(lambda mark=mark: len(reconnects) == (1 if mark == 50 else 2))
            await producing
            await until(lambda: len(items) >= total)
            await asyncio.sleep(0.05)  # anything extra (a duplicate) would arrive now
            consumer.cancel()
        proxy.close()
        return items, reconnects

    items, reconnects = asyncio.run(scenario())
    assert [r.code for r in reconnects] == [None, None]
    assert not [i for i in items if isinstance(i, Gap)]
    assert [i.offset for i in items] == list(range(1, total + 1))
    assert numbers(items) == list(range(total))


def test_slow_consumer_4009_resumes_without_loss(serve_process):
    cfg = base_config(
        websocket__queue__max_bytes=65536,
        websocket__history__size=5000,
        websocket__history__max_bytes=64 * 1024 * 1024,  # the whole 18 MB, for the resume
    )
    server = serve_process(cfg)

    async def scenario() -> tuple[list[Event | Gap], list[Reconnect], int]:
        reconnects: list[Reconnect] = []
        items: list[Event | Gap] = []
        # Paced, so that the server sends ~60 KB frames (a burst would be coalesced into one
        # frame, which is never "queued"); 18 MB: more than the kernel buffers hold.
        producer = Producer(server.ingest_port, pad=60_000, interval=0.002)
        producer.limit = 300
        async with client(server.url, reconnects) as c:
            producing = asyncio.create_task(producer.run())
            async for item in c:
                items.append(item)
                if len(items) == 1:
                    # Stop reading while the server publishes it all: its queue overflows.
                    # (Under Tornado's 5 s close timeout, so the 4009 frame gets through.)
                    await producing
                    await asyncio.sleep(0.3)
                if numbers(items)[-1] == producer.limit - 1:
                    break
        return items, reconnects, producer.sent

    items, reconnects, total = asyncio.run(scenario())
    assert [r.code for r in reconnects] == [4009]
    assert not [i for i in items if isinstance(i, Gap)]
    assert [i.offset for i in items] == list(range(1, total + 1))
    assert numbers(items) == list(range(total))
