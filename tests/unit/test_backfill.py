"""History pages (``backfill.py``) over the real pure history lookup, without a server."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from netsentinel_websocket import backfill
from netsentinel_websocket.history import History
from netsentinel_websocket.positions import (
    Position,
    PreparedEvent,
    Publication,
    Recovery,
    recover_from,
)
from netsentinel_websocket.redact import Redactor
from netsentinel_websocket.sse import SSEError


class Channel:
    """A channel whose history holds offsets ``first..top`` of ``epoch`` (a contiguous run, as
    every broker keeps); counts the lookups a page makes."""

    def __init__(self, first: int, top: int, epoch: str = "E") -> None:
        self.top = Position(epoch, top)
        self.published = [
            Publication("threats", epoch, n, PreparedEvent({"id": f"e{n}", "n": n}, 0.0))
            for n in range(first, top + 1)
        ]
        self.history = History(10_000)
        for pub in self.published:
            self.history.append(pub)
        self.lookups = 0

    async def recover(self, since: Position) -> Recovery:
        self.lookups += 1
        return recover_from(self.history, self.top, since)

    def page(self, since: Position | None, limit: int) -> backfill.Page:
        return asyncio.run(backfill.page(self.recover, self.top, since, limit))


def offsets(page: backfill.Page) -> list[int]:
    return [p.offset for p in page.publications]


# --- the query ---


def test_since_is_epoch_colon_offset_and_the_epoch_may_hold_colons() -> None:
    assert backfill.parse_since(None) is None
    assert backfill.parse_since("E:41") == Position("E", 41)
    assert backfill.parse_since("node:1:2:0") == Position("node:1:2", 0)
    assert backfill.parse_since(":5") == Position("", 5)


@pytest.mark.parametrize(
    "text", ["", "E", "E:", "E:-1", "E:+1", "E:1.0", "E: 1", "E:１", "E:" + "9" * 20, "E:0x10"]
)
def test_a_since_that_is_not_a_position_is_refused(text: str) -> None:
    with pytest.raises(SSEError, match="since must be <epoch>:<offset>"):
        backfill.parse_since(text)


def test_a_since_with_a_bad_epoch_or_offset_is_refused() -> None:
    with pytest.raises(SSEError, match="bad epoch"):
        backfill.parse_since("E" * 129 + ":1")
    with pytest.raises(SSEError, match="bad offset"):
        backfill.parse_since("E:" + "9" * 19)  # 19 digits but beyond 2**63


def test_limit_defaults_to_100_and_is_1_to_1000() -> None:
    assert backfill.parse_limit(None) == backfill.DEFAULT_LIMIT == 100
    assert backfill.parse_limit("1") == 1
    assert backfill.parse_limit("1000") == backfill.MAX_LIMIT == 1000
    assert backfill.parse_limit("0042") == 42


@pytest.mark.parametrize("text", ["", "0", "1001", "-1", "1e3", "10.0", "９", "00001", "many"])
def test_a_limit_out_of_range_is_refused(text: str) -> None:
    with pytest.raises(SSEError, match="limit must be an integer from 1 to 1000"):
        backfill.parse_limit(text)


# --- pages ---


def test_without_since_the_newest_limit_events() -> None:
    channel = Channel(1, 50)
    page = channel.page(None, 10)
    assert offsets(page) == list(range(41, 51))
    assert page.next == Position("E", 50)
    assert not page.gap


def test_without_since_a_short_history_is_no_gap() -> None:
    channel = Channel(31, 50)  # offsets 1..30 already left history
    page = channel.page(None, 100)
    assert offsets(page) == list(range(31, 51))
    assert not page.gap


def test_an_empty_channel_has_an_empty_page_that_continues_from_zero() -> None:
    page = Channel(1, 0).page(None, 10)
    assert offsets(page) == [] and page.next == Position("E", 0) and not page.gap


def test_since_gives_the_events_after_it_and_next_continues() -> None:
    channel = Channel(1, 50)
    page = channel.page(Position("E", 20), 10)
    assert offsets(page) == list(range(21, 31))
    assert page.next == Position("E", 30)
    assert not page.gap
    assert offsets(channel.page(page.next, 10)) == list(range(31, 41))


def test_since_at_the_top_is_an_empty_page_without_a_gap() -> None:
    page = Channel(1, 50).page(Position("E", 50), 10)
    assert offsets(page) == [] and page.next == Position("E", 50) and not page.gap


def test_since_older_than_history_is_a_gap_from_the_oldest_event_held() -> None:
    channel = Channel(31, 50)
    page = channel.page(Position("E", 5), 10)
    assert page.gap
    assert offsets(page) == list(range(31, 41))
    assert page.next == Position("E", 40)
    assert channel.lookups <= 2 + 7  # one miss, then a bisection over 50 offsets


@pytest.mark.parametrize("since", [Position("OLD", 10), Position("E", 99)])
def test_since_in_another_epoch_or_the_future_is_a_gap_from_the_oldest(since: Position) -> None:
    page = Channel(31, 50).page(since, 5)
    assert page.gap
    assert page.epoch == "E"
    assert offsets(page) == list(range(31, 36))


@given(
    first=st.integers(1, 60),
    length=st.integers(0, 60),
    start=st.integers(0, 130),
    limit=st.integers(1, 25),
)
def test_walking_next_reads_every_event_held_once_in_order(
    first: int, length: int, start: int, limit: int
) -> None:
    channel = Channel(first, first + length - 1)
    top = channel.top.offset
    since = Position("E", start)
    seen: list[int] = []
    gaps = 0
    for _ in range(200):
        page = channel.page(since, limit)
        gaps += page.gap
        assert len(page.publications) <= limit
        seen += offsets(page)
        if page.next == since:
            break
        since = page.next
    lost = start < first - 1 or start > top  # since not served by history
    expected = list(range(first, top + 1)) if lost else list(range(start + 1, top + 1))
    assert seen == expected
    assert gaps == (1 if lost and top >= 0 else 0)


def test_the_body_is_the_contract_json_with_the_websocket_messages() -> None:
    channel = Channel(1, 3, epoch="ep:1")
    body = orjson.loads(channel.page(Position("ep:1", 1), 10).body("threats", None))
    assert body["channel"] == "threats"
    assert body["epoch"] == "ep:1"
    assert body["next"] == "ep:1:3"
    assert body["gap"] is False
    assert [e["offset"] for e in body["events"]] == [2, 3]
    assert body["events"][0] == orjson.loads(channel.published[1].message(None))
    assert body["events"][0]["type"] == "event"


def test_the_body_is_redacted_for_a_reader_without_sensitive() -> None:
    prepared = PreparedEvent({"id": "e1", "data": {"password": "hunter2"}}, 0.0)
    page = backfill.Page("E", [Publication("threats", "E", 1, prepared)], Position("E", 1), True)
    redactor = Redactor(["data.password"])
    assert b"hunter2" in page.body("threats", None)
    body = orjson.loads(page.body("threats", redactor))
    assert "hunter2" not in str(body)
    assert body["gap"] is True
