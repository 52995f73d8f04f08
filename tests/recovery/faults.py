"""What the recovery tests share: a numbered producer on the TCP ingest, a TCP proxy that cuts
or blackholes connections, and checks on what a client received."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson

from netsentinel_websocket.client import Client, Event, Gap, Reconnect

from ..conftest import event, make_token


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


class _Link:
    """One proxied connection: both sockets, and which directions are blackholed."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client, self.upstream = client, upstream
        self.dead_up = self.dead_down = False  # bytes read on a dead side are thrown away


class Proxy:
    """A TCP proxy between client and server that can cut every connection at once, or make
    them go silent (a path that died without a FIN or a reset); new connections work."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.links: list[_Link] = []
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        link = _Link(writer, up_writer)
        self.links.append(link)
        await asyncio.gather(
            _pipe(reader, up_writer, lambda: link.dead_up),
            _pipe(up_reader, writer, lambda: link.dead_down),
            return_exceptions=True,
        )

    def cut(self) -> None:
        """Drop both sides without a close frame, whatever is in flight (an abnormal 1006)."""
        for link in self.links:
            link.client.transport.abort()
            link.upstream.transport.abort()
        self.links.clear()

    def blackhole(self, up: bool = True, down: bool = True) -> None:
        """From now on the open connections carry nothing client -> server (``up``) and/or
        server -> client (``down``); both ends stay open, as behind a dead router."""
        for link in self.links:
            link.dead_up, link.dead_down = up, down
        self.links.clear()  # later connections are healthy

    def close(self) -> None:
        self.cut()
        self.server.close()


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, dead: Callable[[], bool]
) -> None:
    while data := await reader.read(65536):
        if dead():
            continue
        writer.write(data)
        await writer.drain()
    if not dead():
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


def split_at_gap(items: list[Any]) -> tuple[Gap, list[Any], list[Any]]:
    """The one gap the client saw, with what came before and after it."""
    gaps = [i for i in items if isinstance(i, Gap)]
    assert len(gaps) == 1, gaps
    cut = items.index(gaps[0])
    return gaps[0], items[:cut], items[cut + 1 :]


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
        backoff_base=kw.pop("backoff_base", 0.05),
        backoff_cap=0.2,
        on_reconnect=reconnects.append,
        **kw,
    )
