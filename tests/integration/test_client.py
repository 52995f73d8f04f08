"""The asyncio client against a real in-process server (delivery, authentication, refusals,
token refresh, gaps, clean close), and against a scripted peer for what that server never does."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from tornado.web import Application
from tornado.websocket import WebSocketHandler

from netsentinel_websocket.client import (
    AuthenticationError,
    Client,
    ConnectionClosedError,
    Event,
    Gap,
    HandshakeError,
    Position,
    Reconnect,
    SubscriptionError,
)

from ..conftest import ReservedPort, make_token


async def take(client: Client, n: int, timeout: float = 5.0) -> list[Event]:
    """The next ``n`` items (all must be events)."""
    out = []

    async def read() -> None:
        async for item in client:
            assert isinstance(item, Event), item
            out.append(item)
            if len(out) == n:
                return

    await asyncio.wait_for(read(), timeout)
    return out


@pytest.mark.gen_test(timeout=10)
async def test_coalesced_frames_in_order_with_positions(server_factory, make_event):
    server = await server_factory()
    async with Client(server.url, token=make_token(), channels=["events", "threats"]) as c:
        for n in range(50):  # one loop turn: the server coalesces them into few frames
            await server.publish(make_event(n))
        got = await take(c, 100)
    by_channel = {ch: [e for e in got if e.channel == ch] for ch in ("events", "threats")}
    for events in by_channel.values():
        assert [e.offset for e in events] == list(range(1, 51))
        assert [e.data["n"] for e in events] == list(range(50))
    assert c.positions["events"] == by_channel["events"][-1].position
    assert got[0].event_type == "honeypot.ssh.login_attempt" and got[0].severity == "high"


@pytest.mark.gen_test(timeout=10)
async def test_subprotocol_auth_and_filter(server_factory, make_event):
    server = await server_factory()
    client = Client(
        server.url,
        token=make_token(),
        channels=["events"],
        auth="subprotocol",
        filter={"min_severity": "critical", "event_types": ["honeypot.*"]},
    )
    async with client as c:
        await server.publish(make_event(1, severity="high"))
        await server.publish(make_event(2, severity="critical"))
        await server.publish(make_event(3, event_type="network.scan", severity="critical"))
        await server.publish(make_event(4, severity="critical"))
        got = await take(c, 2)
    assert [e.data["n"] for e in got] == [2, 4]


@pytest.mark.gen_test(timeout=10)
async def test_since_resumes_a_new_client_from_saved_positions(server_factory, make_event):
    server = await server_factory()
    async with Client(server.url, token=make_token(), channels=["events"]) as c:
        await server.publish(make_event(0))
        await take(c, 1)
        saved = c.positions
    for n in range(1, 4):  # published while nobody listens
        await server.publish(make_event(n))
    async with Client(server.url, token=make_token(), channels=["events"], since=saved) as c:
        got = await take(c, 3)
    assert [(e.offset, e.data["n"]) for e in got] == [(2, 1), (3, 2), (4, 3)]


@pytest.mark.gen_test(timeout=10)
@pytest.mark.parametrize(
    ("token", "reason"),
    [("not-a-jwt", "malformed token"), (make_token(ttl=-30), "token expired")],
)
async def test_refused_token_raises_authentication_error(server_factory, token, reason):
    server = await server_factory()
    reconnects: list[Reconnect] = []
    with pytest.raises(AuthenticationError) as info:
        async with Client(
            server.url, token=token, channels=["events"], on_reconnect=reconnects.append
        ):
            pass
    assert info.value.code == 4001
    assert info.value.reason == reason
    assert token not in str(info.value)
    assert reconnects == []  # no retry: the same token would be refused again


@pytest.mark.gen_test(timeout=10)
async def test_forbidden_channel_raises_subscription_error(server_factory):
    server = await server_factory()
    with pytest.raises(SubscriptionError) as info:
        async with Client(
            server.url, token=make_token(scope="channel:events"), channels=["threats"]
        ):
            pass
    assert info.value.code == "forbidden"


@pytest.mark.gen_test(timeout=10)
async def test_wrong_path_raises_handshake_error(server_factory):
    server = await server_factory()
    with pytest.raises(HandshakeError) as info:
        async with Client(server.url + "-nope", token=make_token(), channels=["events"]):
            pass
    assert info.value.status == 404


@pytest.mark.gen_test(timeout=10)
async def test_expiry_without_provider_raises(server_factory, make_event):
    server = await server_factory()
    async with Client(server.url, token=make_token(ttl=1), channels=["events"]) as c:
        with pytest.raises(AuthenticationError) as info:
            await take(c, 1, timeout=5)
    assert info.value.code == 4004


@pytest.mark.gen_test(timeout=15)
async def test_provider_refreshes_in_band_before_expiry(server_factory, make_event):
    server = await server_factory()
    minted: list[float] = []

    def provider() -> str:
        minted.append(time.time())
        return make_token(ttl=2)

    reconnects: list[Reconnect] = []
    client = Client(
        server.url, token_provider=provider, channels=["events"], on_reconnect=reconnects.append
    )
    async with client as c:
        first_expiry = c.expires_at
        got: list[Event] = []
        for n in range(12):  # 3.6 s: well past the first token's expiry
            await server.publish(make_event(n))
            got += await take(c, 1)
            await asyncio.sleep(0.3)
    assert reconnects == []  # no 4004: refreshed on the same connection
    assert [e.offset for e in got] == list(range(1, 13))
    assert len(minted) >= 3 and c.expires_at > first_expiry


@pytest.mark.gen_test(timeout=15)
async def test_failed_refresh_falls_back_to_reconnect_and_resume(server_factory, make_event):
    server = await server_factory()
    calls = 0

    async def provider() -> str:
        nonlocal calls
        calls += 1
        if calls == 2:  # the in-band refresh: the identity service is down
            raise RuntimeError("identity service unavailable")
        return make_token(ttl=2)

    reconnects: list[Reconnect] = []
    client = Client(
        server.url,
        token_provider=provider,
        channels=["events"],
        backoff_base=0.05,
        on_reconnect=reconnects.append,
    )
    async with client as c:
        await server.publish(make_event(0))
        got = await take(c, 1)
        while not reconnects:  # the server closes with 4004 when the first token expires
            await server.publish(make_event(len(got)))
            got += await take(c, 1)
            await asyncio.sleep(0.1)
        await server.publish(make_event(len(got)))
        got += await take(c, 1)
    assert [r.code for r in reconnects] == [4004]
    assert [e.offset for e in got] == list(range(1, len(got) + 1))


@pytest.mark.gen_test(timeout=10)
async def test_waits_for_a_server_that_is_not_up_yet(server_factory, make_event):
    reserved = ReservedPort()  # refuses connections until the server takes it over
    port = reserved.port
    reconnects: list[Reconnect] = []
    client = Client(
        f"ws://127.0.0.1:{port}/ws",
        token=make_token(),
        channels=["events"],
        backoff_base=0.05,
        backoff_cap=0.1,
        on_reconnect=reconnects.append,
    )
    entering = asyncio.ensure_future(client.__aenter__())
    while not reconnects:
        await asyncio.sleep(0.01)
    assert reconnects[0].code is None and reconnects[0].reason == "connection refused"
    server = await server_factory(server__port=reserved.release())
    await asyncio.wait_for(entering, 5)
    await server.publish(make_event(7))
    got = await take(client, 1)
    await client.aclose()
    assert got[0].data["n"] == 7


@pytest.mark.gen_test(timeout=10)
async def test_exit_closes_cleanly_with_1000(server_factory, caplog):
    server = await server_factory()
    with caplog.at_level(logging.INFO, logger="netsentinel_websocket.connection"):
        async with Client(server.url, token=make_token(), channels=["events"]):
            pass
    closes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("close ")]
    assert len(closes) == 1 and "code=1000" in closes[0]


@pytest.mark.gen_test(timeout=10)
async def test_gap_when_history_cannot_serve_since(server_factory, make_event):
    server = await server_factory(websocket__history__size=2)
    async with Client(server.url, token=make_token(), channels=["events"]) as c:
        await server.publish(make_event(0))
        (first,) = await take(c, 1)
    for n in range(1, 6):  # offsets 2..6; history keeps 5 and 6
        await server.publish(make_event(n))
    since = {"events": first.position}
    async with Client(server.url, token=make_token(), channels=["events"], since=since) as c:
        gap = await asyncio.wait_for(c.__anext__(), 5)
        await server.publish(make_event(6))
        (after,) = await take(c, 1)
    assert gap == Gap("events", first.position, Position(first.epoch, 6))
    assert gap.as_message() == {
        "type": "gap",
        "channel": "events",
        "epoch": first.epoch,
        "from": {"epoch": first.epoch, "offset": 1},
        "resumed": {"epoch": first.epoch, "offset": 6},
    }
    assert (after.offset, after.data["n"]) == (7, 6)


@pytest.mark.gen_test(timeout=10)
async def test_refresh_with_narrower_scope_drops_the_channel(server_factory, make_event):
    server = await server_factory()
    scopes = iter(["channel:*", "channel:events"])
    client = Client(
        server.url,
        token_provider=lambda: make_token(scope=next(scopes, "channel:events"), ttl=2),
        channels=["events", "threats"],
    )

    async def publish() -> None:
        for n in range(100):
            await server.publish(make_event(n))
            await asyncio.sleep(0.05)

    after: list[Event] = []
    async with client as c:
        publisher = asyncio.ensure_future(publish())
        async for item in c:
            assert isinstance(item, Event)
            if "threats" not in c.channels:
                after.append(item)
                if len(after) == 3:
                    break
        publisher.cancel()
    assert c.channels == ["events"] and "threats" not in c.positions
    assert {e.channel for e in after} == {"events"}


@pytest.mark.gen_test(timeout=10)
async def test_close_from_another_task_ends_the_iteration(server_factory, make_event):
    server = await server_factory()
    async with Client(server.url, token=make_token(), channels=["events"]) as c:
        reader = asyncio.ensure_future(take(c, 10))
        await server.publish(make_event(0))
        await asyncio.sleep(0.1)
        await c.aclose()
        assert len(await asyncio.wait_for(reader, 5)) == 1  # ended, not 10 items
    assert [item async for item in c] == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"channels": ["events"]},
        {"channels": ["events"], "token": "t", "token_provider": lambda: "t"},
        {"channels": [], "token": "t"},
        {"channels": ["events"], "token": "t", "auth": "query"},
        {"channels": ["events"], "token": "t", "backoff_base": 0},
        {"channels": ["events"], "token": "t", "since": {"threats": Position("e", 1)}},
    ],
    ids=["no-token", "two-tokens", "no-channels", "bad-auth", "bad-backoff", "since-other"],
)
def test_bad_arguments_are_refused_at_once(kwargs):
    with pytest.raises(ValueError):
        Client("ws://127.0.0.1:1/ws", **kwargs)


# --- a scripted peer, for what the real server never does ---


class ScriptedPeer(WebSocketHandler):
    """Each connection takes the next step: an HTTP status to answer, or a coroutine
    ``script(peer)`` that plays the server (``peer.inbox`` holds what the client sent)."""

    def initialize(self, steps: list[Any]) -> None:
        self.steps = steps
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def get(self, *args: Any, **kwargs: Any) -> None:
        step = self.steps.pop(0)
        if isinstance(step, int):
            self.set_status(step)
            self.finish()
            return
        self.script = step
        await super().get(*args, **kwargs)

    def open(self) -> None:
        self.task = asyncio.ensure_future(self.script(self))

    def on_message(self, message: str | bytes) -> None:
        self.inbox.put_nowait(json.loads(message))

    def send(self, *messages: dict[str, Any]) -> None:
        self.write_message("\n".join(json.dumps(m) for m in messages))

    async def welcome_and_subscribe(self) -> dict[str, Any]:
        self.send(WELCOME)
        request = await self.inbox.get()
        self.send(
            {
                "type": "subscribed",
                "id": request["id"],
                "channels": request["channels"],
                "positions": {"events": {"epoch": "E", "offset": 0}},
                "recovered": {},
            }
        )
        return request


WELCOME = {"type": "welcome", "protocol": 1, "server_time": time.time(), "expires_at": 2**40}


def event_message(offset: int) -> dict[str, Any]:
    return {"type": "event", "channel": "events", "epoch": "E", "offset": offset, "event": {}}


@pytest.fixture
def peer(io_loop):
    """``peer(*steps)`` serves ScriptedPeer on a free port and returns its ws:// address."""
    servers: list[HTTPServer] = []

    def start(*steps: Any) -> str:
        sock, port = bind_unused_port()
        server = HTTPServer(Application([("/ws", ScriptedPeer, {"steps": list(steps)})]))
        server.add_sockets([sock])
        servers.append(server)
        return f"ws://127.0.0.1:{port}/ws"

    yield start
    for server in servers:
        server.stop()


