"""Hostile honeypot input cannot drive the analyst's terminal through ``tail``.

A real ``serve`` ingests OpenCanary records and events whose fields carry escape sequences
(clear screen, window title, OSC 52 clipboard, OSC 8 link), C1 controls and bidi/zero-width
characters; ``tail`` runs as a subprocess and every byte it writes is checked. A small hostile
server does the same for what tail prints on stderr (close reasons, error messages).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from typing import Any

import orjson
import pytest
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from tornado.web import Application
from tornado.websocket import WebSocketHandler

from ..conftest import base_config, make_token

CLEAR = "\x1b[2J\x1b[3J\x1b[H"
TITLE = "\x1b]0;pwned\x07"
CLIPBOARD = "\x1b]52;c;cm0gLXJmIH4K\x07"  # base64 of "rm -rf ~\n"
LINK = "\x1b]8;;https://evil.example/\x1b\\login\x1b]8;;\x1b\\"
C1 = "\x9b31m\x85\x9d0;t\x9c"
BIDI = "\u202eexe.txt\u202c\u2066\u2069\u200b\u200d\ufeff\u2028\u2029"
C0 = "\x00\x07\x08\t\r\n\x0b\x0c\x1f\x7f"

RECORDS: list[dict[str, Any]] = [
    {  # OpenCanary SSH login attempt: the attacker's address and user name
        "id": "hostile-ssh",
        "logtype": 4002,
        "node_id": "canary-1",
        "src_host": "198.51.100.1" + CLEAR,
        "src_port": 40000,
        "dst_host": "10.0.0.5",
        "dst_port": 22,
        "logdata": {"MARK": "mark-ssh", "USERNAME": "root" + TITLE},
    },
    {  # OpenCanary HTTP GET: path and user agent
        "id": "hostile-http",
        "logtype": 3000,
        "node_id": "canary-1",
        "src_host": "198.51.100.2" + C1,
        "dst_host": "10.0.0.5",
        "dst_port": 80,
        "logdata": {"MARK": "mark-http", "PATH": "/" + CLIPBOARD, "USERAGENT": "curl" + BIDI},
    },
    {  # A NetSentinel event: the event type and message too
        "id": "hostile-std",
        "event_type": "honeypot.ssh." + LINK,
        "severity": "high",
        "source": "sensor",
        "data": {"src_ip": "203.0.113.7" + C0, "message": "mark-std " + C0},
    },
]
MARKS = (b"mark-ssh", b"mark-http", b"mark-std")

# What the analyst sees instead: Python-style escapes, written out by hand.
SHOWN = [
    r"198.51.100.1\x1b[2J\x1b[3J\x1b[H",
    r"username=root\x1b]0;pwned\x07",
    r"198.51.100.2\x9b31m\x85\x9d0;t\x9c",
    r"path=/\x1b]52;c;cm0gLXJmIH4K\x07",
    r"useragent=curl\u202eexe.txt\u202c\u2066\u2069\u200b\u200d\ufeff\u2028\u2029",
    r"honeypot.ssh.\x1b]8;;https://evil.example/\x1b\\login\x1b]8;;\x1b\\",
    r"203.0.113.7\x00\x07\x08\t\r\n\x0b\x0c\x1f\x7f",
    r"mark-std \x00\x07\x08 \x0b\x0c\x1f\x7f",  # a message's line breaks are layout
]

LINE_START = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ HIGH {5}honeypot\.")
RAW_C0 = re.compile(rb"[\x00-\x09\x0b-\x1f\x7f]")  # a line feed only ends a line
INVISIBLE = [
    (0x80, 0x9F),  # C1 controls
    (0xAD, 0xAD),  # soft hyphen
    (0x200B, 0x200F),  # zero-width, LRM, RLM
    (0x2028, 0x202E),  # line/paragraph separators, bidi embeddings and overrides
    (0x2060, 0x2069),  # word joiner ..., bidi isolates
    (0xFEFF, 0xFEFF),  # BOM
    (0xE0000, 0xE007F),  # tags
]


def assert_inert(data: bytes) -> str:
    """``data`` (what tail wrote) holds no control or format character; returns it decoded."""
    assert not RAW_C0.search(data), RAW_C0.search(data)
    text = data.decode("utf-8")  # strict: no stray C1 bytes either
    raw = [f"U+{ord(c):04X}" for c in text if any(lo <= ord(c) <= hi for lo, hi in INVISIBLE)]
    assert raw == []
    return text


def tail_env() -> dict[str, str]:
    return {**os.environ, "NETSENTINEL_TOKEN": make_token(), "NO_COLOR": "1"}


def run_tail(server: Any, *args: str) -> tuple[bytes, bytes]:
    """Feed the hostile records until tail has printed each of them; stop it with Ctrl-C and
    return everything it wrote to stdout and stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "netsentinel_websocket", "tail", server.url, "--channel", "events"]
        + list(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=tail_env(),
    )
    out = b""
    deadline = time.monotonic() + 15
    try:
        while not all(mark in out for mark in MARKS):  # tail may subscribe after a batch
            assert time.monotonic() < deadline, f"tail printed {out!r}"
            server.send_lines([orjson.dumps(record) for record in RECORDS])
            while select.select([proc.stdout], [], [], 0.2)[0]:
                chunk = os.read(proc.stdout.fileno(), 1 << 16)
                assert chunk, "tail exited"
                out += chunk
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    return out + rest, err


