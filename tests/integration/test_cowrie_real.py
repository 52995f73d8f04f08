"""A real Cowrie (from PyPI) feeding ``serve`` over its ``output_socketlog``, attacked with SSH.

Cowrie refuses to run as root, so it runs as an unprivileged user from a virtualenv that user
can read: ``tools/setup_cowrie.sh`` prepares both and prints ``NETSENTINEL_COWRIE_VENV`` and
``NETSENTINEL_COWRIE_USER``. Without them the test is skipped, unless
``NETSENTINEL_REQUIRE_COWRIE=1`` makes that a failure (CI).
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from ..conftest import WSClient, base_config, free_port, make_token

paramiko = pytest.importorskip("paramiko")

pytestmark = pytest.mark.cowrie

SENSOR = "cowrie-it"
GOOD_PASSWORD = "hunter2"  # Cowrie's default userdb: root with anything but root/123456
BAD_PASSWORD = "root"


class CowrieSetup:
    """Where the prepared Cowrie is: its virtualenv and the user it runs as."""

    def __init__(self, venv: Path, user: str) -> None:
        self.venv = venv
        self.user = user
        self.uid = pwd.getpwnam(user).pw_uid


@pytest.fixture(scope="session")
def cowrie_setup() -> CowrieSetup:
    """The Cowrie tools/setup_cowrie.sh prepared; skipped (or failed, when required) without."""
    venv = Path(os.environ.get("NETSENTINEL_COWRIE_VENV", "/nonexistent"))
    user = os.environ.get("NETSENTINEL_COWRIE_USER", "cowrie")
    problem = None
    if "NETSENTINEL_COWRIE_VENV" not in os.environ:
        problem = "NETSENTINEL_COWRIE_VENV is not set (run tools/setup_cowrie.sh as root)"
    elif not (venv / "bin" / "twistd").is_file():
        problem = f"no Cowrie virtualenv at {venv} (run tools/setup_cowrie.sh as root)"
    elif os.geteuid() != 0:
        problem = "starting Cowrie as its own user needs root (runuser)"
    else:
        try:
            pwd.getpwnam(user)
        except KeyError:
            problem = f"no user {user!r} to run Cowrie as (run tools/setup_cowrie.sh)"
    if problem is not None:
        if os.environ.get("NETSENTINEL_REQUIRE_COWRIE") == "1":
            pytest.fail(f"Cowrie is required (NETSENTINEL_REQUIRE_COWRIE=1): {problem}")
        pytest.skip(problem)
    return CowrieSetup(venv, user)


class Cowrie:
    """One Cowrie process with its own state directory (etc/, var/) readable by its user."""

    def __init__(self, setup: CowrieSetup, ingest_port: int) -> None:
        self.setup = setup
        self.ssh_port = free_port()
        # Not pytest's tmp_path: its parent is private to root, and Cowrie is another user.
        self.home = Path(tempfile.mkdtemp(prefix="netsentinel-cowrie-"))
        for sub in ("etc", "var/log/cowrie", "var/lib/cowrie/downloads", "var/lib/cowrie/tty"):
            (self.home / sub).mkdir(parents=True)
        (self.home / "var/run").mkdir()
        (self.home / "etc/cowrie.cfg").write_text(
            f"""
[honeypot]
sensor_name = {SENSOR}
hostname = svr04
logtype = plain

[ssh]
enabled = true
listen_endpoints = tcp:{self.ssh_port}:interface=127.0.0.1

[telnet]
enabled = false

[output_jsonlog]
enabled = true
logfile = ${{honeypot:log_path}}/cowrie.json

[output_socketlog]
enabled = true
address = 127.0.0.1:{ingest_port}
timeout = 5
"""
        )
        for path in [self.home, *self.home.rglob("*")]:
            os.chown(path, setup.uid, -1)
        self.home.chmod(0o755)
        self.log_path = self.home / "twistd.out"
        self.json_path = self.home / "var/log/cowrie/cowrie.json"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> None:
        """Start twistd in the foreground as the user; return once SSH is accepted."""
        twistd = str(self.setup.venv / "bin" / "twistd")
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                ["runuser", "-u", self.setup.user, "--", "env", "TZ=UTC", twistd, "-n"]
                + ["--umask=0022", "--pidfile", "var/run/cowrie.pid"]
                + ["--logger", "cowrie.python.logfile.stdoutLogger", "cowrie"],
                cwd=self.home,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so stop() reaches twistd
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "Ready to accept SSH connections" in self.output():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError("Cowrie did not start:\n" + self.output())

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def records(self) -> list[dict[str, Any]]:
        """What Cowrie wrote to its JSON log (the same records socketlog sent)."""
        text = self.json_path.read_text() if self.json_path.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line]

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM to its process group (twistd shuts down cleanly), SIGKILL after timeout."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.home, ignore_errors=True)


@pytest.fixture
def cowrie(cowrie_setup) -> Iterator[Any]:
    """``cowrie(ingest_port)`` starts a Cowrie sending to that port; stopped at teardown."""
    started: list[Cowrie] = []

    def start(ingest_port: int) -> Cowrie:
        instance = Cowrie(cowrie_setup, ingest_port)
        started.append(instance)
        instance.start()
        return instance

    yield start
    for instance in started:
        instance.stop()


def attack(port: int) -> None:
    """What a brute-forcer does: a wrong password, a right one, a command, then leave."""
    for password in (BAD_PASSWORD, GOOD_PASSWORD):
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            client.connect(
                "127.0.0.1",
                port=port,
                username="root",
                password=password,
                look_for_keys=False,
                allow_agent=False,
                timeout=15,
            )
        except paramiko.AuthenticationException:
            assert password == BAD_PASSWORD
            client.close()
            continue
        shell = client.invoke_shell()
        shell.settimeout(15)
        shell.send(b"uname -a\n")
        output = b""
        while b"Linux" not in output:
            output += shell.recv(4096)
        shell.send(b"exit\n")
        client.close()


async def subscribe(url: str, channels: list[str], scope: str) -> WSClient:
    token = make_token(scope=scope)
    conn = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"Bearer {token}"}))
    client = WSClient(conn)
    assert (await client.recv())["type"] == "welcome"
    reply = await client.request({"type": "subscribe", "id": 1, "channels": channels})
    assert reply["type"] == "subscribed"
    return client


async def until_closed(client: WSClient, sessions: int, timeout: float) -> list[dict[str, Any]]:
    """Event messages until ``sessions`` sessions have closed on the events channel."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while sum(1 for m in got if m["event"]["event_type"] == "honeypot.ssh.session_closed") < (
        sessions
    ):
        got.append(await client.recv_type("event", max(0.1, deadline - time.monotonic())))
    # The flush that carried the last close may hold a frame for another channel after it (an
    # event routed to both `events` and `threats`): a ping's pong comes after all of it.
    client.send({"type": "ping", "id": "drain"})
    while (msg := await client.recv(max(0.1, deadline - time.monotonic())))["type"] != "pong":
        if msg["type"] == "event":
            got.append(msg)
    return got


