"""Redis outages under two nodes: dropped connections (data kept) and a Redis restart that lost
everything. No node crashes, ``/healthz`` follows the broker, and every subscriber ends with
each event of the stream exactly once, in order."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import orjson
import pytest
import redis

from netsentinel_websocket.client import Event, Gap, Reconnect
from netsentinel_websocket.streamentry import entry_publications
from tests.conftest import base_config, event, make_token, with_query
from tests.integration.test_sse import Curl, subscribed

from .faults import Producer, client, collect, numbers, split_at_gap, until

pytestmark = pytest.mark.redis

PREFIX = "outage:"


def stream(url: str) -> list[tuple[int, int]]:
    """(offset, n) of every event of the ``events`` stream, read straight from Redis."""
    client = redis.Redis.from_url(url)
    try:
        entries = client.xrange(f"{PREFIX}{{events}}:stream")
    finally:
        client.close()
    return [
        (pub.offset, pub.prepared.event["data"]["n"])
        for i, f in entries
        for pub in entry_publications("events", "", i, f)
    ]


async def drain(client: Any, quiet: float = 0.5) -> list[dict[str, Any]]:
    """Every event and gap the client receives until none arrives for ``quiet`` seconds."""
    got = []
    while True:
        try:
            msg = await client.recv(quiet)
        except asyncio.TimeoutError:
            return got
        if msg["type"] in ("event", "gap"):
            got.append(msg)


def gaps(messages: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m["channel"], m["epoch"], m["from"]) for m in messages if m["type"] == "gap"]


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
    sse_b = await Curl.open(node_b, "channels=events", make_token())
    await subscribed(node_b, ["events"], 2)
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
    # What the old stream held past each node's reader is gone: every subscriber is told so,
    # from where it stood (the last outage event) into the new epoch, before its events.
    new_epoch = rest_a[-1]["epoch"]
    for got, last in ((rest_a, local_a[-1]), (rest_b, local_b[-1])):
        stood = {"epoch": last["epoch"], "offset": last["offset"]}
        assert gaps(got) == [("events", new_epoch, stood)]
        assert got[0]["type"] == "gap"
        del got[0]
    on_sse = [await sse_b.message() for _ in range(6 + 2 + 1 + 6)]  # the same over SSE
    sse_b.proc.kill()
    await sse_b.proc.wait()
    assert [m["type"] for m in on_sse] == ["event"] * 8 + ["gap"] + ["event"] * 6
    assert gaps(on_sse) == [("events", new_epoch, {"epoch": local_b[-1]["epoch"], "offset": 2})]

    entries = stream(redis_server.url)
    assert sorted(n for _, n in entries) == list(range(6, 14))  # the buffers reached the stream
    assert [offset for offset, _ in entries] == list(range(1, 9))
    assert new_epoch not in (old_epoch, local_a[0]["epoch"])
    # A node's own outage events come back numbered, but its subscribers had them already
    # (under the outage epoch): each subscriber gets every event exactly once.
    for got, local in ((rest_a, local_a), (rest_b, local_b)):
        own = {m["event"]["data"]["n"] for m in local}
        assert {m["epoch"] for m in got} == {new_epoch}
        assert numbered(got, new_epoch) == [(o, n) for o, n in entries if n not in own]
        everything = first + local + got
        assert sorted(m["event"]["data"]["n"] for m in everything) == list(range(14))
    assert [m["event"]["data"]["n"] for m in on_sse if m["type"] == "event"] == [
        m["event"]["data"]["n"] for m in first + local_b + rest_b
    ]
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
    for got in (got_a, got_b):  # own events of a cut shown at once, not again when numbered
        assert gaps(got) == []
        assert sorted(m["event"]["data"]["n"] for m in got) == list(range(total))
        in_stream = numbered(got, epoch)
        assert in_stream == [entry for entry in entries if entry in set(in_stream)]

    # A client of A resumes on B from the middle of the stream: exactly the rest.
    moved = await node_b.subscriber(["events"], since={"events": {"epoch": epoch, "offset": 40}})
    assert moved.subscribed["recovered"] == {"events": True}
    assert numbered(await moved.events(total - 40), epoch) == entries[40:]


def test_a_lagging_node_reports_what_a_redis_restart_lost_as_a_gap(serve_process, redis_server):
    """Node B is frozen (SIGSTOP) while A puts 300 events in the stream, then Redis restarts
    empty: those 300 are gone before B read (most of) them. B's subscriber must see a ``gap``
    from its last position into the new epoch, and every event the new stream holds once."""
    cfg = base_config(websocket__broker=with_query(redis_server.url, prefix=PREFIX))
    node_a, node_b = serve_process(cfg), serve_process(cfg)
    key = f"{PREFIX}{{events}}:seq"  # the last offset given out

    async def scenario() -> list[Event | Gap]:
        reconnects: list[Reconnect] = []
        items: list[Event | Gap] = []
        producer = Producer(node_a.ingest_port, interval=0.001)
        async with client(node_b.url, reconnects) as c:
            consumer = asyncio.create_task(collect(c, items))
            producer.limit = 100
            await producer.run()
            await until(lambda: len(items) >= 100)
            node_b.proc.send_signal(signal.SIGSTOP)
            producer.limit = 400
            await producer.run()
            admin = redis.Redis.from_url(redis_server.url)
            await until(lambda: admin.get(key) == b"400")
            admin.close()
            redis_server.stop()
            redis_server.start()  # empty: the 300 B never read are lost
            node_b.proc.send_signal(signal.SIGCONT)
            producer.limit = 500
            await producer.run()
            await until(lambda: bool(numbers(items)) and numbers(items)[-1] == 499, timeout=20)
            await asyncio.sleep(0.2)  # anything extra (a duplicate) would arrive now
            consumer.cancel()
        return items

    items = asyncio.run(scenario())
    gap, before, after = split_at_gap(items)
    # B may have had the start of the 300 in its socket already (an XREAD answered as it froze)
    assert numbers(before) == list(range(len(before))) and len(before) >= 100
    assert gap.since == before[-1].position
    assert {e.epoch for e in after} == {gap.resumed.epoch} != {before[-1].epoch}
    assert [e.offset for e in after] == list(range(1, len(after) + 1))
    received = numbers(after)
    assert len(set(received)) == len(received) and received[-1] == 499
    assert set(range(len(before), 500)) - set(received) <= set(range(len(before), 400))


def test_redis_outage_delivers_every_event_once_on_both_nodes(serve_process, redis_server):
    """Redis stops for a second and comes back empty while a producer streams into node A's
    ingest: A's subscriber gets A's outage events at once (outage epoch) and not again when
    they reach the new stream; B's gets them from the stream; both get a ``gap`` into the new
    epoch (the old stream is gone), and every event exactly once."""
    cfg = base_config(websocket__broker=with_query(redis_server.url, prefix=PREFIX))
    node_a, node_b = serve_process(cfg), serve_process(cfg)

    async def scenario() -> tuple[list[Event | Gap], list[Event | Gap], int]:
        reconnects: list[Reconnect] = []
        on_a: list[Event | Gap] = []
        on_b: list[Event | Gap] = []
        producer = Producer(node_a.ingest_port, interval=0.003)
        async with client(node_a.url, reconnects) as a, client(node_b.url, reconnects) as b:
            consumers = [
                asyncio.create_task(collect(a, on_a)),
                asyncio.create_task(collect(b, on_b)),
            ]
            producing = asyncio.create_task(producer.run())
            await until(lambda: len(on_b) >= 100)
            redis_server.stop()
            await until(
                lambda: any(i.epoch.startswith("local-") for i in on_a[-5:] if isinstance(i, Event))
            )
            await asyncio.sleep(1.0)  # A shows what it ingests meanwhile
            redis_server.start()
            await asyncio.sleep(1.0)
            producer.limit = producer.sent
            await producing
            last = producer.limit - 1
            for got in (on_a, on_b):
                await until(lambda got=got: bool(numbers(got)) and numbers(got)[-1] == last, 20)
            await asyncio.sleep(0.3)  # anything extra (a duplicate) would arrive now
            for task in consumers:
                task.cancel()
        assert reconnects == []
        return on_a, on_b, producer.limit

    on_a, on_b, total = asyncio.run(scenario())
    outage = [i for i in on_a if isinstance(i, Event) and i.epoch.startswith("local-")]
    assert len(outage) > 50
    for items in (on_a, on_b):
        _, before, _ = split_at_gap(items)
        received = numbers(items)
        assert len(set(received)) == len(received)  # no duplicates
        lost = set(range(total)) - set(received)  # what the old stream held, unread: in the gap
        before = [i for i in before if isinstance(i, Event) and i not in outage]
        assert lost <= set(range(numbers(before)[-1] + 1, numbers(outage)[0]))
