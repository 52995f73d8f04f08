"""Runner logs: ``--log-format json`` lines, connection open/close lines, no token ever."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

from netsentinel_websocket.logs import JsonFormatter, RedactTokens, mask_tokens
from tests.conftest import base_config, make_token


@pytest.mark.gen_test(timeout=30)
async def test_json_logs_have_open_and_close_lines_and_no_token(serve_process):
    proc = serve_process(base_config(), "--log-format", "json")
    good = make_token("log-tester", "channel:*")
    bad = make_token("intruder", "channel:*")[:-4] + "AAAA"

    conn = await websocket_connect(
        HTTPRequest(proc.url, headers={"Authorization": f"Bearer {good}"})
    )
    assert json.loads(await conn.read_message())["type"] == "welcome"
    conn.close(1000)
    refused = await websocket_connect(proc.url, subprotocols=["netsentinel.v1", f"bearer.{bad}"])
    assert await refused.read_message() is None and refused.close_code == 4001
    # A token in a query string shows up in Tornado's access log (401 is a warning there).
    http = AsyncHTTPClient()
    response = await http.fetch(f"{proc.http}/ws/stats?token={good}", raise_error=False)
    assert response.code == 401
    await asyncio.sleep(0.3)  # let the server log both closes

    proc.stop()
    stderr = proc.stderr_text()
    lines = [json.loads(line) for line in stderr.splitlines()]  # every line is JSON
    assert all({"ts", "level", "logger", "message"} <= set(line) for line in lines)
    opened = [x for x in lines if x.get("event") == "ws_open"]
    closed = [x for x in lines if x.get("event") == "ws_close"]
    assert [x["subject"] for x in opened] == ["log-tester"]
    by_subject = {x["subject"]: x for x in closed}
    assert by_subject["log-tester"]["code"] == 1000
    assert by_subject["log-tester"]["address"] == "127.0.0.1"
    assert by_subject["log-tester"]["duration"] >= 0
    assert by_subject["log-tester"]["events_sent"] == 0
    assert by_subject[None]["code"] == 4001  # refused before it had a subject
    assert any("/ws/stats?token=[redacted]" in x["message"] for x in lines)
    for secret in (good, bad, good.split(".")[2], bad.split(".")[1]):
        assert secret not in stderr


def test_redaction_covers_every_way_a_token_travels():
    token = make_token()
    assert token not in mask_tokens(f"GET /ws?token={token}&x=1 (127.0.0.1)")
    assert "&x=1" in mask_tokens(f"GET /ws?token={token}&x=1")
    assert mask_tokens(f"Authorization: Bearer {token}") == "Authorization: Bearer [redacted]"
    assert mask_tokens(f"protocols netsentinel.v1, bearer.{token}") == (
        "protocols netsentinel.v1, bearer.[redacted]"
    )
    assert mask_tokens(f"claims from {token}") == "claims from [redacted]"
    assert mask_tokens("open id=1 sub=alice addr=10.0.0.1") == "open id=1 sub=alice addr=10.0.0.1"


def test_json_formatter_writes_extra_fields_and_masks_arguments():
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "seen %s", (f"?token={make_token()}",), None
    )
    record.subject = "alice"
    assert RedactTokens().filter(record)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "seen ?token=[redacted]"
    assert entry["subject"] == "alice" and entry["level"] == "info"
