"""Hostile HTTP against a real ``serve``: big anonymous bodies, ingest floods, slowloris,
descriptor exhaustion, odd static paths and the dashboard's CSP.

Each attack runs inside a :class:`Guard`: the attacker gets the documented refusal, a subscriber
connected throughout receives every event in order, and the server's RSS stays within a bound.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from typing import Any

import orjson
import pytest

from ..conftest import make_token
from .attack import Guard, Witness, attack_config, raw_connection, wait_until

MIB = 1024 * 1024
ATTACKER = "127.0.0.2"  # the whole of 127/8 is local: the attacker's address is not the witness's


async def _read_head(sock: socket.socket, timeout: float) -> bytes:
    """Bytes up to the end of a response head (or whatever came before EOF or a reset)."""
    loop = asyncio.get_running_loop()
    data = b""
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in data:
        try:
            chunk = await asyncio.wait_for(
                loop.sock_recv(sock, 65536), max(0.01, deadline - time.monotonic())
            )
        except ConnectionError:
            break
        if not chunk:
            break
        data += chunk
    return data


def _status(head: bytes) -> int | None:
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


async def upload(
    port: int,
    path: str,
    length: int,
    token: str | None = None,
    *,
    chunked: bool = False,
    stall_after: int | None = None,
) -> tuple[int | None, int, socket.socket]:
    """POST a body of ``length`` zero bytes while reading the answer, as an attacker would:
    (status, bytes the server let us send, the socket). ``stall_after``: stop sending after that
    many body bytes and return without waiting for an answer (status None)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}"
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}{framing}\r\n\r\n"
    await loop.sock_sendall(sock, head.encode())
    sent = 0
    block = b"\0" * (64 * 1024)

    async def send_body() -> None:
        nonlocal sent
        try:
            while sent < length and (stall_after is None or sent < stall_after):
                n = min(len(block), length - sent)
                piece = block[:n]
                if chunked:
                    piece = b"%x\r\n%s\r\n" % (n, piece)
                await loop.sock_sendall(sock, piece)
                sent += n
        except OSError:
            pass

    if stall_after is not None:
        await send_body()
        return None, sent, sock
    sender = asyncio.create_task(send_body())
    head_in = await _read_head(sock, 10)
    sender.cancel()
    await asyncio.gather(sender, return_exceptions=True)
    sock.close()
    return _status(head_in), sent, sock


