"""Server-Sent Events and history (contract section 12) against a real server, read with
``curl -N`` and Tornado's streaming HTTP client."""

from __future__ import annotations

import asyncio
import base64
import shutil
import socket
import time
import urllib.parse
from typing import Any

import orjson
import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from tests.conftest import make_token

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


class Curl:
    """``curl -sN`` reading a stream; parses it as EventSource does (``id:`` without data
    still sets the last event id)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.last_id: str | None = None
        self.comments = 0

    @classmethod
    async def open(
        cls, server: Any, query: str, token: str | None = None, last_id: str | None = None
    ) -> Curl:
        args = ["curl", "-sN", "--max-time", "30"]
        if token is not None:
            args += ["-H", f"Authorization: Bearer {token}"]
        if last_id is not None:
            args += ["-H", f"Last-Event-ID: {last_id}"]
        proc = await asyncio.create_subprocess_exec(
            *args, f"{server.http}/ws/sse?{query}", stdout=asyncio.subprocess.PIPE
        )
        return cls(proc)

    async def message(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next ``event`` or ``gap`` message, with its ``id`` as ``_id``."""
        assert self.proc.stdout is not None
        fields: dict[str, str] = {}
        deadline = time.monotonic() + timeout
        while True:
            line = await asyncio.wait_for(
                self.proc.stdout.readline(), max(0.01, deadline - time.monotonic())
            )
            if not line:
                raise ConnectionError("stream ended")
            text = line.decode().rstrip("\n")
            if text.startswith(":"):
                self.comments += 1
            elif text:
                name, _, value = text.partition(": ")
                fields[name] = value
            else:
                if "id" in fields:
                    self.last_id = fields["id"]
                if "data" in fields:
                    msg = orjson.loads(fields["data"])
                    assert msg["type"] == fields["event"]
                    msg["_id"] = fields["id"]
                    return msg
                fields = {}

    async def events(self, n: int) -> list[dict[str, Any]]:
        return [await self.message() for _ in range(n)]

    async def ended(self, timeout: float = 10.0) -> int:
        assert self.proc.stdout is not None
        await asyncio.wait_for(self.proc.stdout.read(), timeout)
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


@pytest.fixture
def curls():
    opened: list[Curl] = []

    async def start(*args: Any, **kwargs: Any) -> Curl:
        curl = await Curl.open(*args, **kwargs)
        opened.append(curl)
        await asyncio.sleep(0)
        return curl

    yield start
    for curl in opened:
        if curl.proc.returncode is None:
            curl.proc.kill()


async def subscribed(server: Any, channels: list[str], count: int) -> None:
    """Until the hub counts ``count`` subscribers on each channel."""
    deadline = time.monotonic() + 5
    while any(server.node.hub.subscriber_counts().get(c, 0) < count for c in channels):
        assert time.monotonic() < deadline, server.node.hub.subscriber_counts()
        await asyncio.sleep(0.02)


def key(msg: dict[str, Any]) -> tuple[str, int]:
    return msg["channel"], msg["offset"]


@pytest.mark.gen_test(timeout=30)
async def test_live_delivery_in_order_after_headers_sent_at_once(server_factory, make_event):
    server = await server_factory()
    heard: list[bytes] = []
    headers: dict[str, str] = {}

    def header(line: str) -> None:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()

    request = HTTPRequest(
        f"{server.http}/ws/sse?channels=events",
        headers={"Authorization": f"Bearer {make_token()}"},
        header_callback=header,
        streaming_callback=heard.append,
        request_timeout=30,
    )
    fetch = asyncio.ensure_future(AsyncHTTPClient().fetch(request, raise_error=False))
    await subscribed(server, ["events"], 1)
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["cache-control"] == "no-store"
    assert headers["x-accel-buffering"] == "no"
    assert b"event: event" not in b"".join(heard)  # headers before any event

    for n in range(5):
        await server.publish(make_event(n))
    deadline = time.monotonic() + 5
    while b"".join(heard).count(b"event: event") < 5:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    blocks = [b for b in b"".join(heard).decode().split("\n\n") if "data: " in b]
    msgs = [orjson.loads(b.split("data: ", 1)[1]) for b in blocks]
    assert [m["event"]["data"]["n"] for m in msgs] == list(range(5))
    assert [m["offset"] for m in msgs] == [1, 2, 3, 4, 5]
    await server.stop()  # SIGTERM's path: the stream ends cleanly
    response = await asyncio.wait_for(fetch, 10)
    assert response.code == 200


