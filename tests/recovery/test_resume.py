"""Resume with ``since`` over real connections while a producer keeps publishing."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import YieldingBroker


async def offsets_until(client, channel: str, last: int, timeout: float = 10.0) -> list[int]:
    """Event offsets of ``channel`` received until ``last`` arrives."""
    got: list[int] = []
    while not got or got[-1] < last:
        msg = await client.recv_type("event", timeout)
        if msg["channel"] == channel:
            got.append(msg["offset"])
    return got


@pytest.mark.parametrize("awaiting_recover", [False, True], ids=["memory", "awaiting-recover"])
@pytest.mark.gen_test(timeout=30)
async def test_resume_delivers_exactly_the_missed_events_while_publishing(
    server_factory, make_event, awaiting_recover
):
    server = await server_factory(websocket__history__size=5000)
    if awaiting_recover:  # recover yields to the loop, as a networked broker's does
        server.node.hub._broker = YieldingBroker(server.node.broker, before=3, after=3)
    client = await server.subscriber(["events"])
    running = True

    async def producer():
        n = 0
        while running:
            n += 1
            await server.publish(make_event(n, severity="low"))
            await asyncio.sleep(0.001 if n % 5 else 0)

    task = asyncio.create_task(producer())
    first = (await client.events(20))[-1]
    client.close()
    await asyncio.sleep(0.05)  # the producer goes on while nobody listens
    since = {"epoch": first["epoch"], "offset": first["offset"]}
    again = await server.subscriber(["events"], since={"events": since})
    assert again.subscribed["recovered"] == {"events": True}
    assert again.subscribed["positions"]["events"] == since
    top = server.node.broker.position("events").offset
    got = await offsets_until(again, "events", top + 50)
    running = False
    await task
    assert got == list(range(first["offset"] + 1, top + 51))


@pytest.mark.gen_test(timeout=20)
async def test_unknown_epoch_gets_a_gap_then_live(server_factory, make_event):
    server = await server_factory()
    await server.publish(make_event(1, severity="low"))
    since = {"epoch": "from-before-a-restart", "offset": 1}
    client = await server.subscriber(["events"], since={"events": since})
    epoch = server.node.broker.position("events").epoch
    assert client.subscribed["recovered"] == {"events": False}
    assert client.subscribed["positions"]["events"] == {"epoch": epoch, "offset": 1}
    gap = await client.recv()
    assert gap == {"type": "gap", "channel": "events", "epoch": epoch, "from": since}
    await server.publish(make_event(2, severity="low"))
    live = await client.recv()
    assert (live["type"], live["offset"], live["event"]["data"]["n"]) == ("event", 2, 2)


@pytest.mark.parametrize("offset", [3, 40], ids=["older-than-history", "ahead-of-the-channel"])
@pytest.mark.gen_test(timeout=20)
async def test_position_history_cannot_serve_gets_a_gap_then_live(
    server_factory, make_event, offset
):
    server = await server_factory(websocket__history__size=10)
    for n in range(1, 31):
        await server.publish(make_event(n, severity="low"))
    epoch = server.node.broker.position("events").epoch
    since = {"epoch": epoch, "offset": offset}
    client = await server.subscriber(["events"], since={"events": since})
    assert client.subscribed["recovered"] == {"events": False}
    assert client.subscribed["positions"]["events"] == {"epoch": epoch, "offset": 30}
    assert await client.recv() == {
        "type": "gap",
        "channel": "events",
        "epoch": epoch,
        "from": since,
    }
    await server.publish(make_event(31, severity="low"))
    assert (await client.recv())["offset"] == 31


@pytest.mark.gen_test(timeout=20)
async def test_resume_at_the_oldest_position_history_holds(server_factory, make_event):
    server = await server_factory(websocket__history__size=10)
    for n in range(1, 31):
        await server.publish(make_event(n, severity="low"))
    epoch = server.node.broker.position("events").epoch
    client = await server.subscriber(["events"], since={"events": {"epoch": epoch, "offset": 20}})
    assert client.subscribed["recovered"] == {"events": True}
    got = await client.events(10)
    assert [m["offset"] for m in got] == list(range(21, 31))
    assert [m["event"]["data"]["n"] for m in got] == list(range(21, 31))