@pytest.fixture
def server(serve_process):
    return serve_process(base_config())


def test_human_lines_show_hostile_fields_escaped(server):
    out, err = run_tail(server)
    text = assert_inert(out)
    assert assert_inert(err) == ""
    lines = text.splitlines()
    assert text.endswith("\n") and len(lines) == text.count("\n")
    for shown in SHOWN:
        assert shown in text
    assert all(LINE_START.match(line) for line in lines)  # one line per event, no forged ones


def test_json_lines_escape_them_and_keep_the_values(server):
    out, err = run_tail(server, "--json")
    assert assert_inert(err) == ""
    events = {}
    for line in assert_inert(out).splitlines():
        message = json.loads(line)
        events[message["event"]["id"]] = message["event"]
    assert events["hostile-ssh"]["data"]["src_ip"] == "198.51.100.1" + CLEAR
    assert events["hostile-ssh"]["data"]["logdata"]["USERNAME"] == "root" + TITLE
    assert events["hostile-http"]["data"]["src_ip"] == "198.51.100.2" + C1
    assert events["hostile-http"]["data"]["logdata"]["PATH"] == "/" + CLIPBOARD
    assert events["hostile-http"]["data"]["logdata"]["USERAGENT"] == "curl" + BIDI
    assert events["hostile-std"]["event_type"] == "honeypot.ssh." + LINK
    assert events["hostile-std"]["data"]["src_ip"] == "203.0.113.7" + C0


# --- a hostile server: what tail says on stderr quotes it ---

SAYING = TITLE + CLEAR + "\x9b\u202e\u200b\nforged line"
SAYING_SHOWN = r"\x1b]0;pwned\x07\x1b[2J\x1b[3J\x1b[H\x9b\u202e\u200b\nforged line"


class HostileHandler(WebSocketHandler):
    """Welcomes, then answers the subscription as ``state["mode"]`` says."""

    def initialize(self, state: dict[str, Any]) -> None:
        self.state = state

    def open(self) -> None:
        welcome = {"type": "welcome", "protocol": 1, "server_time": time.time()}
        self.write_message(json.dumps({**welcome, "channels": ["events"]}))

    def on_message(self, message: str | bytes) -> None:
        request = json.loads(message)
        if request.get("type") != "subscribe":
            return
        self.state["subscriptions"] += 1
        if self.state["mode"] == "refuse":
            reply = {"type": "error", "code": "forbidden", "message": SAYING}
            self.write_message(json.dumps({**reply, "id": request["id"]}))
            return
        reply = {"type": "subscribed", "channels": request["channels"], "positions": {}}
        self.write_message(json.dumps({**reply, "id": request["id"]}))
        if self.state["subscriptions"] == 1:  # then let the reconnection stay
            self.write_message(json.dumps({"type": "error", "code": "x", "message": SAYING}))
            self.close(4009, SAYING)


@pytest.fixture
def hostile_server(io_loop):
    state: dict[str, Any] = {"mode": "close", "subscriptions": 0}
    sock, port = bind_unused_port()
    server = HTTPServer(Application([("/ws", HostileHandler, {"state": state})]))
    server.add_sockets([sock])
    state["url"] = f"ws://127.0.0.1:{port}/ws"
    yield state
    server.stop()


async def start_tail(url: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "netsentinel_websocket", "tail", url, "--channel", "events"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=tail_env(),
    )


@pytest.mark.gen_test(timeout=30)
async def test_refusal_message_is_escaped(hostile_server):
    hostile_server["mode"] = "refuse"
    proc = await start_tail(hostile_server["url"])
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 3
    assert out == b""
    assert assert_inert(err) == (
        f"netsentinel-websocket tail: subscription refused (forbidden): {SAYING_SHOWN}\n"
    )


@pytest.mark.gen_test(timeout=30)
async def test_error_message_and_close_reason_are_escaped(hostile_server):
    proc = await start_tail(hostile_server["url"])
    try:
        lines = [await asyncio.wait_for(proc.stderr.readline(), 20) for _ in range(2)]
        while hostile_server["subscriptions"] < 2:  # resumed: nothing more to say
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    assert out == b""
    assert assert_inert(b"".join(lines) + err).splitlines() == [
        f"netsentinel-websocket tail: server error x: {SAYING_SHOWN}",
        f"netsentinel-websocket tail: disconnected (4009 {SAYING_SHOWN}); reconnecting and "
        "resuming",
    ]


@pytest.mark.gen_test(timeout=60)
async def test_hostile_fields_through_a_guarded_server_reach_tail_inert(serve_process):
    """The same attack with the three checks of tests/security/attack.py around it: tail shows
    the fields escaped, a witness gets every event in order, the server's memory stays put."""
    from .attack import Guard, attack_config

    proc = serve_process(attack_config())
    async with Guard(proc, rss_bound_kib=20 * 1024):
        loop = asyncio.get_running_loop()
        out, _ = await loop.run_in_executor(None, run_tail, proc)
    text = assert_inert(out)
    assert all(shown in text for shown in SHOWN)
