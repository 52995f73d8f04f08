"""Connects per second with no revocation in force and with 10,000 of them.

Every connection's token is checked against the revocations (two dictionary lookups), so the
rate must not depend on how many are in force. This starts ``netsentinel-websocket serve``
(memory broker), measures connects (handshake, token, ``welcome``, close) from this process,
puts 10,000 revocations in force through the admin API (half by subject, half by ``jti``; the
connecting tokens match none, so both lookups run), and measures again. It also times the
check alone. Run it with ``python -m bench.revocations``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

from netsentinel_websocket.auth import Principal, mint
from netsentinel_websocket.revocation import Revocations, new_revocation

SECRET = "bench-secret-0123456789-abcdefghij"


def start_server(tmp: Path) -> tuple[subprocess.Popen[str], int]:
    config = {
        "websocket.enabled": True,
        "websocket.auth.jwt.secret": SECRET,
        "websocket.limits.per_subject": 100_000,
        "websocket.limits.per_ip": 100_000,
        "websocket.heartbeat.interval": 0,
        "server.bind": "127.0.0.1",
        "server.port": 0,
    }
    path = tmp / "config.json"
    path.write_text(json.dumps(config))
    cmd = [sys.executable, "-m", "netsentinel_websocket", "serve", "--config", str(path)]
    with open(tmp / "serve.log", "w") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("READY "):
            return proc, int(line.split()[1])
    raise RuntimeError("serve did not start: " + (tmp / "serve.log").read_text())


async def connects_per_second(url: str, total: int, concurrency: int) -> float:
    token = mint(SECRET, "bench-user", "channel:*", 3600, extra={"jti": "bench-token"})
    auth = f"Bearer {token}"
    left = total

    async def one_client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            # A request of its own: the client writes its Sec-WebSocket-Key into the headers.
            conn = await websocket_connect(HTTPRequest(url, headers={"Authorization": auth}))
            welcome = await conn.read_message()
            assert welcome is not None and '"welcome"' in welcome, welcome
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    return total / (time.perf_counter() - started)


async def revoke_many(base: str, count: int, concurrency: int) -> float:
    admin = mint(SECRET, "bench-admin", "admin", 3600)
    client = AsyncHTTPClient(max_clients=concurrency)
    bodies = [{"sub": f"user-{n}"} if n % 2 else {"jti": f"token-{n}"} for n in range(count)]

    async def worker(part: list[dict[str, str]]) -> None:
        for body in part:
            response = await client.fetch(
                base + "/ws/admin/revoke",
                method="POST",
                body=json.dumps(body),
                headers={"Authorization": f"Bearer {admin}"},
            )
            assert response.code == 201

    started = time.perf_counter()
    await asyncio.gather(*(worker(bodies[i::concurrency]) for i in range(concurrency)))
    return count / (time.perf_counter() - started)


def check_cost(count: int, rounds: int = 200_000) -> float:
    """Nanoseconds per :meth:`Revocations.revoked` call with ``count`` revocations."""
    now = time.time()
    revocations = Revocations()
    for n in range(count):
        fields = {"sub": f"user-{n}"} if n % 2 else {"jti": f"token-{n}"}
        revocations.add(new_revocation(now, 86400, **fields), now)
    principal = Principal("bench-user", frozenset(), now + 3600, now - 1, "bench-token")
    started = time.perf_counter_ns()
    for _ in range(rounds):
        revocations.revoked(principal, now)
    return (time.perf_counter_ns() - started) / rounds


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_server(Path(tmp))
        try:
            url, base = f"ws://127.0.0.1:{port}/ws", f"http://127.0.0.1:{port}"
            await connects_per_second(url, 200, args.concurrency)  # warm up
            before = [
                await connects_per_second(url, args.connects, args.concurrency)
                for _ in range(args.rounds)
            ]
            rate = await revoke_many(base, args.revocations, 20)
            after = [
                await connects_per_second(url, args.connects, args.concurrency)
                for _ in range(args.rounds)
            ]
        finally:
            proc.terminate()
            proc.wait(10)
    for label, rates in (("no revocation", before), (f"{args.revocations} revocations", after)):
        rounds = ", ".join(f"{r:.0f}" for r in rates)
        print(f"connects/s, {label}: median {statistics.median(rates):.0f} (rounds {rounds})")
    print(f"revocations recorded/s through the admin API: {rate:.0f}")
    for count in (0, args.revocations):
        print(f"check alone, {count:>6} revocations: {check_cost(count):6.0f} ns")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.revocations", description=__doc__)
    parser.add_argument("--connects", type=int, default=2000, help="connections per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds before and after")
    parser.add_argument("--concurrency", type=int, default=20, help="clients at a time")
    parser.add_argument("--revocations", type=int, default=10_000)
    return parser.parse_args(argv)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    asyncio.run(main(parse()))
