"""Ingest throughput: OpenCanary and Cowrie lines from the TCP ingest to delivery, against the
parse and normalize cost alone; and live latency while a large burst comes in.

``python -m bench.ingest`` (also run by ``python -m bench``):

- **limit**: in this process, each line through ``ingest.parse_line`` alone (**parse**: read,
  check and normalize one line), then through ``parse_line``, ``normalize_event`` and
  ``serialize_event`` (what the node does again before routing), as lines/s; for OpenCanary,
  Cowrie and the StandardEvent lines ``bench.redis_bench`` sends.
- **delivery**: a fresh runner, N subscribers of ``events`` (where both kinds go), L lines
  written to the TCP ingest in one ``sendall``; lines/s = L / time until the last subscriber
  has all L (``--ingest-lines`` with 1 subscriber, a quarter of it with 2,000).
- **burst vs live**: the bench's steady feed (50 events/s with ``data.sent_at``) on one ingest
  connection, alone and then while another connection writes a 100,000-line OpenCanary burst;
  the probes' p99 of the steady events in both.
"""

from __future__ import annotations

import argparse
import json
import secrets
import socket
import threading
import time
from typing import Any

import orjson

from bench.feeder import Feeder
from bench.run import Clients, connect, parse_args, percentile
from bench.servers import Server
from bench.worker import raise_fd_limit

#: The runner's per-connection outbound bound here (default 1 MiB): a whole burst may wait for
#: a subscriber without a 4009 close. Frames are shared by every subscriber, so this costs the
#: burst's size once, not once per subscriber.
QUEUE_BOUND = {"websocket.queue.max_bytes": 64 * 1024 * 1024}


def standard_event(n: int) -> dict[str, Any]:
    """A StandardEvent as a NetSentinel producer sends it (about 450 bytes of JSON);
    ``data.sent`` is the time it was made, for latency."""
    data = {"n": n, "sent": time.time(), "src_ip": "203.0.113.7", "pad": "x" * 300}
    return {
        "id": f"b-{n}",
        "event_type": "honeypot.ssh.login",
        "severity": "info",
        "source": "bench",
        "data": data,
    }


def standard_line(n: int) -> bytes:
    return orjson.dumps(standard_event(n))


def opencanary_line(n: int) -> bytes:
    """An OpenCanary SSH login record as its SocketJSONHandler writes it (392 bytes)."""
    return orjson.dumps(
        {
            "dst_host": "10.0.0.5",
            "dst_port": 22,
            "local_time": "2026-11-24 19:11:10.123456",
            "local_time_adjusted": "2026-11-24 20:11:10.123456",
            "logdata": {
                "LOCALVERSION": "SSH-2.0-OpenSSH_5.1p1 Debian-5",
                "PASSWORD": f"hunter{n}",
                "REMOTEVERSION": "SSH-2.0-libssh2_1.10.0",
                "USERNAME": "root",
            },
            "logtype": 4002,
            "node_id": "canary-dmz-1",
            "src_host": "203.0.113.7",
            "src_port": 1024 + n % 60000,
            "utc_time": "2026-11-24 19:11:10.123456",
        }
    )


def cowrie_line(n: int) -> bytes:
    """A Cowrie failed-login record as its JSON output writes it (about 250 bytes)."""
    return orjson.dumps(
        {
            "eventid": "cowrie.login.failed",
            "username": "root",
            "password": f"pass{n}",
            "message": f"login attempt [root/pass{n}] failed",
            "sensor": "cowrie-1",
            "timestamp": "2026-11-24T19:11:10.123456Z",
            "src_ip": "203.0.113.7",
            "session": f"{n:012x}",
            "protocol": "ssh",
        }
    )


LINES = {"opencanary": opencanary_line, "cowrie": cowrie_line}
#: What the parse cost is measured on: the delivery cases' lines and StandardEvent lines.
PARSED = {**LINES, "standard": standard_line}


def limit(kind: str, count: int = 20_000, rounds: int = 5) -> dict[str, float]:
    """Lines/s through ``parse_line`` alone (``parse``), and through parse, normalize and
    serialize (``limit``), in this process: the best of ``rounds`` (CPU time, so other jobs on
    the machine cost less of the figure)."""
    from netsentinel_websocket.events import normalize_event, serialize_event
    from netsentinel_websocket.ingest import parse_line

    lines = [PARSED[kind](n) for n in range(count)]
    best = {"parse": 0.0, "limit": 0.0}
    for _ in range(rounds):
        started = time.process_time()
        for line in lines:
            parse_line(line)
        parsed = time.process_time()
        for line in lines:
            serialize_event(normalize_event(parse_line(line)), 1 << 20)
        done = time.process_time()
        best["parse"] = max(best["parse"], count / max(parsed - started, 1e-9))
        best["limit"] = max(best["limit"], count / max(done - parsed, 1e-9))
    return best


