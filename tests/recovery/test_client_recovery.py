"""The client against a real ``serve`` subprocess while a producer streams numbered events
through the TCP ingest: server restarts, connections cut mid-stream by a proxy, and 4009
slow-consumer closes all end with every event exactly once or an explicit gap."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from netsentinel_websocket.client import Client, Event, Gap, Reconnect

from ..conftest import base_config, event, make_token


class Producer:
    """Writes event ``n`` (``data.n``) to the ingest, in order, until ``limit`` lines are sent;
    reconnects while the server is away (lines written into a dying server may be lost)."""

    def __init__(self, port: int, pad: int = 0, interval: float = 0.003) -> None:
        self.port = port
        self.pad = "x" * pad
        self.interval = interval
        self.sent = 0
        self.limit = 10**9

    def line(self, n: int) -> bytes:
        return orjson.dumps(event(n, severity="low", **({"pad": self.pad} if self.pad else {})))

    async def run(self) -> None:
        writer: asyncio.StreamWriter | None = None
        while self.sent < self.limit:
            try:
                if writer is None:
                    _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.write(self.line(self.sent) + b"\n")
                await writer.drain()
            except OSError:
                writer = None
                await asyncio.sleep(0.02)
                continue
            self.sent += 1
            if self.interval:
                await asyncio.sleep(self.interval)
        if writer is not None:
            writer.close()


class Proxy:
    """A TCP proxy between client and server that can cut every connection at once."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.links: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.links.append((writer, up_writer))
        await asyncio.gather(
            _pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True
        )

    def cut(self) -> None:
        """Drop both sides without a close frame, whatever is in flight (an abnormal 1006)."""
        for a, b in self.links:
            a.transport.abort()
            b.transport.abort()
        self.links.clear()

    def close(self) -> None:
        self.cut()
        self.server.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def collect(client: Client, items: list[Event | Gap]) -> None:
    async for item in client:
        items.append(item)


def numbers(items: list[Any]) -> list[int]:
    return [i.data["n"] for i in items if isinstance(i, Event)]


def assert_contiguous(events: list[Event]) -> None:
    """Offsets +1 each within the epoch, and the producer's numbers likewise."""
    assert [e.offset for e in events] == list(range(events[0].offset, events[-1].offset + 1))
    assert numbers(events) == list(range(numbers(events)[0], numbers(events)[-1] + 1))
    assert len({e.epoch for e in events}) == 1


def client(url: str, reconnects: list[Reconnect], **kw: Any) -> Client:
    return Client(
        url,
        token=make_token(),
        channels=["events"],
        backoff_base=0.05,
        backoff_cap=0.2,
        on_reconnect=reconnects.append,
        **kw,
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
    gaps = [i for i in items if isinstance(i, Gap)]
    assert len(gaps) == 1
    cut = items.index(gaps[0])
    before, after = items[:cut], items[cut + 1 :]
    assert_contiguous(before)
    assert_contiguous(after)
    gap = gaps[0]
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
    cfg = base_config(websocket__queue__max_bytes=65536, websocket__history__size=5000)
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
