"""Attacks through the feed itself, each against a real ``serve`` over real sockets.

Each test checks the three things of tests/security/attack.py: the attacker's refusal, a
witness that gets every pumped event in order with no hole, and the server's RSS bound.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import struct
import urllib.error
import urllib.request
from typing import Any

import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from ..conftest import RawClient, WSClient, close_code, make_token, next_frame
from .attack import Guard, attack_config

MIB = 1024


def metrics(proc: Any) -> str:
    with urllib.request.urlopen(f"{proc.http}/metrics", timeout=5) as response:
        return response.read().decode()


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one series in a Prometheus exposition."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" (\S+)"
    found = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
    assert found, f"no {name} {labels}"
    return float(found.group(1))


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"d": value}
    return value


def line(event: dict[str, Any]) -> bytes:
    """One ingest line (the standard library writes what orjson refuses to: deep nesting)."""
    return json.dumps(event).encode()


@pytest.mark.gen_test(timeout=60)
async def test_poison_events_are_refused_where_they_enter_and_cost_no_other_event(serve_process):
    proc = serve_process(attack_config())
    async with Guard(proc, rss_bound_kib=30 * MIB):
        poison = [
            # deeper than orjson writes (it reads 1024 levels, writes 254): refused by the
            # pipeline where it enters
            {"event_type": "witness.poison", "severity": "low", "data": nested(300)},
            # larger than websocket.limits.max_event_bytes (256 KiB): likewise
            {"event_type": "witness.big", "severity": "low", "data": {"x": "y" * 400_000}},
            # fields over their bounds: refused by the ingest's normalization
            {"event_type": "witness." + "t" * 500_000, "severity": "low"},
            {"event_type": "witness.tags", "severity": "low", "tags": ["t"] * 1000},
            {"event_type": "witness.src", "severity": "low", "source": "s" * 10_000},
        ]
        for _ in range(3):
            proc.send_lines([line(p) for p in poison])
            await asyncio.sleep(0.2)
    text = metrics(proc)
    assert sample(text, "netsentinel_ws_pipeline_rejected_total", reason="unserializable") == 3
    assert sample(text, "netsentinel_ws_pipeline_rejected_total", reason="too_large") == 3
    assert sample(text, "netsentinel_ws_ingest_rejected_total", reason="invalid") == 9


@pytest.mark.gen_test(timeout=60)
async def test_a_resume_across_refused_events_has_no_hole(serve_process):
    proc = serve_process(attack_config())
    good = {"event_type": "honeypot.ssh.login", "severity": "low", "data": {"n": 0}}
    proc.send_lines([line({**good, "data": {"n": 1}})])
    request = HTTPRequest(proc.url, headers={"Authorization": f"Bearer {make_token()}"})
    first = WSClient(await websocket_connect(request))
    await first.recv_type("welcome")
    await first.request({"type": "subscribe", "id": 1, "channels": ["events"]})
    proc.send_lines([line({**good, "data": {"n": 2}})])
    (event,) = await first.events(1)
    first.close()
    # While it is away: good events with poison between them.
    poison = {"event_type": "honeypot.x", "severity": "low", "data": nested(300)}
    proc.send_lines(
        [line({**good, "data": {"n": n}}) if n % 2 else line(poison) for n in range(3, 12)]
    )
    proc.send_lines([line({**good, "data": {"n": 99}})])
    again = WSClient(await websocket_connect(request))
    await again.recv_type("welcome")
    since = {"events": {"epoch": event["epoch"], "offset": event["offset"]}}
    reply = await again.request(
        {"type": "subscribe", "id": 1, "channels": ["events"], "since": since}
    )
    assert reply["recovered"] == {"events": True}
    got = await again.events(6)
    assert [m["event"]["data"]["n"] for m in got] == [3, 5, 7, 9, 11, 99]
    assert [m["offset"] for m in got] == list(range(event["offset"] + 1, event["offset"] + 7))


@pytest.mark.gen_test(timeout=90)
async def test_a_reader_that_never_reads_cannot_grow_the_server_by_resuming(serve_process):
    """Before: each resume from offset 0 was written at once, whatever the bound; a client
    that never read grew the server by the whole history per resume."""
    proc = serve_process(attack_config(websocket__queue__max_bytes=256 * 1024))
    blob = "z" * 40_000
    proc.send_lines(
        [
            line({"event_type": "honeypot.x", "severity": "low", "data": {"n": n, "blob": blob}})
            for n in range(350)
        ]
    )  # about 14 MB of history on the events channel
    # Unbounded (before), 5 x 8 resumes of 14 MB would be 560 MB. Bounded, it grew 23-27 MB
    # alone and 47 MB in a CI run of four environments at once on a slow machine.
    async with Guard(proc, rss_bound_kib=64 * MIB):
        attackers = []
        for _ in range(5):
            raw = await RawClient.connect(proc.port, rcvbuf=4096)
            reply = await raw.subscribe(["events"])
            epoch = reply["positions"]["events"]["epoch"]
            attackers.append((raw, epoch))
        codes = []
        for raw, epoch in attackers:
            for n in range(8):  # resume from the start again and again, never reading
                raw.send(
                    {
                        "type": "subscribe",
                        "id": n,
                        "channels": ["events"],
                        "since": {"events": {"epoch": epoch, "offset": 0}},
                    }
                )
                await asyncio.sleep(0.01)
        for raw, _ in attackers:
            codes.append(await closing_code(raw))
    assert codes == [4009] * 5


async def closing_code(raw: RawClient) -> int | None:
    """Read (now at last) until the close frame; its code."""
    while True:
        opcode, payload = await raw.frame(timeout=20)
        if opcode == 8:
            return close_code(payload)


def handshake(port: int) -> socket.socket:
    """A WebSocket handshake without a token (authentication would come as a message)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def client_frame(opcode: int, payload: bytes, masked: bool = True) -> bytes:
    assert len(payload) < 126
    if not masked:
        return bytes((0x80 | opcode, len(payload))) + payload
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes((0x80 | opcode, 0x80 | len(payload))) + mask + body


