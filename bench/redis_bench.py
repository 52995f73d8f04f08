"""Cross-node delivery through the Redis broker: two ``serve`` processes sharing one Redis.

Events go into node A's TCP ingest; a subscriber on node B counts them. Two measurements:
a burst (events/s from A's ingest to B's subscriber, through the stream) and a paced feed
(``--rate`` events/s for ``--seconds``, written in ticks of 1 ms: the rate B held, and the
latency from the feeder's send on A to the arrival on B, p50/p99; the same for a subscriber on
A, whose events also make the round trip through Redis, unless ``--b-only``). For both, the
CPU time each node spent per event (``cpu_us_per_event``), which other jobs on the machine
disturb less than the rates.

Then the broker alone, node to node (``broker_only``): a process publishing straight into a
``RedisBroker`` (A) and this process's ``RedisBroker`` (B) counting what it delivers: a burst
(events/s) and a feed paced at ``--broker-rate`` (every event there, and the latency from A's
publish to B's delivery, p50/p99). This is the broker's capacity without the ingest parsing,
the hub and the WebSocket clients, which share the same two cores in the first measurement.

    python -m bench.redis_bench [--redis redis://127.0.0.1:6379/15] [--events 20000]
                                [--rate 1000] [--seconds 5] [--b-only]
                                [--broker-events 200000] [--broker-rate 50000]

Each run uses a fresh key prefix and deletes its keys afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import redis
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from bench.ingest import standard_event
from netsentinel_websocket.auth import mint
from netsentinel_websocket.broker_redis import RedisBroker
from netsentinel_websocket.metrics import Metrics
from netsentinel_websocket.positions import PreparedEvent, Publication

SECRET = "bench-secret-0123456789-abcdefghij"
GC_THRESHOLD = 50_000  # server.gc_threshold's default, which serve sets


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(proc: subprocess.Popen[str]) -> float:
    """User and system CPU time of a node so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def start_node(config: dict[str, Any], tmp: Path) -> tuple[subprocess.Popen[str], int, int]:
    """A ``serve`` process; (process, web port, ingest port) once it printed READY."""
    path = tmp / f"node-{uuid.uuid4().hex[:8]}.json"
    path.write_text(json.dumps(config))
    cmd = [sys.executable, "-m", "netsentinel_websocket", "serve", "--config", str(path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("READY "):
            _, port, ingest = line.split()
            return proc, int(port), int(ingest)
    raise RuntimeError("serve exited before READY")


async def subscriber(port: int) -> WebSocketClientConnection:
    token = mint(SECRET, "bench", "channel:*", 3600)
    request = HTTPRequest(f"ws://127.0.0.1:{port}/ws", headers={"Authorization": f"Bearer {token}"})
    conn = await websocket_connect(request, max_message_size=64 * 1024 * 1024)
    await conn.read_message()  # welcome
    conn.write_message(json.dumps({"type": "subscribe", "id": 1, "channels": ["events"]}))
    while "subscribed" not in (await conn.read_message() or ""):
        pass
    return conn


async def collect(conn: WebSocketClientConnection, count: int, arrivals: list[tuple[float, float]]):
    """Read until the last of ``count`` events (``data.n == count - 1``) arrived; records (sent,
    arrived) per event. Events the subscriber never gets (a ``gap``: its node fell further behind
    than the stream keeps) are missing from ``arrivals``, counted as lost."""
    while True:
        frame = await conn.read_message()
        if frame is None:
            raise ConnectionError("subscriber closed")
        now = time.time()
        last = False
        for part in frame.split("\n"):
            msg = orjson.loads(part)
            if msg.get("type") == "event":
                data = msg["event"]["data"]
                arrivals.append((data["sent"], now))
                last = last or data["n"] == count - 1
        if last:
            return


def line(n: int) -> bytes:
    return orjson.dumps(standard_event(n)) + b"\n"


def new_broker(url: str) -> RedisBroker:
    """A broker in a process collecting garbage as a node does (``server.gc_threshold``)."""
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
    return RedisBroker(url, 1000, metrics=Metrics(), buffer_size=10_000, channels=["events"])


async def broker_publish(url: str, count: int, rate: float | None) -> None:
    """Node A without ingest: ``count`` events straight into the broker, as a pipeline would
    hand them over (normalized dict and its JSON), in ticks of 1 ms when paced; waits for the
    stream every 1,000 events so its outbox stays bounded."""
    broker = new_broker(url)
    await broker.start(lambda pub: None)
    start = time.monotonic()
    for n in range(count):
        if rate and n % max(1, int(rate / 1000)) == 0:
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        event = standard_event(n)
        broker.publish("events", PreparedEvent(event, time.time(), orjson.dumps(event)))
        if n % 1000 == 999:
            await broker.flushed()
    await broker.flushed()
    await broker.stop()


def broker_publisher(url: str, count: int, rate: float | None) -> None:
    asyncio.run(broker_publish(url, count, rate))


async def broker_receive(url: str, count: int, rate: float | None) -> tuple[float, list[float]]:
    """Node B: (events/s from A's first publish to B's last delivery, per-event latency in ms
    from A's publish to B's delivery) for ``count`` events published by another process."""
    latencies: list[float] = []
    span: list[float] = []  # first publish, last delivery
    done = asyncio.Event()

    def deliver(pub: Publication) -> None:
        now = time.time()
        latencies.append(1000 * (now - pub.prepared.received))
        if len(latencies) == 1:
            span.append(pub.prepared.received)
        if len(latencies) == count:
            span.append(now)
            done.set()

    broker = new_broker(url)
    await broker.start(deliver)
    publisher = multiprocessing.get_context("spawn").Process(
        target=broker_publisher, args=(url, count, rate)
    )
    publisher.start()
    try:
        await asyncio.wait_for(done.wait(), 120)
    finally:
        publisher.join(30)
        await broker.stop()
    return count / (span[1] - span[0]), latencies


async def feed(ingest_port: int, count: int, rate: float | None) -> float:
    """``count`` events into the ingest, as fast as possible (100 lines a write) or at ``rate``
    per second (``rate / 1000`` lines a write, one write a millisecond: a sleep per event
    cannot keep tens of thousands a second); returns when the first was written."""
    _, writer = await asyncio.open_connection("127.0.0.1", ingest_port)
    per_write = max(1, round(rate / 1000)) if rate else 100
    start = time.monotonic()
    first = time.time()
    for n in range(0, count, per_write):
        if rate:
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        writer.write(b"".join(line(i) for i in range(n, min(n + per_write, count))))
        await writer.drain()
    writer.close()
    return first


def per_event(
    nodes: dict[str, subprocess.Popen[str]], since: dict[str, float], events: int
) -> dict[str, float]:
    """Each node's CPU time since ``since``, in microseconds per event."""
    return {
        name: round(1e6 * (cpu_seconds(proc) - since[name]) / events, 2)
        for name, proc in nodes.items()
    }


def percentile(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1]
        if len(values) > 1
        else values[0]
    )


def forget(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


async def measure_broker(args: argparse.Namespace, url: str, prefix: str) -> dict[str, Any] | None:
    """The broker alone, node to node (None with ``--broker-events 0``)."""
    if not args.broker_events:
        return None
    try:
        only_rate, _ = await broker_receive(url, args.broker_events, None)
        paced_rate, only_ms = await broker_receive(url, args.broker_rate * 3, args.broker_rate)
    finally:
        forget(args.redis, prefix)
    return {
        "burst_events": args.broker_events,
        "burst_events_per_s": round(only_rate),
        "paced_rate": args.broker_rate,
        "paced_events": len(only_ms),
        "paced_events_per_s": round(paced_rate),
        "latency_ms": {
            "p50": round(percentile(only_ms, 50), 2),
            "p99": round(percentile(only_ms, 99), 2),
        },
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    sep = "&" if "?" in args.redis else "?"
    config = {
        "websocket.enabled": True,
        "websocket.auth.jwt.secret": SECRET,
        "websocket.broker": f"{args.redis}{sep}prefix={prefix}",
        "websocket.ingest.tcp": "127.0.0.1:0",
        "websocket.queue.max_bytes": 256 * 1024 * 1024,
        "server.port": 0,
    }
    with tempfile.TemporaryDirectory() as tmp:
        node_a, port_a, ingest_a = start_node(config, Path(tmp))
        node_b, port_b, _ = start_node(config, Path(tmp))
        try:
            nodes = {"a": node_a, "b": node_b}
            on_b = await subscriber(port_b)
            burst: list[tuple[float, float]] = []
            reading = asyncio.create_task(collect(on_b, args.events, burst))
            cpu = {name: cpu_seconds(proc) for name, proc in nodes.items()}
            started = time.time()
            await feed(ingest_a, args.events, None)
            await asyncio.wait_for(reading, 120)
            burst_rate = len(burst) / (burst[-1][1] - started)
            burst_cpu = per_event(nodes, cpu, args.events)
            on_b.close()

            on_b = await subscriber(port_b)
            paced = args.rate * args.seconds
            seen_a: list[tuple[float, float]] = []
            seen_b: list[tuple[float, float]] = []
            readers = [collect(on_b, paced, seen_b)]
            if not args.b_only:
                readers.append(collect(await subscriber(port_a), paced, seen_a))
            reading = asyncio.gather(*readers)
            cpu = {name: cpu_seconds(proc) for name, proc in nodes.items()}
            first = await feed(ingest_a, paced, args.rate)
            await asyncio.wait_for(reading, 60)
            held = len(seen_b) / (seen_b[-1][1] - first)
            paced_cpu = per_event(nodes, cpu, paced)
        finally:
            for proc in (node_a, node_b):
                proc.terminate()
                proc.wait(15)
            forget(args.redis, prefix)
    broker_only = await measure_broker(args, f"{args.redis}{sep}prefix={prefix}only:", prefix)
    ms = {
        name: [1000 * (arrived - sent) for sent, arrived in seen]
        for name, seen in (("a", seen_a), ("b", seen_b))
        if seen
    }
    return {
        "burst_events": args.events,
        "burst_events_per_s": round(burst_rate),
        "burst_cpu_us_per_event": burst_cpu,
        "burst_lost_b": args.events - len(burst),
        "paced_rate": args.rate,
        "paced_events": paced,
        "paced_events_per_s_b": round(held),
        "paced_cpu_us_per_event": paced_cpu,
        "paced_lost_b": paced - len(seen_b),
        **{
            f"latency_ms_{name}": {
                "p50": round(percentile(values, 50), 2),
                "p99": round(percentile(values, 99), 2),
            }
            for name, values in ms.items()
        },
        "broker_only": broker_only,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--events", type=int, default=20000, help="burst size")
    parser.add_argument("--rate", type=int, default=1000, help="paced feed, events/s")
    parser.add_argument("--seconds", type=int, default=5, help="paced feed duration")
    parser.add_argument(
        "--b-only",
        action="store_true",
        help="paced feed without a subscriber on A (A only ingests and publishes, as in the burst)",
    )
    parser.add_argument(
        "--broker-events", type=int, default=200_000, help="broker-only burst (0: skip)"
    )
    parser.add_argument(
        "--broker-rate", type=int, default=50_000, help="broker-only paced feed (3 s), events/s"
    )
    result = asyncio.run(run(parser.parse_args()))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
