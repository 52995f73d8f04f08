"""The runner as a subprocess: OpenCanary records over TCP and HTTP reach a real subscriber."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

from ..conftest import SECRET, WSClient, base_config, make_token

SSH_LOGIN = {
    "dst_host": "10.0.0.5",
    "dst_port": 22,
    "logdata": {"USERNAME": "root", "PASSWORD": "hunter2"},
    "logtype": 4002,
    "node_id": "canary-1",
    "src_host": "203.0.113.7",
    "src_port": 51234,
    "utc_time": "2026-11-24 19:11:10.123456",
}


async def subscribe(url: str, channels: list[str], scope: str = "channel:*") -> WSClient:
    token = make_token(scope=scope)
    conn = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"Bearer {token}"}))
    client = WSClient(conn)
    assert (await client.recv())["type"] == "welcome"
    assert (await client.request({"type": "subscribe", "id": 1, "channels": channels}))[
        "type"
    ] == "subscribed"
    return client


def record(n: int, **changes) -> bytes:
    return json.dumps({**SSH_LOGIN, "src_port": 40000 + n, **changes}).encode()


@pytest.mark.gen_test(timeout=40)
async def test_opencanary_over_tcp_reaches_events_and_threats(serve_process):
    server = serve_process(base_config())
    events = await subscribe(server.url, ["events"])
    threats = await subscribe(server.url, ["threats"])
    server.send_lines([record(1)])
    got = (await events.events(1))[0]
    assert got["channel"] == "events"
    assert got["event"]["event_type"] == "honeypot.ssh.login_attempt"
    assert got["event"]["source"] == "canary-1"
    assert got["event"]["data"]["src_ip"] == "203.0.113.7"
    assert got["event"]["data"]["logdata"]["PASSWORD"] == "[redacted]"
    high = (await threats.events(1))[0]
    assert high["event"]["id"] == got["event"]["id"] and high["event"]["severity"] == "high"


@pytest.mark.gen_test(timeout=40)
async def test_sensitive_scope_sees_the_password(serve_process):
    server = serve_process(base_config())
    client = await subscribe(server.url, ["events"], scope="channel:events events:sensitive")
    server.send_lines([record(1)])
    assert (await client.events(1))[0]["event"]["data"]["logdata"]["PASSWORD"] == "hunter2"


BAD_LINES = [
    b"not json at all",
    b"\xff\xfe\xfd invalid utf-8",
    b"[1,2,3]",
    b'{"no": "logtype or event_type"}',
    b'{"logtype": "ssh"}',
    b'{"event_type": "threat.x", "severity": "apocalyptic"}',
    b"x" * (10 * 1024 * 1024),
]


@pytest.mark.gen_test(timeout=60)
async def test_bad_lines_are_counted_and_every_good_line_kept(serve_process):
    server = serve_process(base_config())
    client = await subscribe(server.url, ["events"])
    lines = []
    for n, bad in enumerate(BAD_LINES):
        lines += [record(n), bad]
    lines.append(record(len(BAD_LINES)))
    server.send_lines(lines)  # one connection: the bad lines must not cost it
    got = await client.events(len(BAD_LINES) + 1, timeout=20)
    assert [m["event"]["data"]["src_port"] - 40000 for m in got] == list(range(len(BAD_LINES) + 1))
    assert [m["offset"] for m in got] == list(range(1, len(BAD_LINES) + 2))
    metrics = (await AsyncHTTPClient().fetch(server.http + "/metrics")).body.decode()
    rejected = {
        line.split('"')[1]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("netsentinel_ws_ingest_rejected_total{")
    }
    assert rejected == {"malformed": 2.0, "not_object": 1.0, "invalid": 3.0, "too_long": 1.0}
    assert server.proc.poll() is None


@pytest.mark.gen_test(timeout=40)
async def test_post_ingest_three_body_forms(serve_process):
    server = serve_process(base_config())
    client = await subscribe(server.url, ["events"])
    http = AsyncHTTPClient()
    ingest = make_token(sub="opencanary", scope="ingest")

    async def post(body: object, token: str | None = ingest) -> tuple[int, dict]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await http.fetch(
            HTTPRequest(
                server.http + "/ingest", method="POST", body=json.dumps(body), headers=headers
            ),
            raise_error=False,
        )
        return response.code, json.loads(response.body)

    assert await post(json.loads(record(1))) == (202, {"accepted": 1, "errors": []})
    assert await post([json.loads(record(2)), json.loads(record(3))]) == (
        202,
        {"accepted": 2, "errors": []},
    )
    assert await post({"message": record(4).decode()}) == (202, {"accepted": 1, "errors": []})
    code, body = await post([json.loads(record(5)), {"bogus": True}])
    assert code == 202 and body["accepted"] == 1 and body["errors"][0]["index"] == 1
    code, body = await post([{"bogus": True}])
    assert code == 400 and body["accepted"] == 0
    assert (await post(json.loads(record(6)), token=None))[0] == 401
    assert (await post(json.loads(record(6)), token=make_token(scope="channel:*")))[0] == 403
    got = await client.events(5)
    assert [m["event"]["data"]["src_port"] - 40000 for m in got] == [1, 2, 3, 4, 5]


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "netsentinel_websocket", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


def test_check_config_exit_codes(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(base_config()))
    result = run_cli("check-config", str(good))
    assert result.returncode == 0 and "OK" in result.stdout
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"websocket.queue.max_bytes": "big"}))
    result = run_cli("check-config", str(bad))
    assert result.returncode == 2
    assert "websocket.queue.max_bytes: must be an integer" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_bad_config_with_exit_2(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"websocket.enabled": True, "websocket.limits.per_ip": 0}))
    result = run_cli("serve", "--config", str(bad))
    assert result.returncode == 2
    assert "websocket.limits.per_ip: must be between" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_without_enabled_plugin_says_so(tmp_path):
    path = tmp_path / "off.json"
    path.write_text("{}")
    result = run_cli("serve", "--config", str(path))
    assert result.returncode == 2 and "websocket.enabled" in result.stderr


def test_gc_threshold_is_applied_and_logged(serve_process):
    server = serve_process(base_config(server__gc_threshold=12345))
    assert "garbage collector thresholds (12345, " in server.stderr_text()
    server.stop()
    default = serve_process(base_config())
    assert "garbage collector thresholds (50000, " in default.stderr_text()


def test_secret_never_logged(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({**base_config(), "websocket.limits.per_ip": -5}))
    result = run_cli("serve", "--config", str(path))
    assert SECRET not in result.stderr + result.stdout


def test_token_command_mints_a_working_token(tmp_path):
    import jwt

    path = tmp_path / "c.json"
    path.write_text(json.dumps(base_config()))
    result = run_cli(
        "token",
        "--config",
        str(path),
        "--sub",
        "soc",
        "--scope",
        "channel:threats admin",
        "--ttl",
        "60",
    )
    assert result.returncode == 0
    claims = jwt.decode(result.stdout.strip(), SECRET, algorithms=["HS256"])
    assert claims["sub"] == "soc" and claims["scope"] == "channel:threats admin"
    assert 55 <= claims["exp"] - time.time() <= 61
    result = run_cli("token", "--sub", "x", "--config", str(tmp_path / "missing.json"))
    assert result.returncode == 2


@pytest.mark.gen_test(timeout=40)
async def test_dev_demo_mode_prints_a_token_and_streams(serve_process, tmp_path):
    ingest = socket.socket()
    ingest.bind(("127.0.0.1", 0))
    port = ingest.getsockname()[1]
    ingest.close()
    server = serve_process(
        {"server.port": 0, "websocket.ingest.tcp": f"127.0.0.1:{port}"}, "--dev", "--demo"
    )
    out = "".join(server.stdout_lines)
    assert "DEVELOPMENT MODE" in out
    token = next(line.strip() for line in server.stdout_lines if line.startswith("eyJ"))
    conn = await websocket_connect(
        HTTPRequest(server.url, headers={"Authorization": f"Bearer {token}"})
    )
    client = WSClient(conn)
    assert (await client.recv())["type"] == "welcome"
    await client.request(
        {"type": "subscribe", "id": 1, "channels": ["events", "threats", "status", "alerts"]}
    )
    got = await client.events(3, timeout=15)
    assert all(m["event"]["event_type"] for m in got)