async def http_get(port: int, path: str, host: str | None = None) -> tuple[int | None, str]:
    """A GET with a Host header of our choosing; (status, the response head as text)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host or f'127.0.0.1:{port}'}\r\nConnection: close\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    head = await _read_head(sock, 5)
    sock.close()
    return _status(head), head.decode("latin-1")


async def post_json(port: int, body: Any, token: str) -> tuple[int | None, dict[str, Any]]:
    """An ordinary ``POST /ingest`` with a JSON body; (status, the JSON answer)."""
    loop = asyncio.get_running_loop()
    payload = orjson.dumps(body)
    sock = socket.socket()
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    head = (
        f"POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        "Connection: close\r\n\r\n"
    )
    await loop.sock_sendall(sock, head.encode() + payload)
    data = b""
    while chunk := await asyncio.wait_for(loop.sock_recv(sock, 65536), 5):
        data += chunk
    sock.close()
    head_in, _, body_in = data.partition(b"\r\n\r\n")
    return _status(head_in), orjson.loads(body_in) if body_in else {}


def record(n: int) -> dict[str, Any]:
    """An OpenCanary login attempt numbered by its source port."""
    return {
        "logtype": 4002,
        "node_id": "canary-1",
        "src_host": "203.0.113.9",
        "src_port": 40000 + n,
        "dst_port": 22,
        "logdata": {"USERNAME": "root", "PASSWORD": "x"},
    }


@pytest.mark.gen_test(timeout=60)
async def test_big_anonymous_uploads_are_refused_before_they_are_read(serve_process):
    proc = serve_process(attack_config())
    targets = ["/ingest", "/ws/stats", "/healthz", "/ws/dashboard"]
    async with Guard(proc, rss_bound_kib=20 * 1024):
        results = await asyncio.gather(
            *(upload(proc.port, path, (50 + 15 * i) * MIB) for i, path in enumerate(targets)),
            *(upload(proc.port, path, 95 * MIB) for path in targets),
            upload(proc.port, "/ingest", 95 * MIB, chunked=True),
        )
    statuses = [status for status, _, _ in results]
    assert statuses == [413] * 8 + [401], statuses
    # What the kernel's socket buffers took, not what the server read: far from the bodies.
    assert max(sent for _, sent, _ in results) < 16 * MIB, [sent for _, sent, _ in results]
    assert "Traceback" not in proc.stderr_text()


@pytest.mark.gen_test(timeout=60)
async def test_ingest_uploads_are_bounded_in_size_and_number(serve_process):
    proc = serve_process(attack_config(websocket__ingest__max_uploads=2, server__body_timeout=2))
    ingest = make_token("canary", "ingest")
    async with Guard(proc, rss_bound_kib=20 * 1024):
        # Over websocket.ingest.max_line_bytes (1 MiB) with a good token: 413, unread.
        status, sent, _ = await upload(proc.port, "/ingest", 64 * MIB, ingest)
        assert status == 413 and sent < 16 * MIB
        # Without a token the body is not read even under that limit.
        assert (await upload(proc.port, "/ingest", 512 * 1024))[0] == 401
        # Two uploads that stall mid-body hold both slots: the next one is told to come back.
        stalled = [
            (await upload(proc.port, "/ingest", 512 * 1024, ingest, stall_after=128 * 1024))[2]
            for _ in range(2)
        ]
        refused = False
        for _ in range(50):
            status, body = await post_json(proc.port, record(1), ingest)
            if status == 503:
                refused = True
                break
            assert status == 202, (status, body)  # a slot was still free: not both prepared yet
            await asyncio.sleep(0.05)
        assert refused, "the third upload in flight was not refused"
        # server.body_timeout (2 s) closes the stalled uploads and frees their slots.
        loop = asyncio.get_running_loop()
        for sock in stalled:
            assert await asyncio.wait_for(loop.sock_recv(sock, 1), 5) == b""
            sock.close()
        status, body = await post_json(proc.port, [record(2), record(3)], ingest)
        assert (status, body) == (202, {"accepted": 2, "errors": []})
        # The reasons given back are bounded; the rest are counted.
        status, body = await post_json(proc.port, [{}] * 300, ingest)
        assert status == 400 and len(body["errors"]) == 100 and body["errors_omitted"] == 200


async def _slow_head(port: int, deadline: float) -> float:
    """One slowloris connection from ATTACKER: a request head, one byte a second; returns how
    long the server kept it open (``inf`` if it was still open at ``deadline``)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(ATTACKER, 0))
    start = time.monotonic()
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 100
    try:
        for byte in head:
            writer.write(bytes([byte]))
            try:
                if await asyncio.wait_for(reader.read(1), 1.0) == b"":
                    return time.monotonic() - start
            except asyncio.TimeoutError:
                pass
            if time.monotonic() > deadline:
                break
        return float("inf")
    except ConnectionError:
        return time.monotonic() - start
    finally:
        writer.close()


@pytest.mark.gen_test(timeout=60)
async def test_slowloris_is_reaped_and_capped_per_address(serve_process):
    idle, per_ip = 2, 32
    proc = serve_process(
        attack_config(server__idle_timeout=idle, server__max_pending_per_ip=per_ip)
    )
    async with Guard(proc, rss_bound_kib=20 * 1024):
        deadline = time.monotonic() + idle + 6
        attack = asyncio.gather(*(_slow_head(proc.port, deadline) for _ in range(300)))
        await asyncio.sleep(0.5)
        # Meanwhile a good client (another address) connects, subscribes and gets events.
        late = await Witness.connect(proc.port)
        assert len(await late.client.events(3)) == 3
        late.client.close()
        assert (await http_get(proc.port, "/healthz"))[0] == 200
        lifetimes = sorted(await attack)
    refused = [t for t in lifetimes if t < idle / 2]
    reaped = [t for t in lifetimes if t >= idle / 2]
    assert len(refused) >= 300 - per_ip, lifetimes[:40]
    assert 0 < len(reaped) <= per_ip
    # Trickling bytes does not keep a head alive: the head timeout is server.idle_timeout.
    assert max(reaped) <= idle + 2, reaped


