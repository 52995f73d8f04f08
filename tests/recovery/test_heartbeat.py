"""WebSocket ping/pong heartbeats close a peer that stopped answering (half-open connection)."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.conftest import close_code


@pytest.mark.gen_test(timeout=20)
async def test_peer_that_never_answers_pings_is_closed_and_forgotten(
    server_factory, make_event, raw_client
):
    server = await server_factory(
        websocket__heartbeat__interval=0.3, websocket__heartbeat__timeout=0.3
    )
    healthy = await server.subscriber(["events"])  # Tornado's client answers pings itself
    mute = await raw_client(server.port)  # the kernel acknowledges, nobody answers
    assert (await mute.message())["type"] == "welcome"
    assert len(server.node.connections) == 2
    started = time.monotonic()
    opcodes = []
    while True:
        opcode, payload = await mute.frame(timeout=5)
        opcodes.append(opcode)
        if opcode == 8:
            break
    assert opcodes[0] == 9 and close_code(payload) == 1000 and b"ping timed out" in payload
    while len(server.node.connections) > 1:  # it never returns the close: dropped after 5 s
        assert time.monotonic() - started < 10
        await asyncio.sleep(0.05)
    with pytest.raises(ConnectionError):
        await mute.frame(timeout=2)
    await server.publish(make_event(1, severity="low"))
    assert (await healthy.events(1))[0]["offset"] == 1
    assert server.node.hub.subscriber_counts()["events"] == 1
