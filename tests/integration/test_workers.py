"""``serve --workers 2`` as a real process with the Redis broker: connections land on both
workers, events from either worker's TCP and HTTP ingest reach every client once and in offset
order, SIGTERM stops everything as one shutdown, a worker that dies is started again, and the
memory broker is refused."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

from tests.conftest import WSClient, base_config, event, make_token

CLIENTS = 24  # all on one worker by chance: 2**-23


def children(pid: int) -> set[int]:
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def worker_pid(welcome: dict[str, Any]) -> int:
    """The worker a client landed on: an unset websocket.node_id is hostname-pid."""
    return int(welcome["node_id"].rsplit("-", 1)[1])


async def connect(url: str) -> tuple[WSClient, int]:
    """A client subscribed to ``events``, and the pid of the worker that serves it."""
    request = HTTPRequest(url, headers={"Authorization": f"Bearer {make_token()}"})
    client = WSClient(await websocket_connect(request))
    welcome = await client.recv()
    assert welcome["type"] == "welcome", welcome
    reply = await client.request({"type": "subscribe", "id": 1, "channels": ["events"]})
    assert reply["type"] == "subscribed", reply
    return client, worker_pid(welcome)


async def spread(url: str, count: int) -> tuple[list[WSClient], set[int]]:
    pairs = await asyncio.gather(*(connect(url) for _ in range(count)))
    return [c for c, _ in pairs], {pid for _, pid in pairs}


def send_tcp(port: int, numbers: range) -> None:
    """One ingest connection (one worker) for these events, in this order."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"".join(orjson.dumps(event(n)) + b"\n" for n in numbers))


async def post(base: str, numbers: range) -> None:
    """One POST /ingest on a connection of its own (so on either worker)."""
    client = AsyncHTTPClient(force_instance=True)
    try:
        reply = await client.fetch(
            base + "/ingest",
            method="POST",
            body=orjson.dumps([event(n) for n in numbers]),
            headers={"Authorization": f"Bearer {make_token(scope='ingest')}"},
        )
        assert reply.code == 202
    finally:
        client.close()


def assert_one_feed(received: list[list[dict[str, Any]]], sources: list[range]) -> None:
    """Every client got every event once, at consecutive offsets of one epoch, the same
    sequence; each source's events in the order it sent them."""
    first = [(m["epoch"], m["offset"], m["event"]["data"]["n"]) for m in received[0]]
    epoch, start = first[0][0], first[0][1]
    assert [(e, o) for e, o, _ in first] == [(epoch, start + i) for i in range(len(first))]
    numbers = [n for _, _, n in first]
    assert sorted(numbers) == sorted(n for source in sources for n in source)  # once each
    for source in sources:
        assert [n for n in numbers if n in source] == list(source)
    for messages in received[1:]:
        assert [(m["epoch"], m["offset"], m["event"]["data"]["n"]) for m in messages] == first


@pytest.mark.redis
@pytest.mark.gen_test(timeout=90)
async def test_two_workers_share_one_feed_and_stop_as_one(redis_prefixed_url, serve_process):
    server = serve_process(base_config(websocket__broker=redis_prefixed_url), "--workers", "2")
    workers = children(server.proc.pid)
    assert len(workers) == 2
    clients, landed = await spread(server.url, CLIENTS)
    assert landed == workers  # the kernel spread the connections over both

    tcp = [range(c * 100, c * 100 + 10) for c in range(4)]
    http = [range(1000 + p * 100, 1000 + p * 100 + 5) for p in range(6)]
    for numbers in tcp:
        send_tcp(server.ingest_port, numbers)
    for numbers in http:  # one at a time: websocket.ingest.max_uploads is per worker
        await post(server.http, numbers)
    total = sum(len(r) for r in tcp + http)
    received = await asyncio.gather(*(c.events(total, timeout=20) for c in clients))
    assert_one_feed(received, tcp + http)

    # Events sent right before SIGTERM reach every client on both workers before its 1001:
    # the worker that did not ingest them reads them before it closes (without the shutdown
    # barrier, its clients got the 1001 first).
    last = range(5000, 8000)
    send_tcp(server.ingest_port, last)
    server.proc.send_signal(signal.SIGTERM)
    ends = await asyncio.gather(*(c.events(len(last), timeout=20) for c in clients))
    assert_one_feed(ends, [last])
    assert ends[0][0]["offset"] == received[0][-1]["offset"] + 1
    for client in clients:
        with pytest.raises(ConnectionError, match="closed 1001"):
            await client.recv(timeout=20)
    assert server.proc.wait(30) == 0
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]


@pytest.mark.redis
@pytest.mark.gen_test(timeout=90)
async def test_a_dead_worker_is_started_again(redis_prefixed_url, serve_process):
    """SIGKILL one worker: the other keeps serving, a new one takes its place (worker 0, the
    only one that runs --demo, again with --demo), and the serve still stops cleanly."""
    server = serve_process(
        base_config(websocket__broker=redis_prefixed_url), "--workers", "2", "--demo"
    )

    def demo_workers() -> dict[int, bool]:
        """The live workers, and whether each runs the demo."""
        found = {}
        for pid in children(server.proc.pid):
            with contextlib.suppress(OSError):  # reaped meanwhile
                if cmdline := Path(f"/proc/{pid}/cmdline").read_bytes():  # empty: a zombie
                    found[pid] = b"\0--demo" in cmdline
        return found

    before = demo_workers()
    assert sorted(before.values()) == [False, True]  # one synthetic feed, not two
    killed = next(p for p, demo in before.items() if demo)
    os.kill(killed, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while (now := demo_workers()).keys() == before.keys() or len(now) < 2:
        assert time.monotonic() < deadline, "the dead worker was not started again"
        await asyncio.sleep(0.1)
    assert sorted(now.values()) == [False, True] and killed not in now
    landed: set[int] = set()
    while landed != set(now):  # the new worker serves (it may not listen at once)
        assert time.monotonic() < deadline, f"connections land on {landed}, not {set(now)}"
        clients, landed = await spread(server.url, CLIENTS)
        for client in clients:
            client.close()
    assert server.stop() == 0
    assert "exited with -9 while serving: starting it again" in server.stderr_text()


def test_several_workers_need_the_redis_broker(tmp_path):
    """A memory broker cannot share a feed: check-config and serve refuse, naming the key."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**base_config(), "server.workers": 2}))
    command = [sys.executable, "-m", "netsentinel_websocket"]
    checked = subprocess.run(
        [*command, "check-config", str(config)], capture_output=True, text=True, timeout=60
    )
    config.write_text(json.dumps(base_config()))
    served = subprocess.run(
        [*command, "serve", "--config", str(config), "--workers", "3"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    for done, count in ((checked, 2), (served, 3)):
        assert done.returncode == 2
        assert f"server.workers: is {count}: several workers" in done.stderr
        assert "need the Redis broker" in done.stderr
        assert "Traceback" not in done.stderr