def close_reply(sock: socket.socket) -> int | None:
    """The server's close code (None: dropped without a close frame)."""
    data = b""
    while True:
        frame = next_frame(data)
        if frame is not None:
            opcode, payload, end = frame
            if opcode == 8:
                return close_code(payload)
            data = data[end:]
            continue
        chunk = sock.recv(4096)
        if not chunk:
            return None
        data += chunk


@pytest.mark.gen_test(timeout=90)
async def test_clients_cannot_mint_metric_series_or_break_the_protocol(serve_process):
    proc = serve_process(attack_config())
    async with Guard(proc, rss_bound_kib=20 * MIB):
        loop = asyncio.get_running_loop()

        def attack() -> dict[str, list[int | None]]:
            seen: dict[str, list[int | None]] = {
                "own": [],
                "invalid": [],
                "short": [],
                "unmasked": [],
            }
            for code in range(3000, 3200):  # each its own code, before authenticating
                with handshake(proc.port) as sock:
                    sock.sendall(client_frame(8, struct.pack(">H", code)))
                    seen["own"].append(close_reply(sock))
            for code in (0, 999, 1004, 1005, 1006, 1015, 2999, 5000, 65535):
                with handshake(proc.port) as sock:
                    sock.sendall(client_frame(8, struct.pack(">H", code)))
                    seen["invalid"].append(close_reply(sock))
            with handshake(proc.port) as sock:
                sock.sendall(client_frame(8, b"\x03"))
                seen["short"].append(close_reply(sock))
            with handshake(proc.port) as sock:
                sock.sendall(client_frame(8, struct.pack(">H", 1000) + b"\xff\xfe"))
                seen["short"].append(close_reply(sock))
            with handshake(proc.port) as sock:
                sock.sendall(
                    client_frame(
                        1,
                        json.dumps({"type": "auth", "token": make_token()}).encode()[:100],
                        masked=False,
                    )
                )
                seen["unmasked"].append(close_reply(sock))
            return seen

        seen = await loop.run_in_executor(None, attack)
    assert seen["own"] == list(range(3000, 3200))  # valid codes are echoed (RFC 6455 5.5.1)
    assert seen["invalid"] == [1002] * 9
    assert seen["short"] == [1002, 1002]
    assert seen["unmasked"] == [1002]
    text = metrics(proc)
    codes = set(re.findall(r'netsentinel_ws_connections_closed_total\{code="([^"]+)"\}', text))
    assert codes <= {
        "1000",
        "1001",
        "1002",
        "1003",
        "1005",
        "1006",
        "1008",
        "1009",
        "1011",
        "4001",
        "4003",
        "4004",
        "4008",
        "4009",
        "4029",
        "other",
    }
    assert sample(text, "netsentinel_ws_connections_closed_total", code="other") == 200
    assert sample(text, "netsentinel_ws_connections_closed_total", code="1002") == 12


