"""A real OpenCanary (from PyPI) feeding ``serve`` through its own logging handlers.

OpenCanary pins dependencies that clash with the test environment, so it lives in a virtualenv
of its own (``tools/setup_opencanary.sh``), named by ``NETSENTINEL_OPENCANARY_VENV``. Without it
these tests are skipped, unless ``NETSENTINEL_REQUIRE_OPENCANARY=1`` makes that a failure.
"""

from __future__ import annotations

import asyncio
import ftplib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from tests.conftest import WSClient, base_config, free_port, make_token

pytestmark = pytest.mark.opencanary

FTP_PASSWORD = "ftp-Secret-41"
HTTP_PASSWORD = "http-Secret-42"
REDIS_PASSWORD = "redis-Secret-43"
SECRETS = (FTP_PASSWORD, HTTP_PASSWORD, REDIS_PASSWORD)
LOGINS = ("honeypot.ftp.login_attempt", "honeypot.http.login_attempt", "honeypot.redis.command")


def opencanary_venv() -> Path:
    """The virtualenv with OpenCanary, or a skip (a failure when it is required)."""
    path = os.environ.get("NETSENTINEL_OPENCANARY_VENV", "")
    venv = Path(path) if path else None
    reason = None
    if venv is None:
        reason = "NETSENTINEL_OPENCANARY_VENV is not set (see tools/setup_opencanary.sh)"
    elif not (venv / "bin" / "twistd").is_file() or not (venv / "bin" / "opencanary.tac").is_file():
        reason = f"no OpenCanary in {venv} (run tools/setup_opencanary.sh {venv})"
    elif Path("/etc/opencanaryd/opencanary.conf").exists():
        reason = "/etc/opencanaryd/opencanary.conf exists and would override the test's config"
    if reason is None:
        return venv  # type: ignore[return-value]
    if os.environ.get("NETSENTINEL_REQUIRE_OPENCANARY") == "1":
        pytest.fail(f"OpenCanary is required (NETSENTINEL_REQUIRE_OPENCANARY=1): {reason}")
    pytest.skip(reason)


class OpenCanary:
    """``opencanaryd --dev`` without its wrapper script: twistd in the foreground, with a pid
    file and a config of the test's own (``~/.opencanary.conf`` with HOME set to the test's
    directory, the second place OpenCanary looks)."""

    def __init__(self, venv: Path, home: Path, config: dict[str, Any]) -> None:
        self.venv = venv
        self.home = home
        (home / ".opencanary.conf").write_text(json.dumps(config))
        self.out = home / "opencanary.out"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ports: list[int], timeout: float = 30) -> OpenCanary:
        bin_dir = self.venv / "bin"
        env = {**os.environ, "HOME": str(self.home), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
        env.pop("PYTHONPATH", None)
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen(
                [
                    str(bin_dir / "twistd"),
                    "-noy",
                    str(bin_dir / "opencanary.tac"),
                    "--pidfile",
                    str(self.home / "opencanary.pid"),
                ],
                cwd=self.home,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while not all(listening(port) for port in ports):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("OpenCanary did not start:\n" + self.output())
            time.sleep(0.1)
        return self

    def output(self) -> str:
        return self.out.read_text(errors="replace") if self.out.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def opencanary(tmp_path: Path) -> Iterator[Any]:
    """``opencanary(config, ports)``: a started OpenCanary, stopped at teardown."""
    venv = opencanary_venv()
    canaries: list[OpenCanary] = []

    def start(config: dict[str, Any], ports: list[int]) -> OpenCanary:
        home = tmp_path / f"canary-{len(canaries)}"
        home.mkdir()
        canary = OpenCanary(venv, home, config)
        canaries.append(canary)
        return canary.start(ports)

    yield start
    for canary in canaries:
        canary.stop()


def canary_config(ports: dict[str, int], handlers: dict[str, Any]) -> dict[str, Any]:
    """ftp, http and redis on loopback, every other module off, logging to ``handlers``."""
    return {
        "device.node_id": "canary-test-1",
        "device.listen_addr": "127.0.0.1",
        "ip.ignorelist": [],
        "logtype.ignorelist": [],
        "ftp.enabled": True,
        "ftp.port": ports["ftp"],
        "ftp.banner": "FTP server ready",
        "http.enabled": True,
        "http.port": ports["http"],
        "http.banner": "Apache/2.2.22 (Ubuntu)",
        "http.skin": "nasLogin",
        "redis.enabled": True,
        "redis.port": ports["redis"],
        "logger": {"class": "PyLogger", "kwargs": {"handlers": handlers}},
    }


def touch_every_module(ports: dict[str, int]) -> None:
    """One login attempt on each module, as an attacker's tools would make it."""
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", ports["ftp"], timeout=5)
    with pytest.raises(ftplib.error_perm):
        ftp.login("root", FTP_PASSWORD)
    ftp.close()
    form = urllib.parse.urlencode({"username": "admin", "password": HTTP_PASSWORD}).encode()
    url = f"http://127.0.0.1:{ports['http']}/index.html"
    try:
        urllib.request.urlopen(urllib.request.Request(url, data=form), timeout=5).read()
    except urllib.error.HTTPError:
        pass  # the login page answers a failed login with its error page
    with socket.create_connection(("127.0.0.1", ports["redis"]), timeout=5) as sock:
        sock.sendall(f"AUTH {REDIS_PASSWORD}\r\n".encode())
        assert sock.recv(1024).startswith(b"-")


async def subscriber(url: str, scope: str) -> WSClient:
    token = make_token(sub=scope.replace(" ", "+"), scope=scope)
    conn = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"Bearer {token}"}))
    client = WSClient(conn)
    assert (await client.recv())["type"] == "welcome"
    reply = await client.request({"type": "subscribe", "id": 1, "channels": ["events"]})
    assert reply["type"] == "subscribed", reply
    return client


