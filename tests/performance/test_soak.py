"""Soak: 200 clients that keep dropping and resuming lose nothing, and memory comes back.

SOAK_SECONDS sets how long the producer runs (default 8 s, so CI runs a short version;
SOAK_SECONDS=60 for the long one).
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import time

import pytest

from tests.conftest import make_token

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "8"))
CLIENTS = 200
CHANNELS = ("events", "threats")
BURST = 10  # events per producer tick
TICK = 0.1


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.soak
@pytest.mark.gen_test(timeout=SOAK_SECONDS + 90)
async def test_clients_dropping_and_resuming_lose_nothing_and_memory_returns(
    server_factory, make_event
):
    server = await server_factory(websocket__history__size=100_000)
    broker, node = server.node.broker, server.node
    gc.collect()
    rss_start = rss_bytes()
    producing = True
    stats = {"sessions": 0, "aborts": 0}

    async def producer() -> None:
        n = 0
        while producing:
            for _ in range(BURST):
                n += 1
                kind = ("honeypot.ssh.login", "low") if n % 2 else ("threat.detected", "medium")
                await server.publish(make_event(n, event_type=kind[0], severity=kind[1]))
            await asyncio.sleep(TICK)

    async def session(i: int, at: dict[str, dict], until: float | None) -> None:
        """One connection: resume from ``at`` and read until ``until`` (or the final tops)."""
        since = {"since": at} if at else {}
        client = await server.subscriber(list(CHANNELS), make_token(sub=f"soak-{i}"), **since)
        stats["sessions"] += 1
        if at:
            assert client.subscribed["recovered"] == {c: True for c in CHANNELS}
            assert client.subscribed["positions"] == at
        else:
            at.update(client.subscribed["positions"])
        while True:
            if until is None:
                if all(at[c]["offset"] == broker.position(c).offset for c in CHANNELS):
                    break
                timeout = 10.0
            else:
                timeout = until - time.monotonic()
                if timeout <= 0:
                    break
            try:
                msg = await client.recv(timeout)
            except asyncio.TimeoutError:
                continue
            if msg["type"] != "event":
                continue
            mine = at[msg["channel"]]
            assert (msg["epoch"], msg["offset"]) == (mine["epoch"], mine["offset"] + 1), msg
            mine["offset"] += 1
        if until is not None and random.random() < 0.2:
            client.conn.protocol.stream.close()  # a dropped connection, no close handshake
            stats["aborts"] += 1
        else:
            client.close()

    async def client_life(i: int, deadline: float) -> dict[str, dict]:
        rng = random.Random(i)
        at: dict[str, dict] = {}
        await asyncio.sleep(rng.uniform(0, 1))
        while time.monotonic() < deadline:
            await session(i, at, min(deadline, time.monotonic() + rng.uniform(0.3, 2.5)))
            await asyncio.sleep(rng.uniform(0, 0.5))
        return at

    started = time.monotonic()
    feeding = asyncio.create_task(producer())
    lives = [asyncio.create_task(client_life(i, started + SOAK_SECONDS)) for i in range(CLIENTS)]
    positions = await asyncio.gather(*lives)
    producing = False
    await feeding
    # Each client comes back once more and must reach the last offset of every channel.
    finals = [session(i, at, None) for i, at in enumerate(positions)]
    await asyncio.gather(*finals)
    tops = {c: broker.position(c).as_dict() for c in CHANNELS}
    assert all(at == tops for at in positions)
    assert stats["sessions"] > 2 * CLIENTS and stats["aborts"] > 0

    while node.connections and time.monotonic() - started < SOAK_SECONDS + 60:
        await asyncio.sleep(0.05)
    hub = node.hub
    assert not node.connections and not hub._memberships
    assert all(not ch.recovering and not ch.groups for ch in hub._channels.values())
    gc.collect()
    growth = rss_bytes() - rss_start
    held = sum(len(broker._channels[c].history) for c in CHANNELS)  # kept for resume, by design
    assert growth < 64 * 1024 * 1024 + held * 2048, (growth, held)
