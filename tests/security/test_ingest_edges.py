"""Attacks on the TCP ingest of a real ``serve``: each gets its documented refusal, costs no
event of a well-behaved feed (the Guard's pump and witness) and stays within a memory bound.

Bounds (docs/opencanary.md): a connection holds at most one partial line (``max_line_bytes``)
plus its stream buffer (256 KiB) and one read chunk (64 KiB), for at most ``idle_timeout``
seconds; at most ``max_connections`` connections are held at once.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

from ..conftest import WSClient, make_token
from .attack import Guard, attack_config

MIB = 1024 * 1024
KIB = 1024
#: What one held connection may cost beyond its partial line: stream buffer + read chunk.
PER_CONNECTION_EXTRA = 256 * KIB + 64 * KIB
IDLE = 2  # seconds: the smallest idle_timeout the configuration accepts is 1
#: What the witness feed itself costs while an attack runs: the pump's events (200/s, about
#: 3 KiB each in memory) fill the history (1000 kept) and the subscriber's buffers.
FEED = 4 * MIB


async def metrics(proc) -> dict[str, float]:
    """``/metrics`` samples of the ingest series, as ``name{reason}`` -> value."""
    body = (await AsyncHTTPClient().fetch(proc.http + "/metrics")).body.decode()
    out = {}
    for line in body.splitlines():
        if line.startswith("netsentinel_ws_ingest_"):
            name, value = line.rsplit(" ", 1)
            out[name.replace('reason="', "").replace('"', "")] = float(value)
    return out


async def subscribe_events(port: int) -> WSClient:
    """A subscriber of ``events`` (honeypot records), beside the Guard's witness."""
    request = HTTPRequest(
        f"ws://127.0.0.1:{port}/ws", headers={"Authorization": f"Bearer {make_token()}"}
    )
    client = WSClient(await websocket_connect(request))
    assert (await client.recv())["type"] == "welcome"
    reply = await client.request({"type": "subscribe", "id": 1, "channels": ["events"]})
    assert reply["type"] == "subscribed", reply
    return client


async def closed_after(reader: asyncio.StreamReader, began: float, timeout: float) -> float:
    """Seconds from ``began`` until the server closed the connection (EOF or reset)."""
    try:
        while await asyncio.wait_for(reader.read(65536), timeout):
            pass
    except ConnectionError:
        pass
    return time.monotonic() - began


async def write_quietly(writer: asyncio.StreamWriter, data: bytes) -> None:
    """Write what the server lets us write; a refused connection resets, which is expected."""
    try:
        writer.write(data)
        await writer.drain()
    except ConnectionError:
        pass


@pytest.mark.gen_test(timeout=40)
async def test_many_partial_lines_are_capped_and_timed_out(serve_process):
    """(a) 100 connections each holding a 1 MiB partial line: 20 fit under the cap (the pump
    holds the 21st slot), 80 are refused at accept, the 20 are closed IDLE seconds after their
    line began, and memory grows by at most 20 x (1 MiB + per-connection extra), the feed's own
    cost and 4 MiB of allocator slack (35 MiB; about 21.5 MiB measured)."""
    held, attackers = 20, 100
    proc = serve_process(
        attack_config(
            websocket__ingest__idle_timeout=IDLE, websocket__ingest__max_connections=held + 1
        )
    )
    bound_kib = (held * (MIB + PER_CONNECTION_EXTRA) + FEED + 4 * MIB) // KIB
    async with Guard(proc, rss_bound_kib=bound_kib):
        conns = [await asyncio.open_connection("127.0.0.1", proc.ingest_port) for _ in range(100)]
        began = time.monotonic()
        partial = b'{"event_type": "witness.tick", "data": {"pad": "' + b"x" * (MIB - KIB)
        await asyncio.gather(*(write_quietly(w, partial) for _, w in conns))
        closes = await asyncio.gather(*(closed_after(r, began, IDLE + 8) for r, _ in conns))
        for _, writer in conns:
            writer.close()
        seen = await metrics(proc)
    early = [t for t in closes if t < IDLE - 0.5]
    late = [t for t in closes if t >= IDLE - 0.5]
    assert len(early) == attackers - held and len(late) == held, sorted(closes)
    assert max(late) < IDLE + 4
    assert seen["netsentinel_ws_ingest_refused_total{too_many}"] == attackers - held
    assert seen["netsentinel_ws_ingest_refused_total{not_allowed}"] == 0
    assert seen["netsentinel_ws_ingest_closed_total{line_timeout}"] == held
    assert seen["netsentinel_ws_ingest_rejected_total{too_long}"] == held
    assert seen["netsentinel_ws_ingest_connections"] == 1  # the pump, still feeding