def first(messages: list[dict[str, Any]], event_type: str) -> dict[str, Any]:
    return next(m["event"] for m in messages if m["event"]["event_type"] == event_type)


def types(messages: list[dict[str, Any]], session: str) -> list[str]:
    return [m["event"]["event_type"] for m in messages if m["event"]["correlation_id"] == session]


@pytest.mark.gen_test(timeout=90)
async def test_real_cowrie_ssh_session_reaches_subscribers(serve_process, cowrie):
    server = serve_process(base_config())
    plain = await subscribe(server.url, ["events", "threats"], "channel:*")
    sensitive = await subscribe(server.url, ["events"], "channel:* events:sensitive")
    honeypot = cowrie(server.ingest_port)

    await asyncio.get_running_loop().run_in_executor(None, attack, honeypot.ssh_port)

    messages = await until_closed(plain, sessions=2, timeout=30)
    events = [m for m in messages if m["channel"] == "events"]
    login = first(events, "honeypot.ssh.login_failed")
    good = first(events, "honeypot.ssh.login_success")
    failed_session, good_session = login["correlation_id"], good["correlation_id"]
    assert len(failed_session) == 12 and failed_session != good_session

    # The failed attempt's connection, in Cowrie's order.
    assert types(events, failed_session) == [
        "honeypot.ssh.session_connect",
        "honeypot.ssh.client_version",
        "honeypot.ssh.client_kex",
        "honeypot.ssh.login_failed",
        "honeypot.ssh.session_closed",
    ]
    session = types(events, good_session)
    assert session[:4] == [
        "honeypot.ssh.session_connect",
        "honeypot.ssh.client_version",
        "honeypot.ssh.client_kex",
        "honeypot.ssh.login_success",
    ]
    assert "honeypot.ssh.command_input" in session
    assert session[-1] == "honeypot.ssh.session_closed"

    # Normalized, and the attempted password hidden from a token without events:sensitive.
    assert login["severity"] == "high" and login["source"] == SENSOR
    assert login["tags"] == ["cowrie", "ssh", "login_failed"]
    assert login["metadata"]["origin"] == "cowrie"
    data = login["data"]
    assert data["session"] == failed_session
    assert data["src_ip"] == "127.0.0.1" and data["dst_port"] == honeypot.ssh_port
    assert data["protocol"] == "ssh" and data["username"] == "root"
    assert data["password"] == "[redacted]"
    assert data["message"] == "login attempt [root/[redacted]] failed"
    assert good["data"]["password"] == "[redacted]"
    assert good["data"]["message"] == "login attempt [root/[redacted]] succeeded"
    command = first(events, "honeypot.ssh.command_input")
    assert command["data"]["input"] == "uname -a"
    assert command["severity"] == "high" and command["correlation_id"] == good_session

    # Threats: the high ones (connects, logins, the command), not the low session details.
    threats = [m["event"]["event_type"] for m in messages if m["channel"] == "threats"]
    assert threats.count("honeypot.ssh.session_connect") == 2
    assert {"honeypot.ssh.login_failed", "honeypot.ssh.login_success"} <= set(threats)
    assert "honeypot.ssh.command_input" in threats
    assert "honeypot.ssh.session_closed" not in threats and "honeypot.ssh.client_kex" not in threats

    # A token with events:sensitive sees what was typed.
    seen = await until_closed(sensitive, sessions=2, timeout=10)
    passwords = {m["event"]["data"].get("password") for m in seen} - {None}
    assert passwords == {BAD_PASSWORD, GOOD_PASSWORD}
    assert "login attempt [root/root] failed" in {m["event"]["data"]["message"] for m in seen}

    # Every record Cowrie wrote became exactly one event, in order.
    records = [r for r in honeypot.records() if r.get("session") in (failed_session, good_session)]
    assert [r["eventid"] for r in records] == [m["event"]["data"]["eventid"] for m in events]