@pytest.mark.gen_test(timeout=60)
async def test_log_lines_cannot_be_forged_and_extra_fields_are_masked(serve_process):
    forged = "evil\n2026-01-01 00:00:00,000 INFO netsentinel_websocket: forged\x1b[2J"
    secret_jwt = make_token(sub="someone-else")
    for fmt in ("text", "json"):
        proc = serve_process(attack_config(server__log_format=fmt))
        async with Guard(proc, rss_bound_kib=20 * MIB):
            token = make_token(sub=forged, scope="channel:* alerts:ack")
            request = HTTPRequest(proc.url, headers={"Authorization": f"Bearer {token}"})
            client = WSClient(await websocket_connect(request))
            await client.recv_type("welcome")
            reply = await client.request(
                {"type": "ack", "id": 1, "alert_id": "A-1", "note": f"see {secret_jwt}"}
            )
            assert reply["type"] == "ack_ok"
            client.close()
            await asyncio.sleep(0.3)
        proc.stop()
        log = proc.stderr_text()
        assert "\x1b" not in log and secret_jwt not in log
        assert not re.search(r"^2026-01-01 00:00:00,000 INFO", log, re.MULTILINE)
        assert "forged" in log  # the line is there, escaped, not gone


SECRETS = ("hunter2-ssh", "qu3ry-pw", "r3dis-auth", "c0mmunity")
CREDENTIAL_RECORDS = [
    {  # SSH login attempt
        "logtype": 4002,
        "src_host": "203.0.113.5",
        "dst_port": 22,
        "node_id": "canary-1",
        "logdata": {"USERNAME": "root", "password": "hunter2-ssh"},
    },
    {  # HTTP request whose query string carries a password
        "logtype": 3000,
        "src_host": "203.0.113.6",
        "dst_port": 80,
        "node_id": "canary-1",
        "logdata": {"PATH": "/login?user=admin&password=qu3ry-pw", "USERAGENT": "curl"},
    },
    {  # Redis AUTH
        "logtype": 17001,
        "src_host": "203.0.113.7",
        "dst_port": 6379,
        "node_id": "canary-1",
        "logdata": {"CMD": "AUTH", "ARGS": "r3dis-auth"},
    },
    {  # SNMP community string
        "logtype": 13001,
        "src_host": "203.0.113.8",
        "dst_port": 161,
        "node_id": "canary-1",
        "logdata": {"COMMUNITY_STRING": "c0mmunity", "REQUESTS": ["1.3.6.1"]},
    },
]


async def raw_feed(port: int, scope: str, count: int) -> bytes:
    """Everything a subscriber of ``events`` receives for ``count`` events, as raw text."""
    request = HTTPRequest(
        f"ws://127.0.0.1:{port}/ws", headers={"Authorization": f"Bearer {make_token(scope=scope)}"}
    )
    conn = await websocket_connect(request)
    frames: list[str] = []
    events = 0
    conn.write_message(json.dumps({"type": "subscribe", "id": 1, "channels": ["events"]}))
    while events < count:
        frame = await asyncio.wait_for(conn.read_message(), 10)
        assert frame is not None
        frames.append(frame)
        events += frame.count('"type":"event"')
    conn.close()
    return "\n".join(frames).encode()


@pytest.mark.gen_test(timeout=60)
async def test_attempted_credentials_never_reach_a_subscriber_without_the_scope(serve_process):
    proc = serve_process(attack_config())
    async with Guard(proc, rss_bound_kib=20 * MIB):
        plain = asyncio.create_task(raw_feed(proc.port, "channel:*", len(CREDENTIAL_RECORDS)))
        full = asyncio.create_task(
            raw_feed(proc.port, "channel:* events:sensitive", len(CREDENTIAL_RECORDS))
        )
        await asyncio.sleep(0.5)  # both subscribed
        proc.send_lines([line(r) for r in CREDENTIAL_RECORDS])
        redacted, sensitive = await plain, await full
    assert [s for s in SECRETS if s.encode() in redacted] == []
    assert redacted.count(b"[redacted]") >= len(SECRETS)
    assert [s for s in SECRETS if s.encode() in sensitive] == list(SECRETS)


