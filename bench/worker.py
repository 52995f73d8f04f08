"""A client process holding a share of the subscribers, driven by the orchestrator over a pipe.

Several of these run side by side so that one Python process's speed does not cap what the
server can be measured at; each reports the CPU it used so the run can show it was not the limit.
"""

from __future__ import annotations

import asyncio
import resource
import time
from multiprocessing.connection import Connection
from typing import Any

import jwt

from bench.wsclient import Subscriber, handshake_request


def raise_fd_limit() -> int:
    """Lift the soft descriptor limit to the hard one; 10,000 sockets need it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def mint(secret: str, subject: str, ttl: float = 3600.0) -> str:
    """A token the way the project's ``token`` command makes one (HS256, every channel)."""
    claims = {"sub": subject, "exp": int(time.time() + ttl), "scope": "channel:*"}
    return jwt.encode(claims, secret, algorithm="HS256")


class Worker:
    """Executes one command at a time and sends back a dict of results."""

    def __init__(self, pipe: Connection, index: int) -> None:
        self.pipe, self.index = pipe, index
        self.subs: list[Subscriber] = []
        self.commands: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self.done = 0
        self.all_done = asyncio.Event()
        self.armed_cpu = 0.0
        self.armed_at = 0.0
        self.serial = 0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.pipe.fileno(), lambda: self.commands.put_nowait(self.pipe.recv()))
        while True:
            name, args = await self.commands.get()
            if name == "stop":
                self.pipe.send({})
                return
            try:
                result = await getattr(self, f"cmd_{name}")(**args)
            except Exception as exc:  # noqa: BLE001 - reported to the orchestrator
                result = {"error": f"{type(exc).__name__}: {exc}"}
            self.pipe.send(result)

    def _reached(self, _sub: Subscriber) -> None:
        self.done += 1
        if self.done >= len(self.subs):
            self.all_done.set()

    def _handshake(
        self, host: str, port: int, path: str, secret: str, deflate: bool
    ) -> tuple[bytes, bytes]:
        """A new subscriber's own token and handshake request (made before the clock runs)."""
        self.serial += 1
        token = mint(secret, f"bench-{self.index}-{self.serial}")
        return handshake_request(host, port, path, token, deflate)

    async def _open(
        self, host: str, port: int, handshake: tuple[bytes, bytes], probe: bool, timeout: float
    ) -> Subscriber:
        request, accept = handshake
        loop = asyncio.get_running_loop()
        _, sub = await asyncio.wait_for(
            loop.create_connection(
                lambda: Subscriber(request, accept, probe, self._reached), host, port
            ),
            timeout,
        )
        await asyncio.wait_for(sub.opened, timeout)
        return sub

    async def _bounded(self, jobs: list[Any], concurrency: int) -> list[Any]:
        gate = asyncio.Semaphore(concurrency)

        async def one(job: Any) -> Any:
            async with gate:
                return await job

        return await asyncio.gather(*(one(j) for j in jobs), return_exceptions=True)

    async def cmd_connect(
        self,
        host: str,
        port: int,
        path: str,
        secret: str,
        count: int,
        probes: int,
        concurrency: int,
        timeout: float,
        deflate: bool = False,
    ) -> dict[str, Any]:
        """Open ``count`` sessions (handshake and welcome), ``probes`` of them spread evenly;
        ``deflate``: offering permessage-deflate."""
        chosen = {i * count // probes for i in range(probes)}
        # Tokens are minted first: signing is the client's work, not the connect being measured.
        handshakes = [self._handshake(host, port, path, secret, deflate) for _ in range(count)]
        started, cpu = time.time(), cpu_seconds()
        jobs = [
            self._open(host, port, shake, i in chosen, timeout)
            for i, shake in enumerate(handshakes)
        ]
        results = await self._bounded(jobs, concurrency)
        finished = time.time()
        opened = [r for r in results if isinstance(r, Subscriber)]
        errors = [repr(r) for r in results if not isinstance(r, Subscriber)]
        self.subs.extend(opened)
        return {
            "ok": len(opened),
            "failed": len(errors),
            "errors": errors[:3],
            "started": started,
            "finished": finished,
            "cpu": cpu_seconds() - cpu,
        }

    async def cmd_subscribe(
        self, channels: list[str], concurrency: int, timeout: float
    ) -> dict[str, Any]:
        started = time.time()
        results = await self._bounded(
            [s.subscribe(channels, timeout) for s in self.subs], concurrency
        )
        errors = [repr(r) for r in results if isinstance(r, BaseException)]
        return {
            "ok": len(results) - len(errors),
            "failed": len(errors),
            "errors": errors[:3],
            "started": started,
            "finished": time.time(),
        }

    async def cmd_arm(self, target: int) -> dict[str, Any]:
        """Zero the counters; ``collect`` then waits for every subscriber to see ``target``."""
        self.done = 0
        self.all_done.clear()
        for sub in self.subs:
            sub.reset(target)
        self.armed_cpu, self.armed_at = cpu_seconds(), time.time()
        return {"armed": len(self.subs)}

    async def cmd_collect(self, timeout: float) -> dict[str, Any]:
        try:
            await asyncio.wait_for(self.all_done.wait(), timeout)
        except TimeoutError:
            pass
        target = self.subs[0].target if self.subs else 0
        probes = [s for s in self.subs if s.probe]
        return {
            "subscribers": len(self.subs),
            "complete": sum(1 for s in self.subs if s.done_at),
            "events": sum(s.events for s in self.subs),
            "missing": sum(max(0, target - s.events) for s in self.subs),
            "last_done": max((s.done_at for s in self.subs), default=0.0),
            "closed": sum(1 for s in self.subs if s.transport is None),
            "close_codes": sorted({s.close_code for s in self.subs if s.close_code}),
            "latencies": [x for p in probes for x in p.latencies],
            "order_errors": sum(p.order_errors for p in probes),
            "cpu": cpu_seconds() - self.armed_cpu,
            "wall": time.time() - self.armed_at,
            "wire_bytes": sum(s.wire_bytes for s in self.subs),
        }

    async def cmd_close(self) -> dict[str, Any]:
        for sub in self.subs:
            sub.close()
        self.subs = []
        await asyncio.sleep(0.2)
        return {}

    async def cmd_churn(
        self,
        host: str,
        port: int,
        path: str,
        secret: str,
        cycles: int,
        channels: list[str],
        concurrency: int,
        timeout: float,
    ) -> dict[str, Any]:
        """Connect, subscribe and close ``cycles`` sessions, for the memory-flatness check."""

        async def cycle() -> None:
            handshake = self._handshake(host, port, path, secret, False)
            sub = await self._open(host, port, handshake, False, timeout)
            try:
                await sub.subscribe(channels, timeout)
            finally:
                sub.close()

        started = time.time()
        results = await self._bounded([cycle() for _ in range(cycles)], concurrency)
        errors = [repr(r) for r in results if isinstance(r, BaseException)]
        return {
            "ok": cycles - len(errors),
            "failed": len(errors),
            "errors": errors[:3],
            "elapsed": time.time() - started,
        }


def worker_main(pipe: Connection, index: int, loop: str) -> None:
    """Process entry point; uvloop's C read path halves the client's cost per frame."""
    raise_fd_limit()
    if loop == "uvloop":
        import uvloop

        uvloop.run(Worker(pipe, index).run())
    else:
        asyncio.run(Worker(pipe, index).run())