@pytest.mark.gen_test(timeout=60)
@pytest.mark.skipif(shutil.which("prlimit") is None, reason="prlimit (util-linux) not installed")
async def test_descriptor_exhaustion_degrades_gracefully(serve_process):
    proc = serve_process(
        attack_config(
            server__idle_timeout=60,
            server__max_pending=100_000,
            server__max_pending_per_ip=100_000,
        ),
        prefix=("prlimit", "--nofile=128:128"),
    )
    attackers: list[socket.socket] = []
    async with Guard(proc, rss_bound_kib=20 * 1024):
        for _ in range(300):  # well over the 128 descriptors the server has
            sock = raw_connection(proc.port)
            sock.setblocking(False)
            attackers.append(sock)
        await wait_until(lambda: "descriptor limit reached" in proc.stderr_text(), 10)

        def shed() -> int:
            """Attacker connections the server accepted and closed at once."""
            closed = 0
            for sock in attackers:
                try:
                    closed += sock.recv(1) == b""
                except BlockingIOError:
                    pass
                except ConnectionError:
                    closed += 1
            return closed

        await wait_until(lambda: shed() >= 100, 10, "connections over the limit closed at once")
        await asyncio.sleep(1)  # a server spinning on accept would log thousands of lines now
    log = proc.stderr_text()
    assert log.count("descriptor limit reached") == 1, log[-3000:]
    assert "Traceback" not in log and len(log.splitlines()) < 100, log[-3000:]
    for sock in attackers:
        sock.close()
    # Once the attacker lets go, new clients are served again.
    for _ in range(100):
        if (await http_get(proc.port, "/healthz"))[0] == 200:
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("no new client served after the attack")
    witness = await Witness.connect(proc.port)
    witness.client.close()


@pytest.mark.gen_test(timeout=30)
async def test_odd_static_paths_are_not_server_errors(serve_process):
    proc = serve_process(attack_config())
    async with Guard(proc, rss_bound_kib=10 * 1024):
        for path in ["%00", "client.js%00", "a%00/b", "%ff", "x" * 4000, "..%2f..%2fetc/passwd"]:
            status, head = await http_get(proc.port, f"/ws/static/{path}")
            assert status in (400, 403, 404), (path[:20], head)
        assert (await http_get(proc.port, "/ws/static/client.js"))[0] == 200
    log = proc.stderr_text()
    assert "Traceback" not in log and " 500 " not in log, log[-2000:]


def _csp(head: str) -> str:
    for line in head.split("\r\n"):
        name, _, value = line.partition(":")
        if name.lower() == "content-security-policy":
            return value.strip()
    raise AssertionError(f"no CSP in {head!r}")


@pytest.mark.gen_test(timeout=30)
async def test_dashboard_csp_allows_websockets_to_its_own_host_only(serve_process):
    proc = serve_process(attack_config())
    own = f"127.0.0.1:{proc.port}"
    async with Guard(proc, rss_bound_kib=10 * 1024):
        status, head = await http_get(proc.port, "/ws/dashboard")
        assert status == 200
        csp = _csp(head)
        assert f"connect-src 'self' ws://{own} wss://{own};" in csp, csp
        assert " ws: " not in csp and " wss:" not in csp.replace(f"wss://{own}", "")
        _, head = await http_get(proc.port, "/ws/dashboard", host="[::1]:8082")
        assert "connect-src 'self' ws://[::1]:8082 wss://[::1]:8082;" in _csp(head)
        # A Host that would rewrite the policy gets 'self' alone (or, from Tornado, a 400).
        served = 0
        for host in ["*", "'self'", "evil.example; script-src *", "a b", "x.example:80/"]:
            status, head = await http_get(proc.port, "/ws/dashboard", host=host)
            if status == 400:  # Tornado refused the Host itself: no page, no policy
                continue
            served += 1
            csp = _csp(head)
            assert "connect-src 'self';" in csp and "script-src 'self';" in csp, (host, csp)
            assert "evil" not in csp and "*" not in csp, (host, csp)
        assert served >= 2  # "*" and "'self'" reach the page


@pytest.mark.gen_test(timeout=30)
async def test_websocket_connections_stop_counting_as_pending(server_factory):
    server = await server_factory(server__max_pending_per_ip=2)
    clients = [await server.subscriber(["events"]) for _ in range(10)]  # upgraded: not pending
    idle = [raw_connection(server.port) for _ in range(3)]  # two pending, the third refused
    loop = asyncio.get_running_loop()
    for sock in idle:
        sock.setblocking(False)
    assert await asyncio.wait_for(loop.sock_recv(idle[2], 1), 5) == b""
    for sock in idle[:2]:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(loop.sock_recv(sock, 1), 0.3)
        sock.close()
    await server.publish({"event_type": "honeypot.ssh.login_attempt", "severity": "high"})
    for client in clients:
        assert len(await client.events(1)) == 1
        client.close()
