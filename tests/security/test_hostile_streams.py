"""Odd entries in a Redis stream, against a real ``serve`` on the Redis broker.

Redis is inside the trust boundary, but a buggy or older node of the same feed may write
entries no node of this version writes (streamentry.py says what one holds). The test plays
that node: a script that advances the channel's counter and adds an entry under it, as the
publish script does, with fields that disagree. The node must skip each such entry, count and
log it, and give its subscribers a ``gap`` over the offsets it held, and go on delivering the
real events around it; meanwhile the ``witness`` subscriber of
:class:`~tests.security.attack.Guard` (another channel, read by the same stream reader) misses
nothing, and the server's RSS stays bounded.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
import redis
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from netsentinel_websocket.broker_redis import split_url

from ..conftest import WSClient, make_token
from .attack import Guard, attack_config
from .test_hostile_feed import metrics, sample

MIB = 1024  # KiB

# KEYS: the channel's counter and stream. ARGV: how far the counter moves, the entry ID's
# sequence part, then the entry's fields and values. Atomic, like the publish script, so the
# node's own writes go on around it.
BUGGY_WRITER = """
local offset = redis.call('INCRBY', KEYS[1], ARGV[1])
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('XADD', KEYS[2], string.format('%d-%s', offset, ARGV[2]), unpack(fields))
return offset
"""

EVENT = orjson.dumps({"event_type": "honeypot.odd", "severity": "low", "data": {"n": -1}})
NOW = b"1700000000.5"


@dataclass(frozen=True)
class Odd:
    """An entry a buggy node writes: its fields, what the node logs when it skips it (a gap
    over its offsets; "" when it does not skip it), how far it moves the counter (0: the
    entry sits under an offset the reader has passed, and is never read) and the sequence
    part of its ID."""

    what: str
    fields: dict[bytes, bytes]
    why: str
    claimed: int = 1
    sequence: int = 0


def lines(*parts: bytes) -> bytes:
    return b"\n".join(parts)


NOT_OBJECT = "a line that is not a JSON object"
ODD = [
    Odd(
        "more events than times",
        {b"j": lines(EVENT, EVENT, EVENT), b"t": NOW + b" 1"},
        "3 events, 2 times",
        2,
    ),
    Odd("fewer events than times", {b"j": EVENT, b"t": NOW + b" 1"}, "1 events, 2 times", 2),
    Odd(
        "3 events, the counter moved by 1",
        {b"j": lines(EVENT, EVENT, EVENT), b"t": b"1 2 3"},
        "from offset",
        1,
    ),
    # what a trimmed stream looks like: a gap, then its event
    Odd("1 event, the counter moved by 3", {b"j": EVENT, b"t": NOW}, "", 3),
    Odd("under an offset already read", {b"j": EVENT, b"t": NOW}, "", 0, sequence=1),
    Odd("a line that is not JSON", {b"j": b"not json at all", b"t": NOW}, NOT_OBJECT),
    Odd("a truncated line", {b"j": EVENT[:-3], b"t": NOW}, NOT_OBJECT),
    Odd("JSON that is not an object", {b"j": b"[1,2,3]", b"t": NOW}, NOT_OBJECT),
    Odd("a pretty-printed event", {b"j": b'{\n  "n": 1\n}', b"t": NOW}, NOT_OBJECT),
    Odd(
        "50,001 lines, one of them an event",
        {b"j": lines(b"{}", *[b"x"] * 50_000), b"t": NOW},
        "50001 events, over 500",
    ),
    Odd("no times", {b"j": EVENT}, "no t field"),
    Odd("no events", {b"t": NOW}, "no j field"),
    Odd("empty fields", {b"j": b"", b"t": b""}, NOT_OBJECT),
    Odd("another format", {b"event": EVENT}, "no j field"),
    Odd(
        "a time that is not a number",
        {b"j": EVENT, b"t": b"yesterday"},
        "a time that is not a number",
    ),
    # over websocket.limits.max_event_bytes (256 KiB), which the pipeline refuses on entry
    Odd(
        "a huge event",
        {b"j": b'{"x":"' + b"h" * 8_000_000 + b'"}', b"t": NOW},
        "an event over 262144 bytes",
    ),
    Odd(
        "more events than a node writes in one entry",
        {b"j": lines(*[b"{}"] * 100_000), b"t": b" ".join([b"1"] * 100_000)},
        "100000 events, over 500",
        100_000,
    ),
]


async def observer(
    port: int, scope: str = "channel:*", since: dict[str, Any] | None = None
) -> tuple[WSClient, dict[str, Any]]:
    """A subscriber of ``events`` (resuming ``since`` a position), and its ``subscribed``."""
    request = HTTPRequest(
        f"ws://127.0.0.1:{port}/ws", headers={"Authorization": f"Bearer {make_token(scope=scope)}"}
    )
    client = WSClient(await websocket_connect(request))
    assert (await client.recv())["type"] == "welcome"
    subscribe = {"type": "subscribe", "id": 1, "channels": ["events"]}
    if since is not None:
        subscribe["since"] = {"events": since}
    reply = await client.request(subscribe)
    assert reply["type"] == "subscribed", reply
    return client, reply


async def until_marker(client: WSClient, n: int) -> list[tuple[str, int, Any]]:
    """Messages up to the real event numbered ``n``, as (type, offset, data.n) and
    ("gap", from offset, None)."""
    seen: list[tuple[str, int, Any]] = []
    while True:
        msg = await client.recv(timeout=10)
        if msg["type"] == "gap":
            assert msg["epoch"] == msg["from"]["epoch"]  # a gap within the stream's epoch
            seen.append(("gap", msg["from"]["offset"], None))
        elif msg["type"] == "event":
            seen.append(("event", msg["offset"], msg["event"]["data"]["n"]))
            if msg["event"]["data"]["n"] == n:
                return seen


def real(n: int) -> bytes:
    return orjson.dumps({"event_type": "honeypot.real", "severity": "low", "data": {"n": n}})


@pytest.mark.gen_test(timeout=90)
async def test_odd_stream_entries_cost_no_real_event(
    redis_prefixed_url, redis_test_url, serve_process
):
    proc = serve_process(attack_config(websocket__broker=redis_prefixed_url))
    base = f"{split_url(redis_prefixed_url)[1]}{{events}}:"
    direct = redis.Redis.from_url(redis_test_url)
    write = direct.register_script(BUGGY_WRITER)
    plain, subscribed = await observer(proc.port)  # redacted: events decoded on delivery
    sensitive, _ = await observer(proc.port, "channel:* events:sensitive")  # JSON as stored
    epoch = subscribed["positions"]["events"]["epoch"]
    got: list[list[tuple[str, int, Any]]] = [[], []]
    expected: list[tuple[str, int, Any]] = []
    try:
        async with Guard(proc, rss_bound_kib=30 * MIB):
            offset = 0
            for n, odd in enumerate([*ODD, None]):
                proc.send_lines([real(n)])
                for seen, client in zip(got, (plain, sensitive), strict=True):
                    seen += await until_marker(client, n)
                offset += 1
                expected.append(("event", offset, n))
                if odd is None:
                    break
                args = [odd.claimed, odd.sequence, *(x for kv in odd.fields.items() for x in kv)]
                top = await asyncio.get_running_loop().run_in_executor(
                    None, lambda a=args: write(keys=[base + "seq", base + "stream"], args=a)
                )
                if not odd.claimed:
                    continue
                if odd.why or top > offset + 1:
                    expected.append(("gap", offset, None))
                if not odd.why:
                    expected.append(("event", top, -1))
                offset = top
    finally:
        direct.close()
    assert got[0] == expected
    assert got[1] == expected
    # Resumes: across the odd entries a gap (from the stream, which holds them), after the
    # last of them the missed event (from the node's history).
    across, reply = await observer(proc.port, since={"epoch": epoch, "offset": 1})
    assert reply["recovered"] == {"events": False}
    assert (await across.recv_type("gap"))["from"] == {"epoch": epoch, "offset": 1}
    last = expected[-1][1]
    after, reply = await observer(proc.port, since={"epoch": epoch, "offset": last - 1})
    assert reply["recovered"] == {"events": True}
    assert [e["offset"] for e in await after.events(1)] == [last]
    text = metrics(proc)
    whys = [odd.why for odd in ODD if odd.why]
    assert sample(text, "netsentinel_ws_broker_errors_total", op="entry") == len(whys)
    assert 'op="read"' not in text  # the reader never failed (it would have reconnected)
    log = proc.stderr_text()
    logged = re.findall(r"channel events: skipping stream entry b'\d+-0': (.*)$", log, re.M)
    assert len(logged) == len(whys) and all(map(str.__contains__, logged, whys)), logged
    assert "not json at all" not in log and "yesterday" not in log and "Traceback" not in log
    for client in (plain, sensitive, across, after):
        client.close()
