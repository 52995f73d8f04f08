"""Attacks on a real ``serve`` process, and the three things every attack test checks.

1. the attacker gets the documented refusal (the test's own assertions);
2. a well-behaved subscriber, connected throughout, receives every event in order with no hole:
   a :class:`Pump` publishes numbered events over the TCP ingest on a channel of their own
   (``witness``), and a :class:`Witness` must see offsets 1..n with ``seq`` 1..n;
3. the server's resident memory stays within a stated bound: :class:`Guard` samples
   ``/proc/<pid>/status`` while the attack runs and compares the peak with the baseline.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any

import orjson
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from ..conftest import ServeProcess, WSClient, base_config, make_token

WITNESS_CHANNEL = "witness"


def attack_config(**overrides: Any) -> dict[str, Any]:
    """``base_config`` plus the ``witness`` channel, fed only by ``witness.*`` events."""
    from netsentinel_websocket.config import DEFAULT_CHANNELS, DEFAULT_ROUTES

    config = base_config(**overrides)
    config.setdefault("websocket.channels", [*DEFAULT_CHANNELS, WITNESS_CHANNEL])
    config.setdefault(
        "websocket.routes",
        [{"channel": WITNESS_CHANNEL, "event_types": ["witness.*"]}, *map(dict, DEFAULT_ROUTES)],
    )
    return config


def rss_kib(pid: int) -> int:
    """Resident memory of a process, in KiB, from ``/proc``."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


class Witness:
    """A subscriber that reads everything, as a dashboard would."""

    def __init__(self, client: WSClient) -> None:
        self.client = client

    @classmethod
    async def connect(cls, port: int) -> Witness:
        request = HTTPRequest(
            f"ws://127.0.0.1:{port}/ws", headers={"Authorization": f"Bearer {make_token()}"}
        )
        client = WSClient(await websocket_connect(request))
        assert (await client.recv())["type"] == "welcome"
        reply = await client.request({"type": "subscribe", "id": 1, "channels": [WITNESS_CHANNEL]})
        assert reply["type"] == "subscribed", reply
        return cls(client)

    async def expect(self, count: int, timeout: float = 30) -> None:
        """Exactly events 1..count, in order, at offsets 1..count: no hole, no duplicate."""
        got = await self.client.events(count, timeout)
        offsets = [m["offset"] for m in got]
        seqs = [m["event"]["data"]["seq"] for m in got]
        assert offsets == list(range(1, count + 1)), offsets
        assert seqs == list(range(1, count + 1)), seqs


class Pump:
    """Numbered ``witness.tick`` events over the TCP ingest, ``rate`` per second, from
    ``source`` (a local address such as 127.0.0.2) when given."""

    def __init__(self, ingest_port: int, rate: float = 200, source: str | None = None) -> None:
        self.sent = 0
        self._port = ingest_port
        self._rate = rate
        self._local = (source, 0) if source else None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", self._port, local_addr=self._local
        )
        try:
            while not self._stop.is_set():
                self.sent += 1
                line = {"event_type": "witness.tick", "severity": "low", "data": {"seq": self.sent}}
                writer.write(orjson.dumps(line) + b"\n")
                await writer.drain()
                try:
                    await asyncio.wait_for(self._stop.wait(), 1 / self._rate)
                except asyncio.TimeoutError:
                    pass
        finally:
            writer.close()

    async def stop(self) -> int:
        """Stop publishing; the number of events sent."""
        self._stop.set()
        assert self._task is not None
        await self._task
        return self.sent


class Guard:
    """``async with Guard(proc, rss_bound_kib=...)``: witness and pump around an attack.

    On exit the witness must have every pumped event in order, and the peak RSS sampled during
    the attack must stay within ``rss_bound_kib`` of the RSS before it.
    """

    def __init__(
        self,
        proc: ServeProcess,
        rss_bound_kib: int,
        rate: float = 200,
        pump_source: str | None = None,
    ) -> None:
        assert proc.proc is not None
        self.proc = proc
        self.pid = proc.proc.pid
        self.bound = rss_bound_kib
        self.rate = rate
        self.pump_source = pump_source
        self.baseline = 0
        self.peak = 0
        self._sampling: asyncio.Task[None] | None = None
        self._done = asyncio.Event()

    async def __aenter__(self) -> Guard:
        self.witness = await Witness.connect(self.proc.port)
        self.pump = Pump(self.proc.ingest_port, self.rate, self.pump_source)
        self.pump.start()
        await self.witness.expect(5)  # the feed flows before the attack starts
        self.witness_seen = 5
        self.baseline = rss_kib(self.pid)
        self._sampling = asyncio.create_task(self._sample())
        return self

    async def _sample(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            try:
                await asyncio.wait_for(self._done.wait(), 0.05)
            except asyncio.TimeoutError:
                pass

    async def __aexit__(self, *exc: Any) -> None:
        sent = await self.pump.stop()
        self._done.set()
        assert self._sampling is not None
        await self._sampling
        if exc[0] is not None:
            return
        assert self.proc.proc is not None and self.proc.proc.poll() is None, "server died"
        got = await self.witness.client.events(sent - self.witness_seen, timeout=30)
        offsets = [m["offset"] for m in got]
        seqs = [m["event"]["data"]["seq"] for m in got]
        expected = list(range(self.witness_seen + 1, sent + 1))
        assert seqs == expected and offsets == expected, (seqs[:5], offsets[:5], len(expected))
        grew = self.peak - self.baseline
        assert grew <= self.bound, f"RSS grew {grew} KiB (bound {self.bound} KiB)"
        self.witness.client.close()


async def wait_until(check: Callable[[], bool], timeout: float = 10, what: str = "") -> None:
    """Poll ``check`` (a cheap, side-effect-free probe of another process) until it holds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        await asyncio.sleep(0.05)


def raw_connection(port: int) -> socket.socket:
    """A blocking TCP connection to the server (the attacker's end)."""
    return socket.create_connection(("127.0.0.1", port), timeout=10)