@pytest.mark.gen_test(timeout=40)
async def test_a_dropped_stream_resumes_with_last_event_id_exactly_once(
    server_factory, make_event, curls
):
    server = await server_factory()
    token = make_token()
    first = await curls(server, "channels=events,alerts", token)
    await subscribed(server, ["events", "alerts"], 1)

    def publish(n: int) -> list[dict[str, Any]]:
        return [make_event(n), make_event(n, event_type="alert.raised", severity="low")]

    for n in range(4):
        for e in publish(n):
            await server.publish(e)
    got = await first.events(5)  # in the middle of the run: 3 of one, 2 of the other
    await first.kill()
    for n in range(4, 8):
        for e in publish(n):
            await server.publish(e)

    again = await curls(server, "channels=events,alerts", token, last_id=got[-1]["_id"])
    rest = await again.events(16 - 5)
    everything = got + rest
    assert sorted(map(key, everything)) == sorted(set(map(key, everything)))
    by_channel = {
        c: [m["offset"] for m in everything if m["channel"] == c] for c in ("events", "alerts")
    }
    assert by_channel == {"events": list(range(1, 9)), "alerts": list(range(1, 9))}

    # live events follow, still once; ?last_event_id= works as the header does
    await again.kill()
    third = await curls(
        server,
        "channels=events,alerts&last_event_id=" + urllib.parse.quote(rest[-1]["_id"]),
        token,
    )
    await subscribed(server, ["events"], 1)
    await server.publish(make_event(99))
    assert key(await third.message()) == ("events", 9)


@pytest.mark.gen_test(timeout=30)
async def test_a_reader_dropped_before_its_first_event_still_resumes(
    server_factory, make_event, curls
):
    server = await server_factory()
    token = make_token()
    first = await curls(server, "channels=events", token)
    await subscribed(server, ["events"], 1)
    with pytest.raises(asyncio.TimeoutError):
        await first.message(timeout=0.3)
    assert first.last_id is not None  # the opening id, as EventSource keeps it
    await first.kill()
    await server.publish(make_event(1))
    again = await curls(server, "channels=events", token, last_id=first.last_id)
    assert key(await again.message()) == ("events", 1)


@pytest.mark.gen_test(timeout=30)
async def test_a_gap_when_history_is_gone(server_factory, make_event, curls):
    server = await server_factory(websocket__history__size=2)
    token = make_token()
    first = await curls(server, "channels=events", token)
    await subscribed(server, ["events"], 1)
    await server.publish(make_event(1))
    seen = await first.message()
    await first.kill()
    for n in range(2, 7):
        await server.publish(make_event(n))
    again = await curls(server, "channels=events", token, last_id=seen["_id"])
    gap = await again.message()
    assert gap["type"] == "gap" and gap["from"]["offset"] == 1
    await subscribed(server, ["events"], 1)
    await server.publish(make_event(7))
    assert key(await again.message()) == ("events", 7)


@pytest.mark.gen_test(timeout=30)
async def test_auth_scopes_and_query_tokens(server_factory):
    server = await server_factory()
    fetch = AsyncHTTPClient().fetch

    async def status(query: str, token: str | None = None) -> int:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await fetch(
            f"{server.http}/ws/sse?{query}", headers=headers, raise_error=False, request_timeout=5
        )
        return response.code

    assert await status("channels=events") == 401
    assert await status("channels=events", "not-a-jwt") == 401
    assert await status("channels=events", make_token(scope="channel:alerts")) == 403
    assert await status("channels=nope", make_token()) == 404
    assert await status(f"channels=events&token={make_token()}") == 401  # not allowed here
    for path in ("/ws/history/events", "/ws/history/events?token=" + make_token()):
        assert (await server.get(path)).code == 401
    assert (await server.get("/ws/history/events", make_token(scope="channel:alerts"))).code == 403

    allowing = await server_factory(websocket__auth__allow_query_token=True)
    response = await fetch(
        f"{allowing.http}/ws/history/events?token={make_token()}", raise_error=False
    )
    assert response.code == 200


@pytest.mark.gen_test(timeout=30)
async def test_query_token_streams_where_allowed(server_factory, make_event, curls):
    server = await server_factory(websocket__auth__allow_query_token=True)
    reader = await curls(server, f"channels=events&token={make_token()}")
    await subscribed(server, ["events"], 1)
    await server.publish(make_event(1))
    assert key(await reader.message()) == ("events", 1)


@pytest.mark.gen_test(timeout=30)
async def test_redaction_as_on_the_websocket(server_factory, make_event, curls):
    server = await server_factory()
    plain = await curls(server, "channels=events", make_token())
    sensitive = await curls(
        server, "channels=events", make_token(scope="channel:* events:sensitive")
    )
    await subscribed(server, ["events"], 2)
    await server.publish(make_event(1, password="hunter2"))
    assert (await plain.message())["event"]["data"]["password"] == "[redacted]"
    assert (await sensitive.message())["event"]["data"]["password"] == "hunter2"
    page = orjson.loads((await server.get("/ws/history/events", make_token())).body)
    assert page["events"][0]["event"]["data"]["password"] == "[redacted]"