@pytest.mark.gen_test(timeout=10)
async def test_duplicates_dropped_and_a_server_1000_is_resumed_not_the_end(peer):
    async def script(ws: ScriptedPeer) -> None:
        await ws.welcome_and_subscribe()
        ws.send(event_message(1), event_message(2))
        ws.send(event_message(2), event_message(1), event_message(3))  # a replay: not twice
        ws.close(1000, "ping timed out")  # what the server's heartbeat sends a silent peer

    async def resumed(ws: ScriptedPeer) -> None:
        request = await ws.welcome_and_subscribe()
        assert request["since"] == {"events": {"epoch": "E", "offset": 3}}
        ws.send(event_message(4))

    reconnects: list[Reconnect] = []
    async with Client(
        peer(script, resumed),
        token="t",
        channels=["events"],
        backoff_base=0.01,
        on_reconnect=reconnects.append,
    ) as c:
        offsets = [(await c.__anext__()).offset for _ in range(4)]
    assert offsets == [1, 2, 3, 4]
    assert [(r.code, r.reason) for r in reconnects] == [(1000, "ping timed out")]


@pytest.mark.gen_test(timeout=10)
async def test_retries_what_may_pass_and_stops_on_a_fatal_close(peer):
    async def silent(ws: ScriptedPeer) -> None:
        pass

    async def not_welcome(ws: ScriptedPeer) -> None:
        ws.send({"type": "pong", "id": None})

    async def too_big(ws: ScriptedPeer) -> None:
        await ws.welcome_and_subscribe()
        ws.close(1009, "message too big")

    reconnects: list[Reconnect] = []
    client = Client(
        peer(503, silent, not_welcome, too_big),
        token="t",
        channels=["events"],
        connect_timeout=0.3,
        backoff_base=0.01,
        on_reconnect=reconnects.append,
    )
    async with client as c:
        with pytest.raises(ConnectionClosedError) as info:
            await c.__anext__()
    assert [r.reason for r in reconnects] == [
        "HTTP 503",
        "no answer from the server",
        "expected welcome, got 'pong'",
    ]
    assert [r.attempt for r in reconnects] == [1, 2, 3]
    assert info.value.code == 1009


@pytest.mark.gen_test(timeout=10)
async def test_a_malformed_server_message_is_a_broken_connection_resumed_from_where_it_was(peer):
    async def garbled(ws: ScriptedPeer) -> None:
        await ws.welcome_and_subscribe()
        ws.send(event_message(1))
        ws.write_message('{"type":"event","channel":"events","epoch":"E","offset":"two"}')

    async def resumed(ws: ScriptedPeer) -> None:
        request = await ws.welcome_and_subscribe()
        assert request["since"] == {"events": {"epoch": "E", "offset": 1}}
        ws.send(event_message(2))

    reconnects: list[Reconnect] = []
    async with Client(
        peer(garbled, resumed),
        token="t",
        channels=["events"],
        backoff_base=0.01,
        on_reconnect=reconnects.append,
    ) as c:
        offsets = [(await c.__anext__()).offset for _ in range(2)]
    assert offsets == [1, 2]
    assert [r.reason for r in reconnects] == [
        "malformed server message: bad 'event' message (TypeError)"
    ]
