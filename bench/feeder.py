"""Feeds bench events into a server's TCP JSON-lines ingest, all at once or at a fixed rate.

Each event carries ``data.sent_at`` (``time.time()`` when it was written) so that probes can
time its arrival; the client and the feeder share the machine's clock.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import orjson

EVENT_TYPE = "honeypot.bench.tick"  # routed to the `events` channel by the default rules
CHANNEL = "events"


def make_event(seq: int, size: int) -> dict[str, Any]:
    """A NetSentinel event of about ``size`` bytes of JSON (padded in ``data.pad``)."""
    event: dict[str, Any] = {
        "id": f"bench-{seq}",
        "timestamp": time.time(),
        "event_type": EVENT_TYPE,
        "source": "bench-node",
        "severity": "info",
        "data": {"seq": seq, "sent_at": time.time(), "src_ip": "198.51.100.7", "pad": ""},
        "tags": ["bench"],
        "correlation_id": None,
        "metadata": {},
    }
    event["data"]["pad"] = "x" * max(0, size - len(orjson.dumps(event)))
    return event


class Feeder:
    """One ingest connection, kept for the whole case so its setup is not measured."""

    def __init__(self, host: str, port: int, size: int) -> None:
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.size = size
        self.seq = 0

    def _line(self) -> bytes:
        self.seq += 1
        return orjson.dumps(make_event(self.seq, self.size)) + b"\n"

    def burst(self, count: int) -> float:
        """Write ``count`` events in one send; returns the time just before the send."""
        lines = [self._line() for _ in range(count)]
        started = time.time()
        self.sock.sendall(b"".join(lines))
        return started

    def steady(self, rate: float, duration: float) -> int:
        """Write one event every ``1/rate`` seconds for ``duration``; returns how many."""
        count = int(rate * duration)
        start = time.perf_counter()
        for i in range(count):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            self.sock.sendall(self._line())
        return count

    def close(self) -> None:
        self.sock.close()