@pytest.mark.gen_test(timeout=60)
async def test_a_reader_that_stops_reading_is_cut_off_others_unaffected(
    server_factory, make_event, curls
):
    server = await server_factory()
    token = make_token()
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(("127.0.0.1", server.port))
    stuck.sendall(
        b"GET /ws/sse?channels=events HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {token}\r\n\r\n".encode()
    )
    reader = await curls(server, "channels=events", token)
    ws = await server.subscriber(["events"])
    await subscribed(server, ["events"], 3)
    got: list[int] = []
    delivered: list[int] = []
    for batch in range(20):  # 12 MB in all: more than loopback's socket buffers hold
        for n in range(batch * 20, batch * 20 + 20):
            await server.publish(make_event(n, blob="x" * 30000))
        got += [m["event"]["data"]["n"] for m in await reader.events(20)]
        delivered += [m["event"]["data"]["n"] for m in await ws.events(20)]
    assert got == delivered == list(range(400))
    assert server.node.metrics.slow_consumer_closes._value.get() == 1
    await subscribed(server, ["events"], 2)
    assert server.node.hub.subscriber_counts()["events"] == 2
    stuck.close()


@pytest.mark.gen_test(timeout=30)
async def test_heartbeats_keep_an_idle_stream_busy(server_factory, curls):
    server = await server_factory(websocket__sse__heartbeat=0.1)
    reader = await curls(server, "channels=events", make_token())
    with pytest.raises(asyncio.TimeoutError):
        await reader.message(timeout=0.6)
    assert reader.comments >= 3


def cursor(raw: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(raw)).decode().rstrip("=")


@pytest.mark.gen_test(timeout=30)
async def test_hostile_cursors_queries_and_since_are_400(server_factory):
    server = await server_factory()
    token = make_token()
    bad_cursors = [
        "!!!",
        "x" * 10000,
        cursor({"events": 1}),
        cursor([["events", "E"]]),
        cursor([["events", "E", -1]]),
        cursor([["events", "E", True]]),
        cursor([["events", 7, 1]]),
        cursor([["other", "E", 1]]),
        cursor([["events", "E", 1], ["events", "E", 2]]),
        cursor([["events", "E" * 200, 1]]),
        "é",
    ]
    for bad in bad_cursors:
        response = await AsyncHTTPClient().fetch(
            f"{server.http}/ws/sse?channels=events",
            headers={"Authorization": f"Bearer {token}", "Last-Event-ID": bad},
            raise_error=False,
        )
        assert response.code == 400, bad
    for query in ("", "channels=", "channels=events&min_severity=huge", "channels=events&src_ip=x"):
        response = await server.get(f"/ws/sse?{query}", token)
        assert response.code == 400, query
    for query in (
        "since=5",
        "since=E:-1",
        "since=E:1x",
        "since=E:99999999999999999999",
        "limit=0",
        "limit=1001",
        "limit=x",
        "limit=-3",
        "since=" + "e" * 300 + ":1",
    ):
        assert (await server.get(f"/ws/history/events?{query}", token)).code == 400, query


@pytest.mark.gen_test(timeout=30)
async def test_history_pages_forward_with_next(server_factory, make_event):
    server = await server_factory(websocket__history__size=50)
    token = make_token()

    async def page(query: str) -> dict[str, Any]:
        response = await server.get(f"/ws/history/events?{query}", token)
        assert response.code == 200, response.body
        return orjson.loads(response.body)

    empty = await page("")
    assert empty["events"] == [] and empty["gap"] is False
    epoch = empty["epoch"]
    for n in range(30):
        await server.publish(make_event(n))

    newest = await page("limit=10")
    assert [e["offset"] for e in newest["events"]] == list(range(21, 31))
    assert newest["next"] == f"{epoch}:30"
    assert len((await page(""))["events"]) == 30  # fewer than the default 100 held: no gap

    offsets: list[int] = []
    since = f"{epoch}:5"
    while True:
        got = await page(f"since={since}&limit=7")
        assert got["gap"] is False and got["channel"] == "events"
        offsets += [e["offset"] for e in got["events"]]
        if not got["events"]:
            assert got["next"] == since
            break
        since = got["next"]
    assert offsets == list(range(6, 31))

    for n in range(30, 60):
        await server.publish(make_event(n))
    gap = await page(f"since={epoch}:3&limit=5")
    assert gap["gap"] is True
    assert [e["offset"] for e in gap["events"]] == [11, 12, 13, 14, 15]  # the oldest held
    assert gap["next"] == f"{epoch}:15"
    other = await page("since=another-epoch:3&limit=1000")
    assert other["gap"] is True and len(other["events"]) == 50
    assert (await page(f"since={epoch}:60"))["events"] == []