async def logins(client: WSClient, per_type: int, timeout: float) -> list[dict[str, Any]]:
    """Events of the channel until each login type was seen ``per_type`` times."""
    seen: Counter[str] = Counter()
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while any(seen[kind] < per_type for kind in LOGINS):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"only {dict(seen)} after {timeout}s; got {got}")
        try:
            message = await client.recv_type("event", left)
        except asyncio.TimeoutError:
            raise AssertionError(f"only {dict(seen)} after {timeout}s; got {got}") from None
        got.append(message["event"])
        seen[message["event"]["event_type"]] += 1
    return got


def only(events: list[dict[str, Any]], event_type: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event_type"] == event_type]


@pytest.mark.gen_test(timeout=90)
async def test_socket_file_and_webhook_handlers_feed_subscribers_with_passwords_redacted(
    serve_process, opencanary, tmp_path
):
    """OpenCanary's SocketJSONHandler (TCP ingest), a WatchedFileHandler (file ingest) and
    WebhookHandler (``POST /ingest``, its default form body, the token in ``headers``) each
    deliver every record: each login attempt arrives three times, normalized; without
    ``events:sensitive`` no password appears anywhere."""
    ingest_token = make_token(sub="opencanary", scope="ingest")
    log_file = tmp_path / "opencanary.log"
    server = serve_process(
        base_config(
            websocket__ingest__files=[{"path": str(log_file), "format": "opencanary"}],
            websocket__ingest__state_dir=str(tmp_path / "state"),
            websocket__ingest__poll_interval=0.05,
        )
    )
    ports = {"ftp": free_port(), "http": free_port(), "redis": free_port()}
    handlers = {
        "tcp": {
            "class": "opencanary.logger.SocketJSONHandler",
            "host": "127.0.0.1",
            "port": server.ingest_port,
        },
        "webhook": {
            "class": "opencanary.logger.WebhookHandler",
            "url": f"{server.http}/ingest",
            "method": "POST",
            "headers": {"Authorization": f"Bearer {ingest_token}"},
            "timeout": 5,
        },
        "file": {"class": "logging.handlers.WatchedFileHandler", "filename": str(log_file)},
    }
    plain = await subscriber(server.url, "channel:*")
    sensitive = await subscriber(server.url, "channel:* events:sensitive")
    canary = opencanary(canary_config(ports, handlers), list(ports.values()))

    await asyncio.get_running_loop().run_in_executor(None, touch_every_module, ports)
    hidden = await logins(plain, per_type=3, timeout=20)
    shown = await logins(sensitive, per_type=3, timeout=20)

    assert "Error" not in canary.output(), canary.output()  # the webhook got the 200 it expects
    for event_type in LOGINS:  # once through each handler
        assert len(only(hidden, event_type)) == 3, hidden
        assert len(only(shown, event_type)) == 3, shown
    for event in [e for e in hidden + shown if e["event_type"] in LOGINS]:
        assert event["source"] == "canary-test-1"
        assert event["data"]["src_ip"] == "127.0.0.1"
        assert "src_geo" not in event["data"]  # loopback has no country (and geoip is off)
        assert event["metadata"]["origin"] == "opencanary"
    for event in only(hidden, "honeypot.ftp.login_attempt"):
        assert event["severity"] == "high"
        assert event["data"]["dst_port"] == ports["ftp"]
        assert event["data"]["logdata"] == {"USERNAME": "root", "PASSWORD": "[redacted]"}
    for event in only(hidden, "honeypot.http.login_attempt"):
        assert event["severity"] == "high"
        assert event["data"]["dst_port"] == ports["http"]
        assert event["data"]["logdata"]["USERNAME"] == "admin"
        assert event["data"]["logdata"]["PASSWORD"] == "[redacted]"
        assert event["data"]["logdata"]["PATH"] == "/index.html"
    for event in only(hidden, "honeypot.redis.command"):
        assert event["data"]["logdata"]["CMD"] == "AUTH"
        assert event["data"]["logdata"]["ARGS"] == "[redacted]"
    # Nowhere at all, free text included, for the subscriber without the scope.
    everything_hidden = json.dumps(hidden)
    for secret in SECRETS:
        assert secret not in everything_hidden
    ftp = only(shown, "honeypot.ftp.login_attempt")
    assert [e["data"]["logdata"]["PASSWORD"] for e in ftp] == [FTP_PASSWORD] * 3
    http = only(shown, "honeypot.http.login_attempt")
    assert [e["data"]["logdata"]["PASSWORD"] for e in http] == [HTTP_PASSWORD] * 3
    redis = only(shown, "honeypot.redis.command")
    assert [e["data"]["logdata"]["ARGS"] for e in redis] == [REDIS_PASSWORD] * 3
    plain.close()
    sensitive.close()


@pytest.mark.gen_test(timeout=90)
async def test_socket_handler_loses_no_record_across_a_runner_restart(serve_process, opencanary):
    """Python's SocketHandler never reads, so a connection the runner closed with a FIN looks
    open to it: its next record went into the dead connection and was lost. The runner now
    drains and resets ingest connections on shutdown, so that write fails, OpenCanary retries
    (every 1.5 s) and the record reaches the restarted runner."""
    server = serve_process(base_config())
    ports = {"ftp": free_port(), "http": free_port(), "redis": free_port()}
    handlers = {
        "tcp": {
            "class": "opencanary.logger.SocketJSONHandler",
            "host": "127.0.0.1",
            "port": server.ingest_port,
        }
    }
    client = await subscriber(server.url, "channel:*")
    opencanary(canary_config(ports, handlers), list(ports.values()))
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, touch_every_module, ports)
    assert len(await logins(client, per_type=1, timeout=20)) >= 3
    client.close()

    server.stop()
    server.start()  # same ports
    client = await subscriber(server.url, "channel:*")
    await loop.run_in_executor(None, touch_every_module, ports)
    after = await logins(client, per_type=1, timeout=20)
    assert sorted(e["event_type"] for e in after if e["event_type"] in LOGINS) == sorted(LOGINS)
    client.close()