@pytest.mark.gen_test(timeout=90)
async def test_history_is_bounded_by_bytes_and_a_resume_past_it_is_a_gap(serve_process):
    """Before: 1000 events per channel whatever their size (an attacker's large records)."""
    proc = serve_process(attack_config(websocket__history__max_bytes=2 * 1024 * 1024))
    request = HTTPRequest(proc.url, headers={"Authorization": f"Bearer {make_token()}"})
    async with Guard(proc, rss_bound_kib=24 * MIB):
        first = WSClient(await websocket_connect(request))
        await first.recv_type("welcome")
        reply = await first.request({"type": "subscribe", "id": 1, "channels": ["events"]})
        epoch = reply["positions"]["events"]["epoch"]
        first.close()
        big = "b" * 200_000
        for _ in range(10):  # 100 events of 200 KB: 20 MB through a 2 MiB history
            proc.send_lines(
                [
                    line({"event_type": "honeypot.big", "severity": "low", "data": {"b": big}})
                    for _ in range(10)
                ]
            )
            await asyncio.sleep(0.1)
    again = WSClient(await websocket_connect(request))
    await again.recv_type("welcome")
    since = {"events": {"epoch": epoch, "offset": 0}}
    reply = await again.request(
        {"type": "subscribe", "id": 2, "channels": ["events"], "since": since}
    )
    assert reply["recovered"] == {"events": False}
    gap = await again.recv_type("gap")
    assert gap["from"] == {"epoch": epoch, "offset": 0}
    again.close()


@pytest.mark.gen_test(timeout=30)
async def test_an_oversized_token_is_refused_alike_in_the_header_and_in_a_message(serve_process):
    proc = serve_process(attack_config())
    huge = make_token(pad="x" * 9000)
    request = HTTPRequest(proc.url, headers={"Authorization": f"Bearer {huge}"})
    in_header = WSClient(await websocket_connect(request))
    assert await in_header.closed() == (4001, "token too large")
    in_message = WSClient(await websocket_connect(proc.url))
    in_message.send({"type": "auth", "id": 1, "token": huge})
    assert await in_message.closed() == (4001, "token too large")


def http_call(
    url: str, token: str, method: str = "GET", body: bytes | None = None, **headers: str
) -> int:
    """The status of one request (any answer, error statuses included)."""
    request = urllib.request.Request(
        url, data=body, method=method, headers={"Authorization": f"Bearer {token}", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.gen_test(timeout=60)
async def test_the_new_parsers_refuse_hostile_input_while_the_feed_goes_on(serve_process):
    """SSE cursors and queries, history positions and limits, admin bodies: every parser this
    round added answers 400 (or 413 over the body bound), the server keeps its memory, and a
    subscriber connected throughout misses nothing."""
    proc = serve_process(attack_config())
    reader = make_token(scope="channel:*")
    admin = make_token(scope="admin")
    base = proc.http
    cases: list[tuple[str, str, str, bytes | None, dict[str, str], set[int]]] = [
        (
            "GET",
            "/ws/sse?channels=events",
            reader,
            None,
            {"Last-Event-ID": "!!not-base64!!"},
            {400},
        ),
        ("GET", "/ws/sse?channels=events", reader, None, {"Last-Event-ID": "A" * 12_000}, {400}),
        ("GET", "/ws/sse?channels=events&last_event_id=W1siZXZlbnRzIl1d", reader, None, {}, {400}),
        ("GET", "/ws/sse?channels=" + "x," * 500, reader, None, {}, {404}),  # no such channel
        ("GET", "/ws/sse?channels=events&min_severity=%00", reader, None, {}, {400}),
        ("GET", "/ws/history/events?since=E:-1", reader, None, {}, {400}),
        ("GET", "/ws/history/events?since=" + "9" * 400, reader, None, {}, {400}),
        ("GET", "/ws/history/events?limit=1000000000", reader, None, {}, {400}),
        ("POST", "/ws/admin/revoke", admin, b'{"sub": ["a"]}', {}, {400}),
        ("POST", "/ws/admin/revoke", admin, b"[" * 5000, {}, {400}),
        ("POST", "/ws/admin/revoke", admin, b'{"x":"' + b"y" * 200_000 + b'"}', {}, {413}),
        ("POST", "/ws/admin/disconnect", admin, b'{"connection_id": 7}', {}, {400}),
    ]
    async with Guard(proc, rss_bound_kib=20 * MIB):
        loop = asyncio.get_running_loop()
        for _ in range(5):
            statuses = [
                await loop.run_in_executor(
                    None, lambda c=case: http_call(base + c[1], c[2], c[0], c[3], **c[4])
                )
                for case in cases
            ]
            assert [s in case[5] for s, case in zip(statuses, cases, strict=True)] == [True] * len(
                cases
            ), statuses
