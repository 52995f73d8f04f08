"""Redis outages under two nodes: dropped connections (data kept) and a Redis restart that lost
everything. No node crashes, ``/healthz`` follows the broker, and every subscriber ends with
each event of the stream exactly once, in order."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
import redis

from tests.conftest import event, with_query

pytestmark = pytest.mark.redis

PREFIX = "outage:"


def stream(url: str) -> list[tuple[int, int]]:
    """(offset, n) of every entry of the ``events`` stream, read straight from Redis."""
    client = redis.Redis.from_url(url)
    try:
        entries = client.xrange(f"{PREFIX}{{events}}:stream")
    finally:
        client.close()
    return [(int(i.partition(b"-")[0]), orjson.loads(f[b"j"])["data"]["n"]) for i, f in entries]


async def drain(client: Any, quiet: float = 0.5) -> list[dict[str, Any]]:
    """Every event the client receives until none arrives for ``quiet`` seconds."""
    got = []
    while True:
        try:
            got.append(await client.recv_type("event", quiet))
        except asyncio.TimeoutError:
            return got


async def health(node: Any, code: int, timeout: float = 10) -> dict[str, Any]:
    """Poll ``/healthz`` until it answers ``code``; its body."""
    deadline = time.monotonic() + timeout
    while True:
        reply = await node.get("/healthz")
        if reply.code == code:
            return orjson.loads(reply.body)
        assert time.monotonic() < deadline, f"/healthz stayed {reply.code}"
        await asyncio.sleep(0.05)


def numbered(events: list[dict[str, Any]], epoch: str) -> list[tuple[int, int]]:
    return [(m["offset"], m["event"]["data"]["n"]) for m in events if m["epoch"] == epoch]


@pytest.mark.gen_test(timeout=30)
async def test_redis_restart_mid_stream(server_factory, redis_server):
    url = with_query(redis_server.url, prefix=PREFIX)
    node_a = await server_factory(websocket__broker=url)
    node_b = await server_factory(websocket__broker=url, websocket__history__size=2)
    on_a, on_b = await node_a.subscriber(["events"]), await node_b.subscriber(["events"])
    for n in range(6):
        await (node_a if n % 2 else node_b).publish(event(n))
    first = await on_a.events(6)
    assert first == await on_b.events(6)
    old_epoch = first[0]["epoch"]
    assert [offset for offset, _ in numbered(first, old_epoch)] == [1, 2, 3, 4, 5, 6]
    assert sorted(n for _, n in numbered(first, old_epoch)) == list(range(6))

    redis_server.stop()
    for node in (node_a, node_b):
        assert (await health(node, 503))["broker"]["state"] == "unavailable"
    # B keeps only 2 events in memory; older ones need Redis: a gap, not an error.
    late = await node_b.subscriber(["events"], since={"events": {"epoch": old_epoch, "offset": 1}})
    assert late.subscribed["recovered"] == {"events": False}
    late.close()
    for n in range(6, 9):
        await node_a.publish(event(n))
    for n in range(9, 11):
        await node_b.publish(event(n))
    local_a, local_b = await on_a.events(3), await on_b.events(2)  # own events go on at once
    assert [m["event"]["data"]["n"] for m in local_a] == [6, 7, 8]
    assert [m["event"]["data"]["n"] for m in local_b] == [9, 10]
    assert [m["offset"] for m in local_a] == [1, 2, 3] and local_a[0]["epoch"] != old_epoch

    redis_server.start()  # empty: the stream and its epoch are gone
    for node in (node_a, node_b):
        assert (await health(node, 200))["broker"]["state"] == "ready"
    for n in range(11, 14):
        await node_a.publish(event(n))
    rest_a, rest_b = await drain(on_a), await drain(on_b)

    entries = stream(redis_server.url)
    assert sorted(n for _, n in entries) == list(range(6, 14))  # the buffers reached the stream
    assert [offset for offset, _ in entries] == list(range(1, 9))
    new_epoch = rest_a[0]["epoch"]
    assert new_epoch not in (old_epoch, local_a[0]["epoch"])
    for got in (rest_a, rest_b):
        assert {m["epoch"] for m in got} == {new_epoch}
        assert numbered(got, new_epoch) == entries  # exactly once, in stream order
    metrics = (await node_a.get("/metrics")).body.decode()
    assert 'netsentinel_ws_broker_errors_total{op="read"}' in metrics
    metrics = (await node_b.get("/metrics")).body.decode()
    assert 'netsentinel_ws_broker_errors_total{op="recover"} 1.0' in metrics


@pytest.mark.gen_test(timeout=30)
async def test_dropped_connections_keep_the_epoch(server_factory, redis_server):
    url = with_query(redis_server.url, prefix=PREFIX)
    node_a = await server_factory(websocket__broker=url)
    node_b = await server_factory(websocket__broker=url)
    on_a, on_b = await node_a.subscriber(["events"]), await node_b.subscriber(["events"])
    admin = redis.Redis.from_url(redis_server.url)
    total = 120
    for n in range(total):
        await (node_a if n % 3 else node_b).publish(event(n))
        if n % 30 == 29:  # every node's connections cut mid-stream; Redis keeps its data
            admin.client_kill_filter(_type="normal", skipme=True)
            await asyncio.sleep(0.05)
    admin.close()
    await health(node_a, 200)
    await health(node_b, 200)
    got_a, got_b = await drain(on_a), await drain(on_b)

    entries = stream(redis_server.url)
    assert sorted(n for _, n in entries) == list(range(total))  # no loss, no duplicate
    assert [offset for offset, _ in entries] == list(range(1, total + 1))
    epoch = next(m["epoch"] for m in got_a if not m["epoch"].startswith("local-"))
    assert numbered(got_a, epoch) == entries
    assert numbered(got_b, epoch) == entries

    # A client of A resumes on B from the middle of the stream: exactly the rest.
    moved = await node_b.subscriber(["events"], since={"events": {"epoch": epoch, "offset": 40}})
    assert moved.subscribed["recovered"] == {"events": True}
    assert numbered(await moved.events(total - 40), epoch) == entries[40:]
