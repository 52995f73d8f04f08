"""What the runner's RSS grows by per event kept for resume: ``python -m bench.history_memory``.

Two fresh ``serve`` processes take the same events through the TCP ingest, one keeping
``--kept`` events of the channel (``websocket.history.size``), one keeping none; the difference
of their RSS growth divided by ``--kept`` is what one kept event costs, set beside the size of
its JSON. Each is fed ``3 x --kept`` events, so the kept one has rolled its history over twice
(freed slots reused, as in a long run); no subscriber is connected.
"""

from __future__ import annotations

import argparse
import json
import secrets
import time
from pathlib import Path
from typing import Any

import orjson

from bench.feeder import Feeder, make_event
from bench.servers import ROOT, Server

RESULTS = ROOT / "bench" / "results"


def settle(server: Server, timeout: float = 60.0) -> None:
    """Wait until the server has stopped using CPU (everything fed is taken in)."""
    deadline = time.monotonic() + timeout
    last = server.cpu_seconds()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = server.cpu_seconds()
        if now - last < 0.02:
            return
        last = now


def growth_kb(kept: int, events: int, size: int, workdir: Path) -> int:
    """RSS growth of a runner keeping ``kept`` events per channel while fed ``events``."""
    settings = {"websocket.history.size": kept, "websocket.history.max_bytes": 0}
    server = Server("netsentinel", secrets.token_hex(16), workdir, settings=settings)
    server.start()
    feeder = Feeder("127.0.0.1", server.ingest_port, size)
    try:
        feeder.burst(200)  # warm-up: imports, first allocations, the ingest connection
        settle(server)
        before = server.rss_kb()
        for _ in range(events // 1000):
            feeder.burst(1000)
            time.sleep(0.05)
        settle(server)
        return server.rss_kb() - before
    finally:
        feeder.close()
        server.stop()


def measure(kept: int = 10_000, size: int = 230, workdir: Path = RESULTS) -> dict[str, Any]:
    """Bytes of RSS per kept event and per byte of its JSON."""
    workdir.mkdir(parents=True, exist_ok=True)
    events = 3 * kept
    keeping = growth_kb(kept, events, size, workdir)
    none = growth_kb(0, events, size, workdir)
    json_bytes = len(orjson.dumps(make_event(1, size)))
    per_event = (keeping - none) * 1024 / kept
    return {
        "kept": kept,
        "json_bytes": json_bytes,
        "rss_growth_kb_keeping": keeping,
        "rss_growth_kb_keeping_none": none,
        "bytes_per_kept_event": per_event,
        "ratio_to_json": per_event / json_bytes,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.history_memory", description=__doc__)
    p.add_argument("--kept", type=int, default=10_000, help="events kept (history.size)")
    p.add_argument("--size", type=int, default=230, help="bytes of JSON per event as fed")
    args = p.parse_args(argv)
    print(json.dumps(measure(args.kept, args.size), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
