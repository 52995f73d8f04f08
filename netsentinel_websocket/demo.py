"""A synthetic honeypot stream for ``serve --demo``: what a newcomer should see at once.

Records look like OpenCanary's (and go through the same normalization as real ones): SSH, HTTP,
FTP, SMB and MySQL login attempts from a few persistent attackers, port scans, SMB file opens,
plus the occasional NetSentinel ``threat.detected`` and a status heartbeat.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timezone
from typing import Any

# Public addresses so that country enrichment (websocket.geoip.enabled) has something to put on
# the dashboard's map; the stream is synthetic and says nothing about these networks.
ATTACKERS = (
    "61.177.172.13",
    "218.92.0.112",
    "185.220.101.4",
    "45.155.205.9",
    "89.248.165.52",
    "177.54.150.10",
    "103.99.0.122",
    "104.248.0.13",
    "5.188.206.14",
    "203.0.113.7",
)
USERS = ("root", "admin", "ubuntu", "pi", "oracle", "test", "postgres", "git")
PASSWORDS = ("123456", "admin", "password", "raspberry", "toor", "qwerty", "letmein", "P@ssw0rd")
NODES = ("canary-dmz-1", "canary-office-2")


def _record(
    rng: random.Random, logtype: int, dst_port: int, logdata: dict[str, Any]
) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    return {
        "dst_host": "10.0.0.5",
        "dst_port": dst_port,
        "local_time": now.strftime("%Y-%m-%d %H:%M:%S.%f"),
        "utc_time": now.strftime("%Y-%m-%d %H:%M:%S.%f"),
        "logdata": logdata,
        "logtype": logtype,
        "node_id": rng.choice(NODES),
        "src_host": rng.choice(ATTACKERS),
        "src_port": rng.randint(32768, 60999),
    }


def demo_items(rng: random.Random) -> Iterator[dict[str, Any]]:
    """An endless, varied sequence of OpenCanary records and NetSentinel events."""

    def creds() -> dict[str, str]:
        return {"USERNAME": rng.choice(USERS), "PASSWORD": rng.choice(PASSWORDS)}

    kinds: list[tuple[int, Callable[[], dict[str, Any]]]] = [
        (30, lambda: _record(rng, 4002, 22, {"SESSION": str(rng.randint(1, 999)), **creds()})),
        (
            12,
            lambda: _record(
                rng, 3001, 80, {"HOSTNAME": "intranet", "PATH": "/index.html", **creds()}
            ),
        ),
        (10, lambda: _record(rng, 2000, 21, creds())),
        (8, lambda: _record(rng, 8001, 3306, creds())),
        (6, lambda: _record(rng, 6001, 23, creds())),
        (8, lambda: _record(rng, 5001, rng.choice((22, 23, 80, 443, 445, 3389)), {})),
        (3, lambda: _record(rng, 5000, 445, {"FILENAME": "Q3-payroll.xlsx", "USER": "guest"})),
        (2, lambda: _record(rng, 5003, 0, {})),
        (
            3,
            lambda: {
                "event_type": "threat.detected",
                "severity": "critical",
                "source": "analyzer",
                "data": {
                    "src_ip": rng.choice(ATTACKERS),
                    "rule": rng.choice(("credential-stuffing", "lateral-movement", "worm")),
                    "score": round(rng.uniform(0.8, 1.0), 2),
                },
                "tags": ["correlated"],
            },
        ),
        (
            2,
            lambda: {
                "event_type": "alert.raised",
                "severity": "high",
                "source": "analyzer",
                "data": {
                    "alert_id": f"A-{rng.randint(1000, 9999)}",
                    "src_ip": rng.choice(ATTACKERS),
                },
            },
        ),
        (
            3,
            lambda: {
                "event_type": "status.heartbeat",
                "severity": "info",
                "source": rng.choice(NODES),
                "data": {"uptime": int(time.monotonic())},
            },
        ),
    ]
    weights = [w for w, _ in kinds]
    makers = [m for _, m in kinds]
    while True:
        yield rng.choices(makers, weights)[0]()


async def run_demo(
    feed: Callable[[dict[str, Any]], Awaitable[None]], rate: float = 3.0, seed: int | None = None
) -> None:
    """Feed the demo stream at about ``rate`` items/s, with a small burst now and then."""
    rng = random.Random(seed)
    items = demo_items(rng)
    while True:
        burst = rng.randint(5, 20) if rng.random() < 0.03 else 1
        for _ in range(burst):
            await feed(next(items))
        await asyncio.sleep(rng.expovariate(rate))
