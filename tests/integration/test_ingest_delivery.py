"""Nothing lost at the ingest boundary: OpenCanary's webhook form on ``POST /ingest``, and TCP
ingest connections closed so that a sender that never reads notices (a reset, not a FIN)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from urllib.parse import urlencode

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from netsentinel_websocket.ingest import is_form, parse_form
from netsentinel_websocket.plugin import WebSocketPlugin
from netsentinel_websocket.runner import Runner
from tests.conftest import base_config, make_token

RECORD = {
    "dst_host": "10.0.0.5",
    "dst_port": 21,
    "logdata": {"USERNAME": "root", "PASSWORD": "hunter2"},
    "logtype": 2000,
    "node_id": "canary-1",
    "src_host": "198.51.100.9",
    "src_port": 50111,
    "utc_time": "2026-11-24 19:11:10.123456",
}
FORM = "application/x-www-form-urlencoded"


def form(**fields: str) -> bytes:
    """A body as ``requests`` encodes ``data=dict`` (what OpenCanary's WebhookHandler posts)."""
    return urlencode(fields).encode()


# --- parsing ---


def test_opencanary_webhook_form_is_recognised_and_json_stays_json():
    assert is_form(FORM, form(message="{}"))
    assert is_form("Application/X-WWW-Form-Urlencoded; charset=utf-8", b"message=x")
    assert not is_form(FORM, b'{"message": "{}"}')  # curl -d sends JSON with the form type
    assert not is_form(FORM, b"  [1]")
    assert not is_form("application/json", form(message="{}"))
    assert not is_form("", form(message="{}"))


def test_form_messages_become_events():
    events, errors = parse_form(form(message=json.dumps(RECORD)))
    assert errors == []
    assert [e["event_type"] for e in events] == ["honeypot.ftp.login_attempt"]
    assert events[0]["data"]["logdata"] == {"USERNAME": "root", "PASSWORD": "hunter2"}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (form(text="{}"), {"index": None, "error": "form body has no message field"}),
        (b"message=\xff", {"index": None, "error": "body is not a valid form (or not UTF-8)"}),
        (b"message", {"index": None, "error": "body is not a valid form (or not UTF-8)"}),
        (form(message="not json"), {"index": 0, "error": "webhook message is not valid JSON"}),
        (form(message="[1]"), {"index": 0, "error": "webhook message must hold a JSON object"}),
    ],
)
def test_bad_forms_give_reasons(body, error):
    assert parse_form(body) == ([], [error])


# --- POST /ingest ---


async def post(server, body: bytes, content_type: str, token: str | None) -> tuple[int, dict]:
    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    response = await AsyncHTTPClient().fetch(
        HTTPRequest(f"{server.http}/ingest", method="POST", body=body, headers=headers),
        raise_error=False,
    )
    return response.code, json.loads(response.body)


@pytest.mark.gen_test(timeout=30)
async def test_webhook_form_is_answered_200_and_json_202(server_factory):
    server = await server_factory()
    client = await server.subscriber(["events"])
    token = make_token(sub="opencanary", scope="ingest")
    as_form = form(message=json.dumps({**RECORD, "src_port": 50001}))
    as_json = json.dumps({"message": json.dumps({**RECORD, "src_port": 50002})}).encode()

    assert await post(server, as_form, FORM, token) == (200, {"accepted": 1, "errors": []})
    assert await post(server, as_json, "application/json", token) == (
        202,
        {"accepted": 1, "errors": []},
    )
    assert await post(server, form(message="nope"), FORM, token) == (
        400,
        {"accepted": 0, "errors": [{"index": 0, "error": "webhook message is not valid JSON"}]},
    )
    assert (await post(server, as_form, FORM, None))[0] == 401
    assert (await post(server, as_form, FORM, make_token(scope="channel:*")))[0] == 403
    got = await client.events(2)
    assert [m["event"]["data"]["src_port"] for m in got] == [50001, 50002]
    assert [m["event"]["event_type"] for m in got] == ["honeypot.ftp.login_attempt"] * 2


# --- TCP ingest: closing so that a sender that never reads notices ---


def send_after_close(sock: socket.socket) -> type[BaseException] | None:
    """What a SocketHandler's next write meets once the runner has closed the connection."""
    time.sleep(0.1)  # let the close (reset or FIN) arrive
    try:
        sock.sendall(b'{"logtype": 1001}\n')
    except OSError as exc:
        return type(exc)
    return None


@pytest.mark.gen_test(timeout=30)
async def test_shutdown_publishes_what_was_sent_then_resets_the_connection():
    plugin = WebSocketPlugin()
    runner = Runner(base_config(), plugins=[plugin])
    await runner.start()
    published: list[tuple[str, int]] = []
    plugin.node.broker.publish = (  # type: ignore[method-assign]
        lambda channel, prepared, inner=plugin.node.broker.publish: (
            published.append((channel, prepared.event["data"]["src_port"])),
            inner(channel, prepared),
        )
    )
    sock = socket.create_connection(("127.0.0.1", runner.ingest_port))
    sock.sendall(json.dumps({**RECORD, "src_port": 50003}).encode() + b"\n")
    await runner.stop()  # at once: the line is still in the socket when stop begins
    assert published == [("events", 50003), ("threats", 50003)]
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, send_after_close, sock) is ConnectionResetError
    sock.close()


@pytest.mark.gen_test(timeout=30)
async def test_idle_close_resets_so_the_next_record_is_not_written_into_it(server_factory):
    server = await server_factory(websocket__ingest__idle_timeout=1)
    sock = socket.create_connection(("127.0.0.1", server.ingest_port))
    await asyncio.sleep(1.6)
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, send_after_close, sock) is ConnectionResetError
    sock.close()
