"""The foundation end to end, in process: a published event reaches a subscriber."""

import pytest


@pytest.mark.gen_test(timeout=20)
async def test_event_reaches_subscriber(server_factory, make_event):
    server = await server_factory()
    client = await server.subscriber(["events", "threats"])
    await server.publish(make_event(1))
    got = {m["channel"]: m for m in await client.events(2)}
    assert set(got) == {"events", "threats"}
    assert got["events"]["event"]["data"]["n"] == 1
    assert got["events"]["offset"] == 1
