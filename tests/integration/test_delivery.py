"""Delivery over real connections: fan-out order, and a broken connection hurting nobody else."""

from __future__ import annotations

import asyncio

import pytest


@pytest.mark.gen_test(timeout=20)
async def test_every_subscriber_gets_every_event_in_order(server_factory, make_event):
    server = await server_factory()
    clients = [await server.subscriber(["events"]) for _ in range(20)]
    for n in range(1, 201):
        await server.publish(make_event(n, severity="low"))
        if n % 7 == 0:
            await asyncio.sleep(0)
    for client in clients:
        got = await client.events(200)
        assert [m["offset"] for m in got] == list(range(1, 201))
        assert [m["event"]["data"]["n"] for m in got] == list(range(1, 201))


@pytest.mark.gen_test(timeout=20)
async def test_write_error_is_counted_and_drops_only_that_connection(server_factory, make_event):
    server = await server_factory()
    broken = await server.subscriber(["events"])
    healthy = await server.subscriber(["events"])
    conn = next(c for c in server.node.connections if c.events_sent == 0 and c.session.principal)

    class DeadSocket:
        def send(self, data):
            raise BrokenPipeError(32, "Broken pipe")

    conn._outbox._transport._sock = DeadSocket()  # the socket the transport sends on
    await server.publish(make_event(1, severity="low"))
    await server.publish(make_event(2, severity="low"))
    assert [m["offset"] for m in await healthy.events(2)] == [1, 2]
    code, _ = await broken.closed()
    assert code is None  # dropped, no close handshake on a broken connection
    assert server.node.metrics.write_errors._value.get() == 1
    assert conn not in server.node.connections
    assert server.node.hub.subscriber_counts()["events"] == 1
    await server.publish(make_event(3, severity="low"))
    assert (await healthy.events(1))[0]["offset"] == 3
