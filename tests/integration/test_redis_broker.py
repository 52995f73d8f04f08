"""The Redis broker against a real Redis: one feed across nodes, shared positions, resume
across nodes, trimmed history, a lost stream, and what a node does while Redis is away."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
import redis
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

from netsentinel_websocket import broker_redis
from netsentinel_websocket.broker_redis import RedisBroker, redact_url, split_url
from netsentinel_websocket.config import ConfigError
from netsentinel_websocket.metrics import Metrics
from netsentinel_websocket.positions import Position, PreparedEvent, Publication
from netsentinel_websocket.streamentry import entry_publications, join_events, join_times
from tests.conftest import ReservedPort, WSClient, base_config, event, make_token

pytestmark = pytest.mark.redis


async def subscribe(url: str, channels: list[str], **subscribe: Any) -> WSClient:
    """A client of the node at ``url`` that got its welcome and its ``subscribed`` reply."""
    request = HTTPRequest(url, headers={"Authorization": f"Bearer {make_token()}"})
    client = WSClient(await websocket_connect(request))
    assert (await client.recv())["type"] == "welcome"
    reply = await client.request({"type": "subscribe", "id": 1, "channels": channels, **subscribe})
    assert reply["type"] == "subscribed", reply
    client.subscribed = reply  # type: ignore[attr-defined]
    return client


def seen(messages: list[dict[str, Any]]) -> list[tuple[str, int, int]]:
    return [(m["epoch"], m["offset"], m["event"]["data"]["n"]) for m in messages]


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


@pytest.mark.gen_test(timeout=30)
async def test_two_serve_processes_share_one_feed(redis_prefixed_url, serve_process):
    config = base_config(websocket__broker=redis_prefixed_url)
    node_a, node_b = serve_process(config), serve_process(config)
    on_a = await subscribe(node_a.url, ["events"])
    on_b = await subscribe(node_b.url, ["events"])
    node_a.send_lines([orjson.dumps(event(n)) for n in range(0, 5)])
    node_b.send_lines([orjson.dumps(event(n)) for n in range(5, 10)])
    got_a, got_b = seen(await on_a.events(10)), seen(await on_b.events(10))
    assert got_a == got_b  # the same events, epochs and offsets on both nodes
    assert [offset for _, offset, _ in got_a] == list(range(1, 11))
    assert sorted(n for _, _, n in got_a) == list(range(10))
    epoch, last = got_a[-1][0], got_a[-1][1]

    # The client on A drops; events go on; it resumes on B with exactly what it missed.
    on_a.close()
    node_b.send_lines([orjson.dumps(event(n)) for n in range(10, 13)])
    node_a.send_lines([orjson.dumps(event(n)) for n in range(13, 15)])
    await on_b.events(5)
    since = {"events": {"epoch": epoch, "offset": last}}
    moved = await subscribe(node_b.url, ["events"], since=since)
    assert moved.subscribed["recovered"] == {"events": True}
    missed = seen(await moved.events(5))
    assert [offset for _, offset, _ in missed] == list(range(last + 1, last + 6))
    assert sorted(n for _, _, n in missed) == list(range(10, 15))
    node_a.send_lines([orjson.dumps(event(15))])
    assert seen(await moved.events(1)) == [(epoch, last + 6, 15)]  # then live, no duplicate


@pytest.mark.gen_test(timeout=30)
async def test_resume_from_stream_beyond_local_ring_and_gap_when_trimmed(
    redis_prefixed_url, server_factory, monkeypatch
):
    monkeypatch.setattr(broker_redis, "MIN_STREAM_LENGTH", 100)  # a short stream: quick to trim
    node_a = await server_factory(
        websocket__broker=redis_prefixed_url, websocket__history__size=1000
    )
    node_b = await server_factory(websocket__broker=redis_prefixed_url, websocket__history__size=10)
    total = 1000 + 300  # past A's bound (its history.size) by more than one stream node
    for n in range(total):
        await node_a.publish(event(n))
    await wait_for(lambda: node_b.node.broker.position("events").offset == total)
    epoch = node_b.node.broker.position("events").epoch

    # Older than B's 10 in memory: B reads the stream.
    client = await node_b.subscriber(
        ["events"], since={"events": {"epoch": epoch, "offset": total - 50}}
    )
    assert client.subscribed["recovered"] == {"events": True}
    missed = await client.events(50)
    assert [m["offset"] for m in missed] == list(range(total - 49, total + 1))
    assert [m["event"]["data"]["n"] for m in missed] == list(range(total - 50, total))

    # Trimmed away: a gap, then live.
    client = await node_b.subscriber(["events"], since={"events": {"epoch": epoch, "offset": 1}})
    assert client.subscribed["recovered"] == {"events": False}
    gap = await client.recv_type("gap")
    assert gap["from"] == {"epoch": epoch, "offset": 1}
    await node_a.publish(event(total))
    assert [m["offset"] for m in await client.events(1)] == [total + 1]


@pytest.mark.gen_test(timeout=30)
async def test_a_burst_is_stored_as_a_few_entries_and_delivered_per_event(
    redis_prefixed_url, redis_test_url, server_factory
):
    node_a = await server_factory(websocket__broker=redis_prefixed_url)
    node_b = await server_factory(websocket__broker=redis_prefixed_url, websocket__history__size=10)
    on_b = await node_b.subscriber(["events"])
    for n in range(300):  # in one go: A's writer finds them all in its outbox
        node_a.node.publish(event(n))
    got = await on_b.events(300)
    assert [m["offset"] for m in got] == list(range(1, 301))
    assert [m["event"]["data"]["n"] for m in got] == list(range(300))
    direct = redis.Redis.from_url(redis_test_url)
    entries = direct.xlen(f"{split_url(redis_prefixed_url)[1]}{{events}}:stream")
    direct.close()
    assert entries <= 2  # one per write batch (500 publications, on two channels), not 300

    # B's memory holds the last 10: a position inside an entry is served from the stream.
    since = {"events": {"epoch": got[0]["epoch"], "offset": 150}}
    client = await node_b.subscriber(["events"], since=since)
    assert client.subscribed["recovered"] == {"events": True}
    assert [m["offset"] for m in await client.events(150)] == list(range(151, 301))


def stored_run(script: Any, keys: list[str], seqs: list[int], maxlen: int, tag: str = "") -> Any:
    """PUBLISH_SCRIPT as the writer calls it, for a run of events numbered by ``seqs``."""
    jsons = [orjson.dumps({"s": s, "pad": "x" * 300}) for s in seqs]
    times = [float(s) for s in seqs]
    args = [
        *("epoch-1", maxlen, " ".join(map(str, seqs)), seqs[0], seqs[-1]),
        *(join_events(jsons), join_times(times), 60, tag),
    ]
    return script(keys=keys, args=args)


def stored(client: redis.Redis, key: str) -> list[Publication]:
    return [p for i, f in client.xrange(key) for p in entry_publications("c", "e", i, f)]


def test_a_retried_run_adds_only_what_the_stream_lacks(redis_prefixed_url, redis_test_url):
    base = f"{split_url(redis_prefixed_url)[1]}{{c}}:"
    keys = [base + "epoch", base + "seq", base + "stream", base + "src:file:x"]
    client = redis.Redis.from_url(redis_test_url)
    script = client.register_script(broker_redis.PUBLISH_SCRIPT)
    assert stored_run(script, keys, [10, 20, 30], 100) == [b"epoch-1", 3]
    # The same run again, longer (its reply was lost with the connection): only 40 and 50.
    assert stored_run(script, keys, [10, 20, 30, 40, 50], 100, tag="t:1") == [b"epoch-1", 5]
    assert stored_run(script, keys, [40, 50], 100) == [b"epoch-1", 0]  # all there: nothing
    pubs = stored(client, keys[2])
    assert [(p.offset, p.prepared.event["s"], p.prepared.received) for p in pubs] == [
        (1, 10, 10.0),
        (2, 20, 20.0),
        (3, 30, 30.0),
        (4, 40, 40.0),
        (5, 50, 50.0),
    ]
    assert [f.get(b"v") for _, f in client.xrange(keys[2])] == [None, b"t:1"]
    client.close()


def test_trimming_keeps_the_entries_holding_the_last_maxlen_offsets(
    redis_prefixed_url, redis_test_url
):
    base = f"{split_url(redis_prefixed_url)[1]}{{c}}:"
    keys = [base + "epoch", base + "seq", base + "stream", base + "src:n"]
    client = redis.Redis.from_url(redis_test_url)
    script = client.register_script(broker_redis.PUBLISH_SCRIPT)
    for run in range(40):  # 1000 offsets in runs of 25, with a bound of 100 offsets
        stored_run(script, keys, list(range(run * 25 + 1, run * 25 + 26)), 100)
    offsets = [p.offset for p in stored(client, keys[2])]
    client.close()
    assert offsets == list(range(offsets[0], 1001))
    assert 1 < offsets[0] <= 901  # trimmed, yet the last 100 offsets are all there


@pytest.mark.gen_test(timeout=30)
async def test_lost_stream_starts_a_new_epoch(redis_prefixed_url, redis_test_url, server_factory):
    node = await server_factory(websocket__broker=redis_prefixed_url)
    client = await node.subscriber(["events"])
    for n in range(3):
        await node.publish(event(n))
    old = await client.events(3)
    prefix = split_url(redis_prefixed_url)[1]
    direct = redis.Redis.from_url(redis_test_url)
    direct.delete(*direct.scan_iter(match=prefix + "*"))  # as a Redis that lost its data
    direct.close()
    await node.publish(event(3))
    new = await client.events(1)
    assert new[0]["epoch"] != old[0]["epoch"] and new[0]["offset"] == 1
    assert new[0]["event"]["data"]["n"] == 3
    resumed = await node.subscriber(
        ["events"], since={"events": {"epoch": old[0]["epoch"], "offset": 3}}
    )
    assert resumed.subscribed["recovered"] == {"events": False}
    assert (await resumed.recv_type("gap"))["epoch"] == new[0]["epoch"]


@pytest.mark.gen_test(timeout=20)
async def test_unreachable_redis_503_local_delivery_bounded_buffer_no_password(server_factory):
    nothing = ReservedPort()  # nothing listens there until the test ends
    url = f"redis://:s3cret-pass@127.0.0.1:{nothing.port}/0"
    node = await server_factory(websocket__broker=url, websocket__broker__buffer=2)
    health = await node.get("/healthz")
    assert health.code == 503
    body = orjson.loads(health.body)
    assert body["broker"]["state"] == "connecting" and body["broker"]["ready"] is False
    assert body["broker"]["url"] == f"redis://:***@127.0.0.1:{url.rsplit(':', 1)[1]}"
    stats = await node.get("/ws/stats", make_token(scope="admin"))
    assert b"s3cret" not in health.body + stats.body

    client = await node.subscriber(["events"])
    for n in range(4):
        await node.publish(event(n))
    got = await client.events(4)  # the node's own events go on, under its outage epoch
    assert [m["offset"] for m in got] == [1, 2, 3, 4]
    assert len({m["epoch"] for m in got}) == 1 and got[0]["epoch"].startswith("local-")
    state = node.node.broker.state()
    assert (state["buffered"], state["dropped"]) == (2, 6)  # 8 publications: events, threats
    metrics = (await AsyncHTTPClient().fetch(node.http + "/metrics")).body.decode()
    assert "netsentinel_ws_broker_up 0.0" in metrics
    assert "netsentinel_ws_broker_dropped_total 6.0" in metrics
    nothing.release()


@pytest.mark.gen_test(timeout=20)
async def test_positions_ahead_of_the_stream_and_a_lagging_reader(
    redis_prefixed_url, server_factory, monkeypatch
):
    monkeypatch.setattr(broker_redis, "CATCH_UP_WAIT", 0.2)
    node = await server_factory(websocket__broker=redis_prefixed_url)
    broker = node.node.broker
    await node.publish(event(0))
    await wait_for(lambda: broker.position("events").offset == 1)
    top = broker.position("events")
    assert await broker.recover("events", None) == broker_redis.Recovery((), top, True)
    # A position this node's reader never reaches (bogus, or a node far ahead): a gap.
    ahead = await broker.recover("events", Position(top.epoch, 5))
    assert not ahead.recovered and ahead.position == top

    # A reader that fell behind the stream bound skips what was trimmed, and says so: in the
    # metrics, and to subscribers with a gap from where they stand.
    client = await node.subscriber(["events"])
    ch = broker._channel("events")
    skipped = Publication("events", top.epoch, top.offset + 3, PreparedEvent(event(9), time.time()))
    broker._take(ch, [skipped], time.time(), False)
    gap = await client.recv()
    assert (gap["type"], gap["epoch"], gap["from"]) == ("gap", top.epoch, top.as_dict())
    assert [m["offset"] for m in await client.events(1)] == [top.offset + 3]
    metrics = (await node.get("/metrics")).body.decode()
    assert 'netsentinel_ws_broker_errors_total{op="trimmed"} 1.0' in metrics


def test_missing_redis_package_names_the_extra(monkeypatch):
    monkeypatch.setattr(broker_redis, "aioredis", None)
    with pytest.raises(ConfigError, match=r"netsentinel-websocket\[redis\]") as info:
        RedisBroker("redis://127.0.0.1/0", 10, metrics=Metrics(), buffer_size=10, channels=["x"])
    assert info.value.key == "websocket.broker"


def test_url_prefix_and_redaction():
    assert split_url("redis://h:1/2?prefix=a:b:&ssl_cert_reqs=none") == (
        "redis://h:1/2?ssl_cert_reqs=none",
        "a:b:",
    )
    assert split_url("rediss://h/0")[1] == broker_redis.DEFAULT_PREFIX
    assert redact_url("rediss://user:pw@h:1/0") == "rediss://user:***@h:1/0"
    assert redact_url("redis://h/0?password=pw&prefix=x:") == "redis://h/0?password=***&prefix=x:"
    assert redact_url("redis://h/0") == "redis://h/0"
