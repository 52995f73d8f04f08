"""What history holds per kept event, measured with tracemalloc: at most twice its JSON.

The publications are made as the node makes them (normalized, serialized by orjson, then given
their wire message by a delivery), so each one handed to history is as heavy as a live one: the
event's dict, orjson's over-sized buffer, the cached message. ``python -m bench.history_memory``
measures the same in the process's RSS.
"""

from __future__ import annotations

import gc
import time
import tracemalloc

from netsentinel_websocket.events import normalize_event, serialize_event
from netsentinel_websocket.history import History
from netsentinel_websocket.positions import Position, PreparedEvent, Publication, recover_from

KEPT = 2_000


def live_publication(offset: int) -> Publication:
    """A publication as a node delivers it: about 260 bytes of JSON."""
    event = normalize_event(
        {
            "id": f"evt-{offset}",
            "timestamp": 1_700_000_000.0 + offset,
            "event_type": "honeypot.ssh.login_attempt",
            "source": "canary-7",
            "severity": "high",
            "data": {"src_ip": "198.51.100.7", "username": "root", "seq": offset},
            "tags": ["ssh"],
        }
    )
    prepared = PreparedEvent(event, time.time(), serialize_event(event, 1 << 20))
    pub = Publication("threats", "E", offset, prepared)
    pub.message(None)
    return pub


def test_a_kept_event_costs_at_most_twice_its_json():
    history = History(KEPT)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for offset in range(1, KEPT + 1):
            history.append(live_publication(offset))  # the live one is dropped right after
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(history) == KEPT
    json_per_event = history.bytes / KEPT
    assert 200 < json_per_event < 400
    assert held / KEPT <= 2 * json_per_event, (held / KEPT, json_per_event)


def test_a_kept_event_reads_back_as_it_was_delivered():
    history = History(10)
    live = [live_publication(offset) for offset in range(1, 6)]
    for pub in live:
        history.append(pub)
    back = recover_from(history, Position("E", 5), Position("E", 2)).publications
    assert [p.offset for p in back] == [3, 4, 5]
    for kept, pub in zip(back, live[2:], strict=True):
        assert (kept.channel, kept.epoch) == ("threats", "E")
        assert kept.prepared.received == pub.prepared.received
        assert kept.message(None) == pub.message(None)
        assert kept.prepared.event == pub.prepared.event  # decoded again for filters
    assert [p.offset for p in history] == [1, 2, 3, 4, 5]
    assert history.newest(0) == [] and [p.offset for p in history.newest(9)] == [1, 2, 3, 4, 5]
