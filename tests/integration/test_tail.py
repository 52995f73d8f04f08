"""``netsentinel-websocket tail`` end to end: a real ``serve`` subprocess, ``tail`` in another."""

from __future__ import annotations

import json
import os
import pty
import queue
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

import orjson
import pytest

from netsentinel_websocket.tail import summary

from ..conftest import base_config, event, make_token

STAMP = 1_700_000_000  # 2023-11-14T22:13:20Z
LINE = re.compile(
    r"^2023-11-14T22:13:20Z HIGH {5}honeypot\.ssh\.login_attempt 203\.0\.113\.7 n=(\d+)$"
)


class Tail:
    """``python -m netsentinel_websocket tail ...`` with its output read line by line."""

    def __init__(self, *args: str, token: str | None = None, env: dict[str, str] | None = None):
        environ = {
            k: v for k, v in os.environ.items() if k not in ("NETSENTINEL_TOKEN", "NO_COLOR")
        }
        if token is not None:
            environ["NETSENTINEL_TOKEN"] = token
        environ.update(env or {})
        cmd = [sys.executable, "-m", "netsentinel_websocket", "tail", *args]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ
        )
        self.out: queue.Queue[str] = queue.Queue()
        self.err: queue.Queue[str] = queue.Queue()
        for stream, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=_pump, args=(stream, sink), daemon=True).start()

    def line(self, timeout: float = 5.0) -> str:
        return self.out.get(timeout=timeout)

    def error_line(self, timeout: float = 5.0) -> str:
        return self.err.get(timeout=timeout)

    def interrupt(self) -> int:
        """Ctrl-C, as a terminal sends it."""
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(5)

    def wait(self, timeout: float = 10.0) -> int:
        return self.proc.wait(timeout)

    def stderr_lines(self) -> list[str]:
        return list(self.err.queue)


def _pump(stream: IO[str], sink: queue.Queue[str]) -> None:
    with stream:
        for line in stream:
            sink.put(line.rstrip("\r\n"))


def _pump_pty(fd: int, sink: queue.Queue[str]) -> None:
    try:
        _pump(os.fdopen(fd, errors="replace"), sink)
    except OSError:  # EIO: the terminal's other side is closed
        pass


def record(n: int) -> bytes:
    return orjson.dumps({**event(n), "timestamp": STAMP})


def first_lines(server: Any, read: Callable[[float], str], count: int) -> list[str]:
    """Publish numbered events until tail (which prints nothing until it is subscribed) has
    printed ``count`` lines; ``read`` is its next line, or queue.Empty after a timeout."""
    lines: list[str] = []
    n = 0
    deadline = time.monotonic() + 10
    while len(lines) < count:
        assert time.monotonic() < deadline, "tail printed nothing"
        server.send_lines([record(n)])
        n += 1
        try:
            lines.append(read(0.1))
        except queue.Empty:
            continue
    return lines


@pytest.fixture
def server(serve_process):
    return serve_process(base_config())


def test_human_lines_then_ctrl_c_exits_0(server):
    tail = Tail(server.url, "--channel", "events", token=make_token())
    lines = first_lines(server, tail.line, 3)
    numbers = [int(LINE.match(line).group(1)) for line in lines]  # no colour: not a TTY
    assert numbers == list(range(numbers[0], numbers[0] + 3))
    assert tail.interrupt() == 0
    assert tail.stderr_lines() == []


def test_json_lines_and_token_option(server):
    tail = Tail(
        server.url,
        "--channel",
        "events",
        "--channel",
        "threats",
        "--json",
        "--token",
        make_token(),
        "--min-severity",
        "high",
    )
    messages = [json.loads(line) for line in first_lines(server, tail.line, 4)]
    assert {m["type"] for m in messages} == {"event"}
    assert {m["channel"] for m in messages} == {"events", "threats"}
    assert all(m["event"]["timestamp"] == STAMP and "n" in m["event"]["data"] for m in messages)
    assert tail.interrupt() == 0


@pytest.mark.parametrize("no_color", [False, True], ids=["tty", "tty-NO_COLOR"])
def test_severity_colour_on_a_terminal(server, no_color):
    master, slave = pty.openpty()
    environ = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    if no_color:
        environ["NO_COLOR"] = "1"
    environ["NETSENTINEL_TOKEN"] = make_token()
    proc = subprocess.Popen(
        [sys.executable, "-m", "netsentinel_websocket", "tail", server.url, "--channel", "events"],
        stdout=slave,
        stderr=subprocess.DEVNULL,
        env=environ,
    )
    os.close(slave)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_pump_pty, args=(master, lines), daemon=True).start()
    line = first_lines(server, lambda timeout: lines.get(timeout=timeout), 1)[0]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(5) == 0
    if no_color:
        assert LINE.match(line)
    else:
        assert "\033[1;31mHIGH\033[0m" in line


def test_reconnects_with_one_notice_and_reports_the_gap(server):
    tail = Tail(server.url, "--channel", "events", token=make_token())
    first_lines(server, tail.line, 2)
    server.stop()  # SIGTERM: the server closes its clients with 1001
    server.start()  # same port; a memory broker starts a new epoch
    assert "disconnected (1001 server shutting down); reconnecting" in tail.error_line()
    first_lines(server, tail.line, 2)
    assert "gap on channel events" in tail.error_line()
    assert tail.interrupt() == 0
    assert len(tail.stderr_lines()) == 0  # both notices were read above: nothing more


