"""A network path that goes silent (no FIN, no reset) between a client and a ``serve``
subprocess, while a producer streams numbered events: the bundled client and ``tail`` notice,
reconnect and resume with every event exactly once.

Half dead (the client's bytes vanish): the server's heartbeat gives up and closes with 1000
"ping timed out", a close the client did not ask for, so it resumes. Fully dead: the server's
close never arrives; the client's own heartbeat ends the connection (no close code)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import orjson
import pytest

from netsentinel_websocket.client import Event, Gap, Reconnect

from ..conftest import base_config, make_token
from .faults import Producer, Proxy, client, collect, numbers, until

TOTAL = 400
HEARTBEAT = {"websocket__heartbeat__interval": 0.3, "websocket__heartbeat__timeout": 0.3}


@pytest.mark.parametrize(
    ("up", "down", "client_ping", "code"),
    [(True, False, 20.0, 1000), (True, True, 0.5, None)],
    ids=["half-dead", "dead"],
)
def test_client_follows_through_a_silent_path(serve_process, up, down, client_ping, code):
    server = serve_process(base_config(**HEARTBEAT))

    async def scenario() -> tuple[list[Event | Gap], list[Reconnect]]:
        proxy = Proxy(server.port)
        await proxy.start()
        reconnects: list[Reconnect] = []
        items: list[Event | Gap] = []
        producer = Producer(server.ingest_port)
        producer.limit = TOTAL
        async with client(proxy.url, reconnects, ping_interval=client_ping) as c:
            consumer = asyncio.create_task(collect(c, items))
            producing = asyncio.create_task(producer.run())
            await until(lambda: len(items) >= 50)
            proxy.blackhole(up=up, down=down)
            await producing
            await until(lambda: len(items) >= TOTAL)
            await asyncio.sleep(0.1)  # anything extra (a duplicate) would arrive now
            consumer.cancel()
        proxy.close()
        return items, reconnects

    items, reconnects = asyncio.run(scenario())
    assert [(r.code, r.reason) for r in reconnects][:1] == [
        (code, "ping timed out" if code else "connection lost")
    ]
    assert not [i for i in items if isinstance(i, Gap)]
    assert [i.offset for i in items] == list(range(1, TOTAL + 1))
    assert numbers(items) == list(range(TOTAL))


def test_tail_keeps_following_after_a_heartbeat_close(serve_process, tmp_path):
    server = serve_process(base_config(**HEARTBEAT))
    out = tmp_path / "tail.out"

    async def scenario() -> tuple[list[dict[str, object]], str]:
        proxy = Proxy(server.port)
        await proxy.start()
        cmd = [sys.executable, "-m", "netsentinel_websocket", "tail", proxy.url]
        cmd += ["--channel", "events", "--json", "--token", make_token()]
        with open(out, "wb") as stdout:
            tail = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE, env=os.environ)
        try:

            def lines() -> list[dict[str, object]]:
                return [orjson.loads(x) for x in out.read_bytes().splitlines()]

            producer = Producer(server.ingest_port)
            producer.limit = TOTAL
            await until(lambda: bool(proxy.links))  # tail is connected
            await asyncio.sleep(0.3)  # and subscribed (events before that are not its)
            producing = asyncio.create_task(producer.run())
            await until(lambda: len(lines()) >= 50)
            proxy.blackhole(up=True, down=False)
            await producing
            await until(lambda: len(lines()) >= TOTAL, timeout=15)
            await asyncio.sleep(0.2)
            assert tail.poll() is None  # still following
        finally:
            tail.terminate()
            _, err = await asyncio.to_thread(tail.communicate, timeout=10)
            proxy.close()
        return lines(), err.decode()

    messages, stderr = asyncio.run(scenario())
    assert [m["type"] for m in messages] == ["event"] * TOTAL
    assert [m["offset"] for m in messages] == list(range(1, TOTAL + 1))
    assert "1000 ping timed out" in stderr and "reconnecting" in stderr
