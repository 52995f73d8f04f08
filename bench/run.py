"""One command for the whole comparison: ``python -m bench`` (see docs/performance.md).

For each subscriber count and each server: start a fresh server, connect the subscribers from
several client processes (connect rate, memory per connection), subscribe them, then measure
bursts (E events at once until every subscriber has all E) and a steady feed at a fixed rate
(arrival latency at the probes, lost events). Results go to a printed table, JSON, a markdown
table and a PNG plot in bench/results/.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import multiprocessing
import os
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.feeder import CHANNEL, Feeder
from bench.servers import (
    REDIS,
    ROOT,
    SERVERS,
    Server,
    machine_busy,
    node_peer_available,
    runner_available,
    runner_version,
)
from bench.worker import raise_fd_limit, worker_main

RESULTS = ROOT / "bench" / "results"


def default_loop() -> str:
    """uvloop where installed: the client's own cost per frame is then about half."""
    return "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"


def setting(text: str) -> tuple[str, Any]:
    """``KEY=JSON`` from the command line (a bare word is taken as a string)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=JSON, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help="comma list of %(default)s (netsentinel is skipped if not installed)",
    )
    p.add_argument("--subs", default="100,1000,2000", help="subscriber counts, comma list")
    p.add_argument("--events", type=int, default=200, help="events per burst")
    p.add_argument("--size", type=int, default=500, help="bytes of JSON per event")
    p.add_argument("--rounds", type=int, default=5, help="bursts per case (median reported)")
    p.add_argument("--rate", type=float, default=50.0, help="steady events per second")
    p.add_argument("--duration", type=float, default=5.0, help="steady feed seconds (0: skip)")
    p.add_argument("--drain", type=float, default=5.0, help="wait after the steady feed")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="client processes (on 2 cores, more take CPU from the server)",
    )
    p.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default=default_loop(),
        help="client event loop (default %(default)s)",
    )
    p.add_argument("--probes", type=int, default=16, help="parsing, timing subscribers")
    p.add_argument("--concurrency", type=int, default=128, help="handshakes in flight")
    p.add_argument("--timeout", type=float, default=120.0, help="limit for one burst")
    p.add_argument(
        "--soak",
        action="store_true",
        help="memory flatness: many events and connect/disconnect cycles",
    )
    p.add_argument("--soak-subs", type=int, default=100)
    p.add_argument("--soak-events", type=int, default=100_000)
    p.add_argument("--soak-cycles", type=int, default=10_000)
    p.add_argument(
        "--set",
        action="append",
        type=setting,
        default=[],
        metavar="KEY=JSON",
        help="a configuration key for the netsentinel runner, e.g. server.gc_threshold=700 "
        "(repeatable); server.workers=N above 1 gets the Redis broker of --redis with a key "
        "prefix of its own unless websocket.broker is set too",
    )
    p.add_argument(
        "--redis",
        default=REDIS,
        help="the Redis that several netsentinel workers share (default %(default)s)",
    )
    p.add_argument(
        "--process-cost",
        action="store_true",
        help="also time processor.process(event) in-process at 10 and 10,000 subs",
    )
    p.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        metavar="JSON",
        help="measure nothing: merge earlier results.json files into one table/plot",
    )
    p.add_argument(
        "--deflate-subs",
        default="1000",
        help="subscriber counts at which netsentinel is also measured with subscribers that "
        "offer permessage-deflate, against plain ones, on events of varied words "
        "(comma list; empty: skip)",
    )
    p.add_argument(
        "--history-kept",
        type=int,
        default=10_000,
        help="events kept for bench.history_memory (RSS per event kept; 0: skip)",
    )
    p.add_argument(
        "--ingest-lines",
        type=int,
        default=20_000,
        help="OpenCanary and Cowrie lines per ingest throughput case (0: skip bench.ingest)",
    )
    p.add_argument(
        "--ingest-burst",
        type=int,
        default=100_000,
        help="lines of the ingest burst written beside the steady feed",
    )
    p.add_argument(
        "--ingest-burst-rate",
        type=float,
        default=0.0,
        help="write the burst at this many lines/s instead of at once (0: at once); the "
        "steady feed then lasts as long as the burst",
    )
    p.add_argument("--out", type=Path, default=RESULTS, help="directory for JSON, table, PNG")
    p.add_argument("--plot", type=Path, help="also write the PNG plot here")
    return p.parse_args(argv)


class Clients:
    """The client processes; a command goes to all of them and their answers are gathered."""

    def __init__(self, count: int, loop: str) -> None:
        ctx = multiprocessing.get_context("fork")
        self.pipes, self.procs = [], []
        for index in range(count):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(child, index, loop), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    def send(self, name: str, per_worker: list[dict[str, Any]] | dict[str, Any]) -> None:
        for i, pipe in enumerate(self.pipes):
            pipe.send((name, per_worker[i] if isinstance(per_worker, list) else per_worker))

    def gather(self) -> list[dict[str, Any]]:
        answers = [pipe.recv() for pipe in self.pipes]
        for answer in answers:
            if "error" in answer:
                raise RuntimeError(f"client worker: {answer['error']}")
        return answers

    def call(
        self, name: str, per_worker: list[dict[str, Any]] | dict[str, Any]
    ) -> list[dict[str, Any]]:
        self.send(name, per_worker)
        return self.gather()

    def shares(self, total: int) -> list[int]:
        n = len(self.pipes)
        return [total // n + (1 if i < total % n else 0) for i in range(n)]

    def stop(self) -> None:
        self.call("stop", {})
        for proc in self.procs:
            proc.join(5)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def connect(
    clients: Clients,
    server: Server,
    count: int,
    args: argparse.Namespace,
    deflate: bool = False,
) -> dict[str, Any]:
    """Open ``count`` sessions across the workers, then subscribe them all to the bench channel
    (``deflate``: the subscribers offer permessage-deflate, as browsers do)."""
    shares = clients.shares(count)
    probes = clients.shares(min(args.probes, count))
    per = max(1, args.concurrency // len(shares))
    target = {
        "host": "127.0.0.1",
        "port": server.port,
        "path": "/ws",
        "secret": server.secret,
        "timeout": 30.0,
        "deflate": deflate,
    }
    cpu0 = server.cpu_seconds()
    answers = clients.call(
        "connect",
        [
            {**target, "count": shares[i], "probes": probes[i], "concurrency": per}
            for i in range(len(shares))
        ],
    )
    server_cpu = server.cpu_seconds() - cpu0  # the server idles while the workers mint tokens
    ok = sum(a["ok"] for a in answers)
    elapsed = max(a["finished"] for a in answers) - min(a["started"] for a in answers)

    def per_second(amount: float) -> float:
        return amount / elapsed if elapsed > 0 else float("nan")

    subscribed = clients.call(
        "subscribe", {"channels": [CHANNEL], "concurrency": per, "timeout": 30.0}
    )
    errors = [e for a in answers + subscribed for e in a["errors"]]
    return {
        "connected": ok,
        "connect_failed": count - ok,
        "connect_per_s": per_second(ok),
        "connect_server_cpu_pct": 100 * per_second(server_cpu),
        "connect_client_cpu_pct": 100 * per_second(sum(a["cpu"] for a in answers)),
        "subscribed": sum(s["ok"] for s in subscribed),
        "errors": errors[:5],
    }


def burst(
    clients: Clients,
    server: Server,
    feeder: Feeder,
    events: int,
    timeout: float,
) -> dict[str, Any]:
    """E events in one write; time until the last subscriber has all E."""
    armed = sum(a["armed"] for a in clients.call("arm", {"target": events}))
    cpu0, busy0 = server.cpu_seconds(), machine_busy()
    started = feeder.burst(events)
    answers = clients.call("collect", {"timeout": timeout})
    server_cpu = server.cpu_seconds() - cpu0
    busy1 = machine_busy()
    received = sum(a["events"] for a in answers)
    wire = sum(a["wire_bytes"] for a in answers)
    complete = all(a["complete"] == a["subscribers"] for a in answers)
    finished = max(a["last_done"] for a in answers) if complete else time.time()
    seconds = finished - started
    return {
        "subscribers": armed,
        "deliveries": received,
        "seconds": seconds,
        "deliveries_per_s": received / seconds,
        "complete": complete,
        "missing": sum(a["missing"] for a in answers),
        "client_cpu_pct": 100 * sum(a["cpu"] for a in answers) / seconds,
        "server_cpu_pct": 100 * server_cpu / seconds,
        "server_cpu_us_per_delivery": 1e6 * server_cpu / max(1, received),
        "wire_bytes_per_delivery": wire / max(1, received),
        "machine_busy_pct": 100 * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]),
        "close_codes": sorted({c for a in answers for c in a["close_codes"]}),
    }


def steady(
    clients: Clients,
    server: Server,
    feeder: Feeder,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """A fixed event rate; latency from ``data.sent_at`` at the probes, losses everywhere."""
    count = int(args.rate * args.duration)
    armed = sum(a["armed"] for a in clients.call("arm", {"target": count}))
    cpu0, started, busy0 = server.cpu_by_process(), time.time(), machine_busy()
    feeder.steady(args.rate, args.duration)
    answers = clients.call("collect", {"timeout": args.drain})
    wall = time.time() - started
    cpu1, busy1 = server.cpu_by_process(), machine_busy()
    by_process = {pid: 100 * (cpu1[pid] - cpu0.get(pid, 0.0)) / wall for pid in cpu1}
    latencies = [x * 1000 for a in answers for x in a["latencies"]]
    return {
        "events": count,
        "subscribers": armed,
        "lost": count * armed - sum(a["events"] for a in answers),
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies, default=float("nan")),
        "samples": len(latencies),
        "order_errors": sum(a["order_errors"] for a in answers),
        "client_cpu_pct": 100 * sum(a["cpu"] for a in answers) / wall,
        "server_cpu_pct": sum(by_process.values()),
        # the parent first, then the workers in start order: how evenly they share the work
        "server_cpu_pct_by_process": [round(by_process[pid], 1) for pid in sorted(by_process)],
        "machine_busy_pct": 100 * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]),
    }


def run_case(
    name: str,
    count: int,
    args: argparse.Namespace,
    workdir: Path,
    deflate: bool = False,
    varied: bool = False,
) -> dict[str, Any]:
    """One server at one subscriber count, from a fresh start (``deflate``: subscribers that
    offer permessage-deflate; ``varied``: events padded with words, not ``x``)."""
    server = Server(name, secrets.token_hex(16), workdir, settings=dict(args.set), redis=args.redis)
    server.start()
    clients = Clients(args.workers, args.loop)
    feeder = Feeder("127.0.0.1", server.ingest_port, args.size, varied)
    try:
        time.sleep(0.5)
        rss_base = server.rss_kb()
        result: dict[str, Any] = {
            "server": name,
            "deflate": deflate,
            "varied": varied,
            "subscribers": count,
            "server_workers": server.workers,
            "rss_base_kb": rss_base,
            "loadavg_1m": os.getloadavg()[0],
        }  # others sharing the cores
        result.update(connect(clients, server, count, args, deflate))
        time.sleep(0.5)
        rss = server.rss_kb()
        result["rss_connected_kb"] = rss
        result["kb_per_conn"] = (rss - rss_base) / max(1, result["connected"])
        result["warmup"] = burst(clients, server, feeder, 5, 30.0)
        result["bursts"] = [
            burst(clients, server, feeder, args.events, args.timeout) for _ in range(args.rounds)
        ]
        rates = [b["deliveries_per_s"] for b in result["bursts"]]
        result["burst_per_s"] = statistics.median(rates) if rates else float("nan")
        if args.duration > 0:
            result["steady"] = steady(clients, server, feeder, args)
        result["rss_end_kb"] = server.rss_kb()
        return result
    finally:
        feeder.close()
        clients.call("close", {})
        clients.stop()
        server.stop()


def soak(name: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """RSS after warm-up against RSS after many events and connect/disconnect cycles."""
    server = Server(name, secrets.token_hex(16), workdir, settings=dict(args.set), redis=args.redis)
    server.start()
    clients = Clients(args.workers, args.loop)
    feeder = Feeder("127.0.0.1", server.ingest_port, args.size)
    try:
        connect(clients, server, args.soak_subs, args)
        rounds, batch = 20, 1000
        cycles = args.soak_cycles // rounds
        target = {
            "host": "127.0.0.1",
            "port": server.port,
            "path": "/ws",
            "secret": server.secret,
            "channels": [CHANNEL],
            "timeout": 30.0,
            "concurrency": max(1, args.concurrency // args.workers),
        }

        problems = {"incomplete_bursts": 0, "failed_cycles": 0}

        def exercise(events: int, churn: int) -> None:
            for _ in range(events // batch):
                if not burst(clients, server, feeder, batch, args.timeout)["complete"]:
                    problems["incomplete_bursts"] += 1
            answers = clients.call(
                "churn", [{**target, "cycles": c} for c in clients.shares(churn)]
            )
            problems["failed_cycles"] += sum(a["failed"] for a in answers)

        exercise(args.soak_events // rounds, cycles)  # warm-up: one round's worth
        time.sleep(1.0)
        warm = server.rss_kb()
        started = time.time()
        for _ in range(rounds):
            exercise(args.soak_events // rounds, cycles)
        time.sleep(1.0)
        end = server.rss_kb()
        return {
            "server": name,
            "subscribers": args.soak_subs,
            "events": args.soak_events,
            "cycles": args.soak_cycles,
            "rss_warm_kb": warm,
            "rss_end_kb": end,
            "growth_pct": 100 * (end - warm) / warm,
            "seconds": time.time() - started,
            **problems,
        }
    finally:
        feeder.close()
        clients.call("close", {})
        clients.stop()
        server.stop()


def fmt(value: float, digits: int = 0) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"


def table(cases: list[dict[str, Any]]) -> list[str]:
    """Markdown rows, also printed as the run's summary."""
    rows = [
        (
            "| server | subscribers | connects/s | KB/conn | burst deliveries/s | "
            "server CPU % | client CPU % | steady p50 ms | steady p99 ms | lost |"
        ),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in cases:
        s = c.get("steady", {})
        # CPU is read in 10 ms ticks: over a shorter burst the share means nothing
        short = statistics.median(b["seconds"] for b in c["bursts"]) < 0.1
        server_cpu = (
            math.nan if short else statistics.median(b["server_cpu_pct"] for b in c["bursts"])
        )
        client_cpu = (
            math.nan if short else statistics.median(b["client_cpu_pct"] for b in c["bursts"])
        )
        incomplete = "" if all(b["complete"] for b in c["bursts"]) else " (incomplete)"
        workers = c.get("server_workers", 1)
        label = c["server"] + (f" ({workers} workers)" if workers > 1 else "")
        rows.append(
            f"| {label} | {c['subscribers']:,} | {fmt(c['connect_per_s'])} | "
            f"{fmt(c['kb_per_conn'], 1)} | {fmt(c['burst_per_s'])}{incomplete} | "
            f"{fmt(server_cpu)} | {fmt(client_cpu)} | {fmt(s.get('p50_ms', float('nan')), 1)} | "
            f"{fmt(s.get('p99_ms', float('nan')), 1)} | {s.get('lost', '-')} |"
        )
    return rows


def bandwidth_table(cases: list[dict[str, Any]]) -> list[str]:
    """Bytes on the wire and server CPU per delivery, with and without permessage-deflate."""
    rows = [
        "| subscribers | permessage-deflate | wire bytes/delivery | server CPU us/delivery | "
        "burst deliveries/s | client CPU % | steady p99 ms | lost |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in cases:
        s = c.get("steady", {})
        bursts = c["bursts"]
        rows.append(
            f"| {c['subscribers']:,} | {'yes' if c['deflate'] else 'no'} | "
            f"{fmt(statistics.median(b['wire_bytes_per_delivery'] for b in bursts), 1)} | "
            f"{fmt(statistics.median(b['server_cpu_us_per_delivery'] for b in bursts), 2)} | "
            f"{fmt(c['burst_per_s'])} | "
            f"{fmt(statistics.median(b['client_cpu_pct'] for b in bursts))} | "
            f"{fmt(s.get('p99_ms', float('nan')), 1)} | {s.get('lost', '-')} |"
        )
    return rows


def plot(cases: list[dict[str, Any]], paths: list[Path]) -> None:
    """Deliveries/s against subscribers, one line per server, with the 500,000/s target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name in SERVERS:
        points = sorted((c["subscribers"], c["burst_per_s"]) for c in cases if c["server"] == name)
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=name)
    ax.axhline(500_000, color="grey", linestyle="--", linewidth=1, label="target 500,000/s")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("subscribers")
    ax.set_ylabel("burst deliveries per second")
    ax.set_title("WebSocket fan-out, one process, 2 cores shared with the client")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    for path in paths:
        fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_fd_limit()
    args.out.mkdir(parents=True, exist_ok=True)
    servers = [s for s in args.servers.split(",") if s]
    unknown = set(servers) - set(SERVERS)
    if unknown:
        sys.exit(f"unknown servers: {', '.join(sorted(unknown))}")
    if args.merge:
        merged = [case for path in args.merge for case in json.loads(path.read_text())["cases"]]
        merged.sort(key=lambda c: (c["subscribers"], SERVERS.index(c["server"])))
        publish(merged, args)
        return 0
    meta: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    if "netsentinel" in servers:
        if runner_available():
            meta["runner"] = runner_version()
        else:
            print("netsentinel runner not available; skipped", file=sys.stderr)
            servers.remove("netsentinel")
    if "ws-node" in servers and (why := node_peer_available()) is not None:
        print(f"ws-node peer skipped: {why}", file=sys.stderr)
        servers.remove("ws-node")
    cases: list[dict[str, Any]] = []
    soaks: list[dict[str, Any]] = []
    report = args.out / "results.json"
    for count in (int(n) for n in args.subs.split(",") if n):
        for name in servers:
            print(f"-- {name}, {count:,} subscribers", flush=True)
            case = run_case(name, count, args, args.out)
            cases.append(case)
            print("\n".join(table([case])[2:]), flush=True)
            report.write_text(json.dumps({"meta": meta, "cases": cases}, indent=2))
    bandwidth: list[dict[str, Any]] = []
    if "netsentinel" in servers:
        for count in (int(n) for n in args.deflate_subs.split(",") if n):
            for deflate in (False, True):
                print(f"-- netsentinel, {count:,} subscribers, deflate {deflate}", flush=True)
                bandwidth.append(run_case("netsentinel", count, args, args.out, deflate, True))
        if bandwidth:
            print("\n".join(bandwidth_table(bandwidth)), flush=True)
    history: dict[str, Any] = {}
    if "netsentinel" in servers and args.history_kept:
        from bench import history_memory

        history = history_memory.measure(args.history_kept, workdir=args.out)
        print(f"-- history memory: {json.dumps(history)}", flush=True)
    ingest: dict[str, Any] = {}
    if "netsentinel" in servers and args.ingest_lines:
        from bench import ingest as ingest_bench  # imports this module: load it only when asked

        print("-- ingest throughput", flush=True)
        ingest = ingest_bench.run(args)
    if args.soak:
        for name in servers:
            print(f"-- soak {name}", flush=True)
            soaks.append(soak(name, args, args.out))
            print(json.dumps(soaks[-1]), flush=True)
    costs: list[dict[str, Any]] = []
    if args.process_cost and "netsentinel" in servers:
        from bench import process_cost  # imports this module: load it only when asked
        from netsentinel_websocket.config import KEYS_BY_NAME

        # As a host with the interpreter's collector settings, then as the runner runs.
        runner_gc = KEYS_BY_NAME["server.gc_threshold"].default
        costs = process_cost.run([10, 10_000])
        costs += process_cost.run([10, 10_000], gc_threshold=runner_gc)
        print(json.dumps(costs), flush=True)
    report.write_text(
        json.dumps(
            {
                "meta": meta,
                "cases": cases,
                "bandwidth": bandwidth,
                "ingest": ingest,
                "history_memory": history,
                "soak": soaks,
                "process_cost": costs,
            },
            indent=2,
        )
    )
    publish(cases, args)
    print(f"results: {report}")
    return 0


def publish(cases: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """The markdown table (printed and in table.md) and the plot."""
    rows = table(cases)
    (args.out / "table.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))
    if cases and importlib.util.find_spec("matplotlib") is None:
        print("no plot: matplotlib is not installed", file=sys.stderr)
    elif cases:
        plot(cases, [args.out / "deliveries.png"] + ([args.plot] if args.plot else []))