@pytest.mark.parametrize(
    ("args", "token", "code", "message"),
    [
        ((), "not-a-jwt", 3, "authentication refused (4001): malformed token"),
        ((), make_token(ttl=-10), 3, "authentication refused (4001): token expired"),
        (("--channel", "threats"), make_token(scope="channel:events"), 3, "forbidden"),
        (("--channel", "nope"), make_token(), 2, "unknown_channel"),
        (("--filter", "{bad"), make_token(), 2, "--filter is not valid JSON"),
        (("--filter", "[1]"), make_token(), 2, "--filter must be a JSON object"),
        (("--filter", "{}", "--tag", "x"), make_token(), 2, "not both"),
        ((), None, 2, "no token"),
    ],
    ids=[
        "bad-token",
        "expired",
        "forbidden",
        "unknown-channel",
        "bad-filter",
        "filter-not-object",
        "both",
        "no-token",
    ],
)
def test_exit_codes(server, args, token, code, message):
    channel = () if "--channel" in args else ("--channel", "events")
    tail = Tail(server.url, *channel, *args, token=token)
    assert tail.wait() == code
    assert message in tail.error_line()
    assert token is None or token not in "".join(tail.stderr_lines())


def test_usage_error_and_wrong_path_exit_codes(server):
    assert Tail(server.url, token=make_token()).wait() == 2  # --channel is required
    tail = Tail(server.url + "x", "--channel", "events", token=make_token())
    assert tail.wait() == 1
    assert "HTTP 404" in tail.error_line()


@pytest.mark.parametrize(
    "address", ["http://127.0.0.1:{port}/ws", "http://127.0.0.1:{port}", "127.0.0.1:{port}"]
)
def test_the_servers_http_address_or_host_port_reaches_the_feed(server, address):
    tail = Tail(address.format(port=server.port), "--channel", "events", token=make_token())
    assert LINE.match(first_lines(server, tail.line, 1)[0])
    assert tail.interrupt() == 0


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("ftp://127.0.0.1:1/ws", "not a ws(s)://, http(s):// or host:port address: 'ftp://"),
        ("http://", "not a ws(s)://, http(s):// or host:port address: 'http://'"),
        ("127.0.0.1:port/ws", "the port of '127.0.0.1:port/ws' is not a number"),
    ],
)
def test_an_address_that_is_no_websocket_address_is_a_usage_error(address, message):
    tail = Tail(address, "--channel", "events", token=make_token())
    assert tail.wait() == 2
    assert tail.error_line().startswith(f"netsentinel-websocket tail: {message}")
    assert "Traceback" not in "".join(tail.stderr_lines())


def test_token_file_keeps_the_token_off_the_command_line(server, tmp_path):
    path = tmp_path / "token"
    path.write_text(make_token() + "\n")
    tail = Tail(server.url, "--channel", "events", "--token-file", str(path))
    assert LINE.match(first_lines(server, tail.line, 1)[0])
    assert tail.interrupt() == 0
    missing = Tail(server.url, "--channel", "events", "--token-file", str(tmp_path / "none"))
    assert missing.wait() == 2
    assert "cannot read --token-file" in missing.error_line()


def test_a_server_not_reached_yet_is_not_called_a_disconnection():
    """Before the first welcome there is nothing to resume: tail says it cannot connect."""
    from ..conftest import ReservedPort

    nothing = ReservedPort()
    try:
        tail = Tail(f"ws://127.0.0.1:{nothing.port}/ws", "--channel", "events", token=make_token())
        notice = tail.error_line(timeout=10)
        assert tail.interrupt() == 0
    finally:
        nothing.release()
    assert notice.startswith("netsentinel-websocket tail: cannot connect (")
    assert "retrying until it can" in notice
    assert "disconnected" not in notice and "resuming" not in notice


def test_reader_gone_exits_quietly(server):
    """``tail ... | head -1``: when the reader closes the pipe, tail stops without a traceback."""
    environ = {**os.environ, "NETSENTINEL_TOKEN": make_token()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "netsentinel_websocket", "tail", server.url, "--channel", "events"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environ,
    )
    n = 0
    deadline = time.monotonic() + 10
    while not select.select([proc.stdout], [], [], 0.05)[0]:  # until tail prints a line
        assert time.monotonic() < deadline
        server.send_lines([record(n)])
        n += 1
    proc.stdout.close()
    while proc.poll() is None and time.monotonic() < deadline:
        server.send_lines([record(n)])
        n += 1
        time.sleep(0.05)
    assert proc.wait(5) == 0
    assert proc.stderr.read() == b""
    proc.stderr.close()


@pytest.mark.parametrize(
    ("data", "text"),
    [
        ({"message": "port  scan\nof 40 ports", "n": 1}, "port scan of 40 ports"),
        (
            {
                "src_ip": "192.0.2.1",
                "dst_host": "10.0.0.5",
                "dst_port": 22,
                "logtype": 4002,
                "logdata": {"USERNAME": "root", "KEYS": ["a"]},
            },
            '-> 10.0.0.5:22 username=root keys=["a"]',
        ),
        ({"uptime": 3017, "x": "y" * 200}, "uptime=3017 x=" + "y" * 85 + "…"),
    ],
    ids=["own-message", "opencanary", "truncated"],
)
def test_summary(data, text):
    assert summary(data) == text
