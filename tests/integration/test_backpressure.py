"""Backpressure from subscribers to the TCP ingest, on a real ``serve`` (docs/performance.md,
"A 100,000-line burst beside live events"): a burst waits for a subscriber that is behind, a
live event from another sensor goes ahead of the rest of the burst, nothing is lost, and a
subscriber that stopped reading does not hold the ingest for longer than the stall time."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import orjson
import pytest
from tornado.httpclient import AsyncHTTPClient

from tests.conftest import base_config, close_code, frame_messages, make_token

BURST = 40_000  # about 16 MB of lines: read in well under a second without the gate
SHARE_BOUND = 5_000  # what the buffers between the ingest and a stalled reader can hold


def burst_line(n: int) -> bytes:
    return orjson.dumps(
        {
            "event_type": "network.scan",
            "severity": "low",
            "source": "burst",
            "data": {"n": n, "pad": "p" * 300},
        }
    )


def live_line() -> bytes:
    return orjson.dumps(
        {"event_type": "network.scan", "severity": "low", "source": "live", "data": {"live": 1}}
    )


class Burst:
    """``count`` lines written in one ``sendall`` from a thread (it blocks while held)."""

    def __init__(self, port: int, count: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        payload = b"".join(burst_line(n) + b"\n" for n in range(1, count + 1))
        self.thread = threading.Thread(target=self._send, args=(payload,), daemon=True)
        self.thread.start()

    def _send(self, payload: bytes) -> None:
        try:
            self.sock.sendall(payload)
        except OSError:
            pass  # the test is over and closed the socket

    def close(self) -> None:
        self.sock.close()
        self.thread.join(5)


async def stats(serve: Any) -> dict[str, Any]:
    token = make_token("admin", scope="admin")
    response = await AsyncHTTPClient().fetch(
        f"{serve.http}/ws/stats", headers={"Authorization": f"Bearer {token}"}
    )
    return orjson.loads(response.body)


async def metric(serve: Any, name: str) -> float:
    """A series without labels from ``/metrics``."""
    token = make_token("admin", scope="admin")
    response = await AsyncHTTPClient().fetch(
        f"{serve.http}/metrics", headers={"Authorization": f"Bearer {token}"}
    )
    for line in response.body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name}")


async def held_seconds(serve: Any) -> float:
    return await metric(serve, "netsentinel_ws_ingest_held_seconds_total")


async def read_events(client: Any, count: int, timeout: float) -> list[dict[str, Any]]:
    """``count`` event messages from a RawClient, in the order they came."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(events) < count:
        opcode, payload = await client.frame(timeout=max(0.1, deadline - time.monotonic()))
        assert opcode == 1, (opcode, close_code(payload))
        events += [m for m in frame_messages(payload) if m["type"] == "event"]
    return events


@pytest.mark.gen_test(timeout=120)
async def test_a_burst_waits_for_a_subscriber_behind_and_a_live_event_goes_ahead(
    serve_process, raw_client
):
    serve = serve_process(
        base_config(
            websocket__queue__max_bytes=64 * 1024 * 1024,  # no 4009: the burst must wait
            websocket__backpressure__stall=60,  # the subscriber counts while it pauses
            websocket__backpressure__max_wait=60,
        )
    )
    reader = await raw_client(serve.port, make_token(), rcvbuf=32 * 1024)
    await reader.subscribe(["network"])
    burst = Burst(serve.ingest_port, BURST)
    try:
        await asyncio.sleep(1.5)  # the reader pauses: the burst fills what lies between
        with socket.create_connection(("127.0.0.1", serve.ingest_port)) as sensor:
            sensor.sendall(live_line() + b"\n")  # one line: a light read, never held
            await asyncio.sleep(0.5)
            read_so_far = (await stats(serve))["channels"]["network"]["offset"]
        assert 0 < read_so_far < SHARE_BOUND, read_so_far  # most of the burst still unread

        events = await read_events(reader, BURST + 1, timeout=90)
        assert await held_seconds(serve) > 1.5  # counted once each wait is over
    finally:
        burst.close()
    sources = [e["event"]["source"] for e in events]
    ahead = sources.index("live")
    assert ahead < SHARE_BOUND, ahead  # not behind the whole burst
    assert [e["offset"] for e in events] == list(range(1, BURST + 2))  # nothing lost
    numbers = [e["event"]["data"]["n"] for e in events if e["event"]["source"] == "burst"]
    assert numbers == list(range(1, BURST + 1))


@pytest.mark.gen_test(timeout=120)
async def test_a_subscriber_that_stopped_reading_holds_the_ingest_only_for_the_stall_time(
    serve_process, raw_client
):
    serve = serve_process(
        base_config(
            websocket__backpressure__stall=1.0,
            websocket__backpressure__max_wait=30,  # without the stall rule: 30 s per read
        )
    )
    stalled = await raw_client(serve.port, make_token("stalled"), rcvbuf=16 * 1024)
    await stalled.subscribe(["network"])
    witness = await raw_client(serve.port, make_token("witness"))
    await witness.subscribe(["network"])
    started = time.monotonic()
    burst = Burst(serve.ingest_port, 20_000)
    try:
        events = await read_events(witness, 20_000, timeout=60)
    finally:
        burst.close()
    elapsed = time.monotonic() - started
    assert [e["event"]["data"]["n"] for e in events] == list(range(1, 20_001))
    assert elapsed < 25, elapsed  # held for about the stall time, not 30 s per read
    held = await held_seconds(serve)
    assert 0.5 < held < 20, held

    # The stalled subscriber was cut off with 4009 once its queue was full, as always (its close
    # frame waits behind a write it never takes, so the server's count is what tells).
    assert await metric(serve, "netsentinel_ws_slow_consumer_closes_total") == 1
