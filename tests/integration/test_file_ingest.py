"""File ingest against real ``serve`` processes: a writer appends OpenCanary records to a log
file at a steady rate while the runner is killed (SIGKILL) and restarted, with rotations in
between; every line must end up exactly once, in file order."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from netsentinel_websocket.broker_redis import split_url
from netsentinel_websocket.streamentry import entry_publications
from tests.conftest import WSClient, base_config, make_token

RATE = 0.008  # seconds between two lines: about 125 lines a second


def record(n: int) -> bytes:
    """An OpenCanary SSH login attempt numbered ``n`` (in ``logdata.n``)."""
    return orjson.dumps(
        {
            "dst_host": "10.0.0.5",
            "dst_port": 22,
            "local_time": "2026-01-05 10:00:00.000000",
            "logdata": {"USERNAME": "root", "n": n},
            "logtype": 4002,
            "node_id": "canary-1",
            "src_host": "203.0.113.7",
            "src_port": 40000 + n % 20000,
            "utc_time": "2026-01-05 10:00:00.000000",
        }
    )


class Writer(threading.Thread):
    """Appends numbered records at a steady rate (as OpenCanary's file handler does: one
    flushed write per line); ``rotate()`` renames the file to ``.1`` and goes on in a new one."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.written = 0
        self.lock = threading.Lock()
        self.done = threading.Event()
        self._fh = open(path, "ab", buffering=0)  # noqa: SIM115  # closed in run()

    def run(self) -> None:
        while not self.done.is_set():
            with self.lock:
                self._fh.write(record(self.written) + b"\n")
                self.written += 1
            time.sleep(RATE)
        self._fh.close()

    def rotate(self) -> None:
        with self.lock:
            os.rename(self.path, str(self.path) + ".1")
            self._fh.close()
            self._fh = open(self.path, "ab", buffering=0)  # noqa: SIM115


def file_config(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    return base_config(
        websocket__ingest__files=[{"path": str(tmp_path / "opencanary.log"), "format": "auto"}],
        websocket__ingest__state_dir=str(tmp_path / "state"),
        websocket__ingest__poll_interval=0.05,
        websocket__history__size=50_000,
        **overrides,
    )


def numbers(events: list[dict[str, Any]]) -> list[int]:
    return [e["data"]["logdata"]["n"] for e in events]


async def subscriber(url: str, since: dict[str, Any] | None = None) -> WSClient:
    request = HTTPRequest(url, headers={"Authorization": f"Bearer {make_token()}"})
    client = WSClient(await websocket_connect(request))
    assert (await client.recv())["type"] == "welcome"
    message: dict[str, Any] = {"type": "subscribe", "id": 1, "channels": ["events"]}
    if since is not None:
        message["since"] = {"events": since}
    reply = await client.request(message)
    assert reply["type"] == "subscribed", reply
    client.subscribed = reply  # type: ignore[attr-defined]
    return client


def stream_numbers(url: str) -> list[int]:
    """Every event the Redis stream of the ``events`` channel holds, in stream order."""
    address, prefix = split_url(url)
    client = redis.Redis.from_url(address)
    try:
        entries = client.xrange(f"{prefix}{{events}}:stream")
    finally:
        client.close()
    return [
        pub.prepared.event["data"]["logdata"]["n"]
        for entry_id, fields in entries
        for pub in entry_publications("events", "", entry_id, fields)
    ]


def wait_until(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.05)


@pytest.mark.redis
@pytest.mark.gen_test(timeout=90)
async def test_every_line_once_in_order_across_sigkill_restarts_and_rotations(
    redis_prefixed_url, serve_process, tmp_path, record_property
):
    log_file = tmp_path / "opencanary.log"
    log_file.touch()
    proc = serve_process(file_config(tmp_path, websocket__broker=redis_prefixed_url))
    writer = Writer(log_file)
    writer.start()
    restarts = 0
    try:
        for cycle in range(4):
            await asyncio.sleep(1.0 + 0.3 * cycle)
            if cycle == 1:
                writer.rotate()  # while the runner follows the file
            proc.proc.kill()  # SIGKILL: no chance to persist anything
            proc.proc.wait()
            if cycle == 2:
                writer.rotate()  # while it is down: found again among the siblings
            await asyncio.sleep(0.3)
            proc.start()
            restarts += 1
        await asyncio.sleep(1.0)
    finally:
        writer.done.set()
        writer.join()
    total = writer.written
    assert total > 500 and restarts == 4
    record_property("lines", total)

    def all_in() -> bool:
        return len(stream_numbers(redis_prefixed_url)) >= total

    await asyncio.to_thread(wait_until, all_in, 20)
    await asyncio.sleep(0.5)  # anything repeated would come now
    assert stream_numbers(redis_prefixed_url) == list(range(total))  # once each, in file order

    # The same history through the protocol: from offset 0 of the stream's epoch.
    probe = await subscriber(proc.url)
    epoch = probe.subscribed["positions"]["events"]["epoch"]
    client = await subscriber(proc.url, {"epoch": epoch, "offset": 0})
    assert client.subscribed["recovered"] == {"events": True}
    got = await client.events(total, timeout=10)
    assert numbers([m["event"] for m in got]) == list(range(total))
    assert [m["offset"] for m in got] == list(range(1, total + 1))
    ids = {m["event"]["id"] for m in got}
    assert len(ids) == total and all(i.startswith("file:") for i in ids)

    # Losing the state directory makes the runner read the current file again from its
    # start: the Redis broker still holds each line once (same ids, same file sources).
    proc.proc.kill()
    proc.proc.wait()
    for state in (tmp_path / "state").iterdir():
        state.unlink()
    proc.start()
    await asyncio.sleep(2.0)
    assert stream_numbers(redis_prefixed_url) == list(range(total))
    record_property("restarts", restarts + 1)


@pytest.mark.gen_test(timeout=90)
async def test_memory_broker_loses_nothing_across_restarts_and_repeats_nothing(
    serve_process, tmp_path, record_property
):
    log_file = tmp_path / "opencanary.log"
    log_file.touch()
    proc = serve_process(file_config(tmp_path))
    writer = Writer(log_file)
    writer.start()
    epochs: list[list[int]] = []
    try:
        for cycle in range(3):
            probe = await subscriber(proc.url)
            epoch = probe.subscribed["positions"]["events"]["epoch"]
            client = await subscriber(proc.url, {"epoch": epoch, "offset": 0})
            probe.close()
            await asyncio.sleep(1.0)
            if cycle == 1:
                writer.rotate()
                await asyncio.sleep(0.5)
            if cycle == 2:
                writer.done.set()
                writer.join()
                await asyncio.sleep(1.0)  # the last lines are read
            await asyncio.to_thread(proc.stop)  # SIGTERM: clients get what was published
            seen: list[int] = []
            while True:
                try:
                    message = await client.recv(5)
                except ConnectionError:
                    break
                if message["type"] == "event":
                    seen.append(message["event"]["data"]["logdata"]["n"])
            epochs.append(seen)
            if cycle < 2:
                proc.start()
    finally:
        writer.done.set()
    for seen in epochs:
        assert len(seen) == len(set(seen))  # nothing twice within an epoch
    assert [n for seen in epochs for n in seen] == list(range(writer.written))
    record_property("lines", writer.written)