@pytest.mark.gen_test(timeout=30)
async def test_connections_from_outside_the_allowlist_are_refused(serve_process):
    """(b) Only 127.0.0.2 may send (the pump binds it); 127.0.0.1 is refused at accept, and
    nothing it sends becomes an event (the witness would see a foreign seq)."""
    proc = serve_process(attack_config(websocket__ingest__tcp_allow=["127.0.0.2/32"]))
    async with Guard(proc, rss_bound_kib=(FEED + MIB) // KIB, pump_source="127.0.0.2"):
        forged = json.dumps({"event_type": "witness.tick", "data": {"seq": 10**6}}).encode()
        began = time.monotonic()
        for _ in range(50):
            reader, writer = await asyncio.open_connection("127.0.0.1", proc.ingest_port)
            await write_quietly(writer, forged + b"\n")
            assert await closed_after(reader, began, 5) < 5
            writer.close()
        seen = await metrics(proc)
    assert seen["netsentinel_ws_ingest_refused_total{not_allowed}"] == 50
    assert seen["netsentinel_ws_ingest_refused_total{too_many}"] == 0
    assert seen["netsentinel_ws_ingest_connections"] == 1
    assert "ingest from 127.0.0.1: connection refused (not_allowed)" in proc.stderr_text()


@pytest.mark.gen_test(timeout=30)
async def test_idle_and_dripping_connections_are_closed(serve_process):
    """(c) Silent from the start, silent after a line, and a partial line dripped one byte at
    a time (bytes keep coming, the line never ends): each closed IDLE seconds after its last
    byte, or after its line's first byte; the pump, which never stops, is kept."""
    proc = serve_process(attack_config(websocket__ingest__idle_timeout=IDLE))
    async with Guard(proc, rss_bound_kib=(FEED + MIB) // KIB):
        began = time.monotonic()
        silent = await asyncio.open_connection("127.0.0.1", proc.ingest_port)
        after_line = await asyncio.open_connection("127.0.0.1", proc.ingest_port)
        drip = await asyncio.open_connection("127.0.0.1", proc.ingest_port)
        waits = [
            asyncio.ensure_future(closed_after(c[0], began, IDLE + 10))
            for c in (silent, after_line, drip)
        ]

        async def dripping() -> None:
            await write_quietly(drip[1], b"{")
            while not waits[2].done():
                await asyncio.sleep(0.2)
                await write_quietly(drip[1], b" ")

        dripper = asyncio.ensure_future(dripping())
        await asyncio.sleep(1.5)
        await write_quietly(after_line[1], b'{"event_type": "status.ping"}\n')
        await dripper
        t_silent, t_after_line, t_drip = await asyncio.gather(*waits)
        for conn in (silent, after_line, drip):
            conn[1].close()
        seen = await metrics(proc)
    assert IDLE - 0.2 <= t_silent < IDLE + 1.5
    assert 1.5 + IDLE - 0.2 <= t_after_line < 1.5 + IDLE + 1.5  # re-armed by the line
    assert IDLE - 0.2 <= t_drip < IDLE + 1.5  # bytes kept coming; the line's age counts
    assert seen["netsentinel_ws_ingest_closed_total{idle}"] == 2
    assert seen["netsentinel_ws_ingest_closed_total{line_timeout}"] == 1
    assert seen["netsentinel_ws_ingest_rejected_total{too_long}"] == 1
    assert seen["netsentinel_ws_ingest_connections"] == 1


MARK = "ATTACKER-TEXT-91c2"
LIMIT = 64 * KIB


def record(n: int) -> bytes:
    return json.dumps(
        {"logtype": 4002, "src_host": "203.0.113.7", "src_port": 40000 + n, "node_id": "c-1"}
    ).encode()


GARBAGE = [  # (line, reason it is counted under)
    (bytes(b for b in range(256) if b != 0x0A) * 8, "malformed"),  # binary junk
    (b'{"event_type": "a\xff\xfe", "note": "' + MARK.encode() + b'"}', "malformed"),  # bad UTF-8
    (b"[" * 60_000, "malformed"),  # nested deeper than the parser goes
    (b'{"a":' * 12_000, "malformed"),
    (b"\x00" * 1000, "malformed"),
    (b'{"event_type": "x", "pad": "' + b"y" * LIMIT + b'"}', "too_long"),
    (MARK.encode() * (10 * MIB // len(MARK)), "too_long"),  # 10 MiB, streamed through
    (b'["' + MARK.encode() + b'"]', "not_object"),
    (b'{"event_type": "a", "severity": "' + MARK.encode() + b'"}', "invalid"),
    (b'{"logtype": "' + MARK.encode() + b'"}', "invalid"),
]


@pytest.mark.gen_test(timeout=40)
async def test_garbage_is_counted_and_the_lines_between_are_kept(serve_process):
    """(d) One connection alternates good records and garbage: every garbage line is counted
    under its reason, logged with the peer and without its text, and every good line arrives
    in order; the connection is never closed."""
    proc = serve_process(attack_config(websocket__ingest__max_line_bytes=LIMIT))
    async with Guard(proc, rss_bound_kib=(FEED + LIMIT + PER_CONNECTION_EXTRA + 4 * MIB) // KIB):
        events = await subscribe_events(proc.port)
        _, writer = await asyncio.open_connection("127.0.0.1", proc.ingest_port)
        for n, (line, _) in enumerate(GARBAGE):
            writer.write(record(n) + b"\n" + line + b"\n")
            await writer.drain()
        writer.write(record(len(GARBAGE)) + b"\n")
        await writer.drain()
        got = await events.events(len(GARBAGE) + 1, timeout=20)
        ports = [m["event"]["data"]["src_port"] - 40000 for m in got]
        assert ports == list(range(len(GARBAGE) + 1))
        seen = await metrics(proc)
        assert seen["netsentinel_ws_ingest_connections"] == 2  # the pump and this one
        events.close()
        writer.close()
    expected = {"malformed": 0, "too_long": 0, "not_object": 0, "invalid": 0}
    for _, reason in GARBAGE:
        expected[reason] += 1
    for reason, count in expected.items():
        assert seen[f"netsentinel_ws_ingest_rejected_total{{{reason}}}"] == count, reason
    assert seen["netsentinel_ws_ingest_closed_total{idle}"] == 0
    assert seen["netsentinel_ws_ingest_closed_total{line_timeout}"] == 0
    log = proc.stderr_text()
    assert "ingest from 127.0.0.1: line dropped (malformed: " in log
    assert MARK not in log
