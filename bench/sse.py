"""SSE readers beside WebSocket subscribers: one burst, both kinds, one server.

``python -m bench.sse [--ws 1000] [--sse 1000] [--events 200] [--size 500] [--rounds 3]``
starts ``netsentinel-websocket serve`` (memory broker), connects the WebSocket subscribers and
the ``GET /ws/sse`` readers to the ``events`` channel from this process, then writes bursts of
events into the TCP ingest and waits until every reader has every event. It prints, per round
and as medians, the time until the last WebSocket subscriber and the last SSE reader had the
whole burst, and deliveries per second for each kind. Both kinds share the hub's work per event
(one frame or one chunk per group); what differs is the framing and the write per reader.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
from pathlib import Path

from bench.feeder import CHANNEL, Feeder
from bench.servers import Server
from bench.wsclient import Subscriber, handshake_request
from netsentinel_websocket.auth import mint

MARK = b"event: event\n"


class SSEReader(asyncio.Protocol):
    """One ``text/event-stream`` response that counts ``event: event`` blocks."""

    def __init__(self, request: bytes, on_done: asyncio.Event) -> None:
        self.request = request
        self.on_done = on_done
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.carry = b""  # the tail of the last read, for a mark cut in two
        self.events = 0
        self.target = 0
        self.done_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if not self.opened.done():
            if not data.startswith(b"HTTP/1.1 200"):
                self.opened.set_exception(ConnectionError(data[:80].decode(errors="replace")))
                return
            self.opened.set_result(None)
        text = self.carry + data
        self.events += text.count(MARK)
        self.carry = text[-(len(MARK) - 1) :]
        if self.target and self.events >= self.target and not self.done_at:
            self.done_at = time.time()
            self.on_done.set()

    def reset(self, target: int) -> None:
        self.events, self.target, self.done_at = 0, target, 0.0


async def connect(server: Server, args: argparse.Namespace, token: str):  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    subs: list[Subscriber] = []
    for _ in range(args.ws):
        request, accept = handshake_request("127.0.0.1", server.port, "/ws", token)
        _, sub = await loop.create_connection(
            lambda r=request, a=accept: Subscriber(r, a, False, lambda s: done.set()),
            "127.0.0.1",
            server.port,
        )
        await sub.opened
        await sub.subscribe([CHANNEL], 10)
        subs.append(sub)
    sse_request = (
        f"GET /ws/sse?channels={CHANNEL} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    ).encode()
    readers: list[SSEReader] = []
    for _ in range(args.sse):
        _, reader = await loop.create_connection(
            lambda: SSEReader(sse_request, done), "127.0.0.1", server.port
        )
        await reader.opened
        readers.append(reader)
    return subs, readers, done


async def burst(feeder: Feeder, subs: list[Subscriber], readers: list[SSEReader], events: int):  # type: ignore[no-untyped-def]
    for item in (*subs, *readers):
        item.reset(events)
    started = feeder.burst(events)
    deadline = time.monotonic() + 120
    while not all(s.done_at for s in subs) or not all(r.done_at for r in readers):
        assert time.monotonic() < deadline, "burst not delivered in 120 s"
        await asyncio.sleep(0.01)
    ws = max((s.done_at for s in subs), default=started) - started
    sse = max((r.done_at for r in readers), default=started) - started
    return ws, sse


async def main(args: argparse.Namespace) -> None:
    secret = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(
            "netsentinel",
            secret,
            Path(tmp),
            settings={
                "server.max_pending": 100_000,  # SSE readers stay HTTP connections
                "server.max_pending_per_ip": 100_000,
                "websocket.queue.max_bytes": 16 * 1024 * 1024,
            },
        )
        server.start()
        try:
            token = mint(secret, "bench", "channel:*", 3600)
            subs, readers, _ = await connect(server, args, token)
            await asyncio.sleep(0.5)
            feeder = Feeder("127.0.0.1", server.ingest_port, args.size)
            ws_times, sse_times = [], []
            for n in range(args.rounds):
                ws, sse = await burst(feeder, subs, readers, args.events)
                ws_times.append(ws)
                sse_times.append(sse)
                print(f"round {n + 1}: websocket {ws * 1000:.0f} ms, sse {sse * 1000:.0f} ms")
            ws, sse = statistics.median(ws_times), statistics.median(sse_times)
            print(
                f"{args.ws} websocket + {args.sse} sse readers, bursts of {args.events} x "
                f"{args.size} B: last websocket subscriber {ws * 1000:.0f} ms "
                f"({rate(args.ws, args.events, ws)} deliveries/s), last sse reader "
                f"{sse * 1000:.0f} ms ({rate(args.sse, args.events, sse)} deliveries/s); "
                f"server RSS {server.rss_kb() / 1024:.0f} MiB"
            )
        finally:
            server.stop()


def rate(readers: int, events: int, seconds: float) -> str:
    return f"{readers * events / seconds:,.0f}" if readers and seconds > 0 else "-"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.sse", description=__doc__.splitlines()[0])
    p.add_argument("--ws", type=int, default=1000, help="WebSocket subscribers (%(default)s)")
    p.add_argument("--sse", type=int, default=1000, help="SSE readers (%(default)s)")
    p.add_argument("--events", type=int, default=200, help="events per burst (%(default)s)")
    p.add_argument("--size", type=int, default=500, help="bytes of JSON per event (%(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="bursts, median reported (%(default)s)")
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
