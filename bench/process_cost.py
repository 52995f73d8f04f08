"""Cost of the processor's ``process(event)`` with few and with many subscribers.

The contract says ``process`` never waits on subscribers, so its cost must not grow with their
number. This loads the plugin through pluggy exactly as a NetSentinel host does, serves its
routes in this process, connects real subscribers from a client process, and times each
``await processor.process(event)`` call (the fan-out that follows runs later in the loop turn and
is not part of the call). Run it alone with ``python -m bench.process_cost``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import inspect
import secrets
import statistics
import time
from typing import Any

import pluggy
import tornado.web

from bench.feeder import CHANNEL, make_event
from bench.run import Clients, default_loop
from bench.servers import free_port
from bench.worker import raise_fd_limit


def load_plugin(config: dict[str, Any]) -> tuple[pluggy.PluginManager, list[Any], list[Any]]:
    """Configure the plugin and collect its routes and processors through the hooks."""
    from netsentinel_websocket import hookspecs

    manager = pluggy.PluginManager("netsentinel")
    manager.add_hookspecs(hookspecs)
    if not manager.load_setuptools_entrypoints("netsentinel"):  # not pip-installed: a checkout
        manager.register(importlib.import_module("netsentinel_websocket.plugin"))
    manager.hook.netsentinel_configure(config=config)
    routes = [r for rs in manager.hook.netsentinel_web_routes(config=config) for r in rs]
    processors = [p for ps in manager.hook.netsentinel_processors(config=config) for p in ps]
    return manager, routes, processors


async def settle(results: Any) -> None:
    """Await what async hooks returned (a list, or one result for a firstresult hook)."""
    for result in results if isinstance(results, list) else [results]:
        if inspect.isawaitable(result):
            await result


async def time_calls(
    processor: Any, clients: Clients, seq: int, batches: int, batch: int
) -> list[float]:
    """Microseconds per call; each batch is delivered to every subscriber before the next."""
    loop = asyncio.get_running_loop()
    samples: list[float] = []
    for _ in range(batches):
        await loop.run_in_executor(None, clients.call, "arm", {"target": batch})
        events = [make_event(seq + i, 500) for i in range(batch)]
        seq += batch
        for event in events:
            started = time.perf_counter_ns()
            await processor.process(event)
            samples.append((time.perf_counter_ns() - started) / 1000)
        answers = await loop.run_in_executor(None, clients.call, "collect", {"timeout": 60.0})
        if any(a["complete"] < a["subscribers"] for a in answers):
            raise RuntimeError("events were not delivered to every subscriber")
    return samples


async def measure(
    clients: Clients, counts: list[int], batches: int, batch: int
) -> list[dict[str, Any]]:
    secret = secrets.token_hex(16)
    config = {
        "websocket.enabled": True,
        "websocket.auth.jwt.secret": secret,
        "websocket.auth.jwt.algorithms": ["HS256"],
        "websocket.limits.max_connections": 20000,
        "websocket.limits.per_ip": 20000,
        "websocket.limits.per_subject": 20000,
    }
    manager, routes, processors = load_plugin(config)
    port = free_port()
    app = tornado.web.Application(routes)
    server = app.listen(port, "127.0.0.1", backlog=1024)
    await settle(manager.hook.netsentinel_startup(app=app))
    processor = processors[0]
    await processor.start()
    loop = asyncio.get_running_loop()
    results, connected = [], 0
    try:
        for count in counts:
            shares = clients.shares(count - connected)
            target = {
                "host": "127.0.0.1",
                "port": port,
                "path": "/ws",
                "secret": secret,
                "probes": 0,
                "concurrency": 128,
                "timeout": 30.0,
            }
            await loop.run_in_executor(
                None, clients.call, "connect", [{**target, "count": n} for n in shares]
            )
            await loop.run_in_executor(
                None,
                clients.call,
                "subscribe",
                {"channels": [CHANNEL], "concurrency": 128, "timeout": 30.0},
            )
            connected = count
            await time_calls(processor, clients, 0, 1, batch)  # warm-up
            samples = await time_calls(processor, clients, 10_000 * count, batches, batch)
            samples.sort()
            results.append(
                {
                    "subscribers": count,
                    "calls": len(samples),
                    "median_us": statistics.median(samples),
                    "p99_us": samples[int(0.99 * len(samples))],
                    "mean_us": statistics.fmean(samples),
                }
            )
    finally:
        await processor.stop()
        await settle(manager.hook.netsentinel_shutdown(app=app))
        server.stop()
    return results


def run(
    counts: list[int], batches: int = 20, batch: int = 100, gc_threshold: int | None = None
) -> list[dict[str, Any]]:
    """Client processes are forked before the event loop starts, then the server runs here.

    ``gc_threshold`` sets the collector's youngest-generation threshold for the run, as the
    runner does with ``server.gc_threshold`` (None keeps the interpreter's, as a host might)."""
    raise_fd_limit()
    clients = Clients(1, default_loop())
    saved = gc.get_threshold()
    if gc_threshold is not None:
        gc.set_threshold(gc_threshold, *saved[1:])
    try:
        rows = asyncio.run(measure(clients, counts, batches, batch))
    finally:
        gc.set_threshold(*saved)
        clients.call("close", {})
        clients.stop()
    used = saved[0] if gc_threshold is None else gc_threshold  # 0 (collection off) is a value
    return [{**row, "gc_threshold": used} for row in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subs", default="10,10000", help="subscriber counts, ascending")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument(
        "--gc-threshold",
        type=int,
        default=None,
        help="collector gen-0 threshold (default: Python's)",
    )
    args = parser.parse_args()
    subs = [int(n) for n in args.subs.split(",")]
    for row in run(subs, args.batches, args.batch, args.gc_threshold):
        print(
            f"gc {row['gc_threshold']:>6}, {row['subscribers']:>6} subscribers: "
            f"median {row['median_us']:.1f} us, "
            f"p99 {row['p99_us']:.1f} us, mean {row['mean_us']:.1f} us "
            f"({row['calls']} calls)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
