"""Property over a real connection: whatever a client sends, each message gets exactly one
reply (with its request id, an error of a known code) or the connection ends with a defined
close code; and the server keeps serving the next connection."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from netsentinel_websocket import protocol
from netsentinel_websocket.plugin import WebSocketPlugin
from netsentinel_websocket.runner import Runner

from ..conftest import WSClient, base_config, make_token
from ..unit.test_protocol import json_values, near_messages

MAX_BYTES = 4096
DEFINED_CLOSES = {1003, 1009, 4001}
REPLIES = {"subscribed", "unsubscribed", "pong", "auth_ok", "ack_ok", "error"}
TOKEN = make_token("fuzz", "channel:threats channel:alerts alerts:ack")

tokens = st.sampled_from(
    [
        TOKEN,
        make_token("fuzz", "channel:status"),  # narrower: refresh drops subscriptions
        make_token("someone-else"),  # another subject: 4001
        make_token("fuzz", ttl=-10),  # expired: 4001
        "not-a-token",
    ]
)
auth_messages = st.fixed_dictionaries(
    {"type": st.just("auth"), "id": st.integers(0, 9), "token": tokens}
)
messages = (
    (near_messages | auth_messages | json_values).map(json.dumps)
    | st.text(max_size=60)
    | st.binary(max_size=20)
    | st.just("x" * (MAX_BYTES + 1))
)


@pytest.fixture(scope="module")
def live_url() -> Iterator[str]:
    """One server for every example, on its own loop in a thread: it must survive them all."""
    loop = asyncio.new_event_loop()
    started: dict[str, Runner] = {}
    ready = threading.Event()

    async def start() -> None:
        config = base_config(
            websocket__limits__max_message_bytes=MAX_BYTES,
            websocket__limits__messages_per_second=100_000,
        )
        runner = Runner(config, plugins=[WebSocketPlugin()])
        await runner.start()
        started["runner"] = runner

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    runner = started["runner"]
    yield f"ws://127.0.0.1:{runner.port}/ws"
    asyncio.run_coroutine_threadsafe(runner.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


async def connect(url: str) -> WSClient:
    conn = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"Bearer {TOKEN}"}))
    client = WSClient(conn)
    assert (await client.recv())["type"] == "welcome"
    return client


def is_auth(message: str | bytes) -> bool:
    try:
        parsed = json.loads(message)
    except ValueError:
        return False
    return isinstance(parsed, dict) and parsed.get("type") == "auth"


async def converse(url: str, sent: list[str | bytes]) -> None:
    client = await connect(url)
    for message in sent:
        client.conn.write_message(message, binary=isinstance(message, bytes))
        try:
            reply = await client.recv()
            # A narrowing refresh announces the channels it dropped before its auth_ok (an
            # unsubscribe request without an id is answered with id None too: not skipped).
            while is_auth(message) and reply["type"] == "unsubscribed" and reply["id"] is None:
                reply = await client.recv()
        except ConnectionError:
            assert client.conn.close_code in DEFINED_CLOSES, client.conn.close_reason
            client = await connect(url)  # and the server still takes the next one
            continue
        assert reply["type"] in REPLIES, reply
        assert reply["id"] == protocol.peek_id(message)
        if reply["type"] == "error":
            assert reply["code"] in protocol.ERROR_CODES
    client.close()
    await client.closed()


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(messages, min_size=1, max_size=8))
@example(['{"type": "unsubscribe", "channels": ["threats"]}'])  # once found only by chance
def test_random_messages_get_a_reply_or_a_defined_close(live_url: str, sent: list[Any]):
    asyncio.run(converse(live_url, sent))
