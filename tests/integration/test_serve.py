"""The runner as a subprocess: OpenCanary records over TCP and HTTP reach a real subscriber."""

from __future__ import annotations

import json
import os
import select
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


def write_config(tmp_path, config: dict) -> str:
    path = tmp_path / f"config-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(config))
    return str(path)


HS512_ONLY = {"websocket.auth.jwt.algorithms": ["HS512"]}


@pytest.mark.parametrize(
    ("args", "config", "message"),
    [
        (("--alg", "HS256"), HS512_ONLY, "--alg HS256 is not in websocket.auth.jwt.algorithms"),
        (("--scope", "chanel:*"), {}, "unknown scope 'chanel:*' (known: channel:NAME, channel:*"),
        (
            ("--scope", "channel:nope"),
            {},
            "scope 'channel:nope': channel 'nope' is not in websocket.channels (threats,",
        ),
        (("--scope", "channel:Bad!"), {}, "bad channel name in scope 'channel:Bad!'"),
        (("--scope", " "), {}, "--scope names no scope"),
        (("--ttl", "0"), {}, "--ttl must be above 0 seconds (got 0)"),
        (("--ttl", "-5"), {}, "--ttl must be above 0 seconds (got -5)"),
    ],
    ids=[
        "alg-not-allowed",
        "mistyped-scope",
        "undeclared-channel",
        "bad-name",
        "no-scope",
        "ttl-zero",
        "ttl-negative",
    ],
)
def test_token_refuses_what_the_server_would_refuse(tmp_path, args, config, message):
    path = write_config(tmp_path, {**base_config(), **config})
    result = run_cli("token", "--config", path, "--sub", "soc", *args)
    assert result.returncode == 2 and result.stdout == ""
    assert f"netsentinel-websocket token: {message}" in result.stderr
    assert "Traceback" not in result.stderr


def test_token_refuses_a_secret_below_the_minimum():
    result = run_cli("token", "--secret", "5byte", "--sub", "soc")
    assert result.returncode == 2 and result.stdout == ""
    assert "the secret must be at least 16 characters" in result.stderr


def test_token_signs_with_the_algorithm_the_config_allows(tmp_path):
    import jwt

    path = write_config(tmp_path, {**base_config(), **HS512_ONLY})
    result = run_cli("token", "--config", path, "--sub", "soc")
    assert result.returncode == 0
    assert jwt.get_unverified_header(result.stdout.strip())["alg"] == "HS512"
    assert "the first HS one" in run_cli("token", "--help").stdout  # --alg has help


async def welcome(url: str, token: str) -> dict:
    conn = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"Bearer {token}"}))
    message = await WSClient(conn).recv()
    conn.close()
    return message


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.gen_test(timeout=40)
async def test_dev_keeps_the_configured_secret(serve_process, tmp_path):
    """``serve --dev`` fills in only what is missing: tokens minted with ``token --config`` for
    the same file work, and the dev token is signed with the allowlist's algorithm."""
    import jwt

    config = {**base_config(), **HS512_ONLY}
    server = serve_process(config, "--dev")
    out = "".join(server.stdout_lines)
    assert "tokens are signed (HS512) with the configured secret" in out
    assert "throw-away" not in out
    minted = run_cli("token", "--config", str(server.config_path), "--sub", "ops").stdout.strip()
    assert (await welcome(server.url, minted))["type"] == "welcome"
    dev_token = next(line.strip() for line in server.stdout_lines if line.startswith("eyJ"))
    assert jwt.decode(dev_token, SECRET, algorithms=["HS512"])["sub"] == "dev"


def test_dev_hint_works_without_a_venv_and_keeps_the_token_off_the_command_line(
    serve_process, tmp_path
):
    server = serve_process(base_config(), "--dev")
    token = next(line.strip() for line in server.stdout_lines if line.startswith("eyJ"))
    hint = next(line for line in server.stdout_lines if line.startswith("Try: "))[5:].strip()
    assert token not in hint
    token_file = hint.split("--token-file ")[1].split()[0]
    assert os.stat(token_file).st_mode & 0o077 == 0  # only its owner reads it
    # No venv on PATH, another directory: what a second terminal gives.
    tail = subprocess.Popen(
        ["bash", "-c", hint],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = ""
        deadline = time.monotonic() + 15
        while "honeypot.ssh.login_attempt" not in line and time.monotonic() < deadline:
            server.send_lines([record(1)])
            line = tail.stdout.readline() if _readable(tail.stdout, 0.2) else ""
        assert "honeypot.ssh.login_attempt" in line
    finally:
        tail.terminate()
        tail.communicate(timeout=10)
    assert server.stop() == 0
    assert not os.path.exists(token_file)  # removed when the server stops


def _readable(stream, timeout: float) -> bool:
    return bool(select.select([stream], [], [], timeout)[0])


@pytest.mark.parametrize("key", ["server.port", "websocket.ingest.tcp"])
def test_address_in_use_names_the_port_and_its_key(tmp_path, key):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        value = port if key == "server.port" else f"127.0.0.1:{port}"
        result = run_cli(
            "serve",
            "--config",
            write_config(tmp_path, base_config(**{key.replace(".", "__"): value})),
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port} ({key}): Address already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_degraded_healthz_is_not_logged_as_an_error(serve_process):
    """A 503 from /healthz answers the probe; logging it at ERROR on every probe would bury
    the one line that says why (the broker's own)."""
    from tornado.httpclient import HTTPClient, HTTPClientError

    from ..conftest import ReservedPort

    nothing = ReservedPort()  # no Redis listens there
    server = serve_process(base_config(websocket__broker=f"redis://127.0.0.1:{nothing.port}/0"))
    client = HTTPClient()
    try:
        for _ in range(3):
            with pytest.raises(HTTPClientError) as answer:
                client.fetch(server.http + "/healthz")
            assert answer.value.code == 503
    finally:
        client.close()
        nothing.release()
    logged = server.stderr_text()
    assert "redis broker unavailable" in logged
    assert "/healthz" not in logged