def delivery(kind: str, subscribers: int, count: int, args: argparse.Namespace) -> dict[str, Any]:
    """Lines/s from one ``sendall`` of ``count`` lines to the last subscriber having them all."""
    server = Server("netsentinel", secrets.token_hex(16), args.out, settings=dict(QUEUE_BOUND))
    server.start()
    clients = Clients(1, args.loop)
    try:
        connect(clients, server, subscribers, args)
        payload = b"".join(LINES[kind](n) + b"\n" for n in range(count))
        clients.call("arm", {"target": count})
        with socket.create_connection(("127.0.0.1", server.ingest_port)) as sock:
            cpu0, started = server.cpu_seconds(), time.time()
            sock.sendall(payload)
            answers = clients.call("collect", {"timeout": 120.0})
        complete = all(a["complete"] == a["subscribers"] for a in answers)
        finished = max(a["last_done"] for a in answers) if complete else time.time()
        return {
            "kind": kind,
            "subscribers": subscribers,
            "lines": count,
            "complete": complete,
            "lines_per_s": count / (finished - started),
            "server_cpu_pct": 100 * (server.cpu_seconds() - cpu0) / (finished - started),
        }
    finally:
        clients.call("close", {})
        clients.stop()
        server.stop()


def write_lines(sock: socket.socket, payload: list[bytes], rate: float) -> None:
    """``payload`` to ``sock``: at once when ``rate`` is 0, else ``rate`` lines a second
    (in 1 ms ticks)."""
    if not rate:
        sock.sendall(b"".join(payload))
        return
    start, sent, tick = time.monotonic(), 0, max(1, int(rate / 1000))
    while sent < len(payload):
        sock.sendall(b"".join(payload[sent : sent + tick]))
        sent += tick
        ahead = start + sent / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)


def burst_vs_live(subscribers: int, burst: int, args: argparse.Namespace) -> dict[str, Any]:
    """The steady feed's p99 alone, then while a ``burst``-line OpenCanary burst comes in (at
    once, or at ``--ingest-burst-rate`` lines/s with the steady feed lasting as long)."""
    server = Server("netsentinel", secrets.token_hex(16), args.out, settings=dict(QUEUE_BOUND))
    server.start()
    clients = Clients(1, args.loop)
    feeder = Feeder("127.0.0.1", server.ingest_port, 500)
    try:
        connect(clients, server, subscribers, args)
        rate = args.ingest_burst_rate
        result: dict[str, Any] = {
            "subscribers": subscribers,
            "burst_lines": burst,
            "burst_rate": rate or None,
        }
        for label, lines in (("alone", 0), ("during_burst", burst)):
            duration = max(args.duration, lines / rate) if rate else args.duration
            steady_count = int(args.rate * duration)
            clients.call("arm", {"target": steady_count + lines})
            writer = None
            if lines:
                payload = [opencanary_line(n) + b"\n" for n in range(lines)]
                sock = socket.create_connection(("127.0.0.1", server.ingest_port))
                writer = threading.Thread(target=write_lines, args=(sock, payload, rate))
                writer.start()
            feeder.steady(args.rate, duration)
            if writer is not None:
                writer.join()
                sock.close()
            answers = clients.call("collect", {"timeout": 60.0})
            latencies = [x * 1000 for a in answers for x in a["latencies"]]
            result[label] = {
                "p50_ms": percentile(latencies, 0.5),
                "p99_ms": percentile(latencies, 0.99),
                "max_ms": max(latencies, default=float("nan")),
                "lost": (steady_count + lines) * subscribers - sum(a["events"] for a in answers),
            }
        return result
    finally:
        feeder.close()
        clients.call("close", {})
        clients.stop()
        server.stop()


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Everything above, printed as it comes."""
    out: dict[str, Any] = {"parse": {}, "limit": {}, "delivery": [], "burst_vs_live": None}
    for kind in PARSED:
        rates = limit(kind)
        out["parse"][kind], out["limit"][kind] = rates["parse"], rates["limit"]
        print(
            f"{kind}: parse alone {rates['parse']:,.0f} lines/s, "
            f"parse+normalize+serialize alone {rates['limit']:,.0f} lines/s",
            flush=True,
        )
    for kind in LINES if args.ingest_lines else ():
        for subs, lines in ((1, args.ingest_lines), (2000, args.ingest_lines // 4)):
            case = delivery(kind, subs, lines, args)
            out["delivery"].append(case)
            print(json.dumps(case), flush=True)
    out["burst_vs_live"] = burst_vs_live(100, args.ingest_burst, args)
    print(json.dumps(out["burst_vs_live"]), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    raise_fd_limit()
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    result = run(args)
    (args.out / "ingest.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
