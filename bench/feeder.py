"""Feeds bench events into a server's TCP JSON-lines ingest, all at once or at a fixed rate.

Each event carries ``data.sent_at`` (``time.time()`` when it was written) so that probes can
time its arrival; the client and the feeder share the machine's clock.
"""

from __future__ import annotations

import random
import socket
import time
from typing import Any

import orjson

EVENT_TYPE = "honeypot.bench.tick"  # routed to the `events` channel by the default rules
CHANNEL = "events"

#: Words of honeypot sessions, for padding that compresses like real events (a run of "x"
#: would make compression look far better than it is).
WORDS = [
    "root",
    "admin",
    "ubuntu",
    "oracle",
    "test",
    "guest",
    "postgres",
    "pi",
    "user",
    "support",
    "123456",
    "password",
    "admin123",
    "qwerty",
    "letmein",
    "toor",
    "changeme",
    "uname",
    "-a",
    "cat",
    "/etc/passwd",
    "wget",
    "curl",
    "http://203.0.113.9/x.sh",
    "chmod",
    "+x",
    "./x.sh",
    "busybox",
    "tftp",
    "nc",
    "-e",
    "/bin/sh",
    "cd",
    "/tmp",
    "rm",
    "-rf",
    "echo",
    "ssh-rsa",
    "AAAAB3NzaC1yc2E",
    "SSH-2.0-Go",
    "SSH-2.0-libssh_0.9.6",
    "HTTP/1.1",
    "GET",
    "/admin",
    "POST",
    "/login",
    "Mozilla/5.0",
    "zgrab",
    "masscan",
]


def make_event(seq: int, size: int, varied: bool = False) -> dict[str, Any]:
    """A NetSentinel event of about ``size`` bytes of JSON (padded in ``data.pad``: with
    ``x`` or, ``varied``, with words of honeypot sessions in a random order)."""
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
    room = max(0, size - len(orjson.dumps(event)))
    if varied:
        pick = random.Random(seq).choice
        words: list[str] = []
        while sum(map(len, words)) + len(words) < room:
            words.append(pick(WORDS))
        event["data"]["pad"] = " ".join(words)[:room]
    else:
        event["data"]["pad"] = "x" * room
    return event


class Feeder:
    """One ingest connection, kept for the whole case so its setup is not measured."""

    def __init__(self, host: str, port: int, size: int, varied: bool = False) -> None:
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.size = size
        self.varied = varied
        self.seq = 0

    def _line(self) -> bytes:
        self.seq += 1
        return orjson.dumps(make_event(self.seq, self.size, self.varied)) + b"\n"

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
