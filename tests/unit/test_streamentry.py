"""The Redis stream entry format: a run of events in one entry, offsets still per event."""

from __future__ import annotations

import orjson
import pytest

from netsentinel_websocket.streamentry import entry_publications, join_events, join_times


def test_a_run_reads_back_as_one_publication_per_offset():
    events = [{"n": n, "msg": "a\nb"} for n in range(3)]  # escaped in JSON: no raw newline
    fields = {
        b"j": join_events([orjson.dumps(e) for e in events]),
        b"t": join_times([1700000000.123456, 1700000000.5, 1700000001.0]),
    }
    pubs = entry_publications("events", "ep", b"12-0", fields)  # the ID is the last offset
    assert [(p.channel, p.epoch, p.offset) for p in pubs] == [
        ("events", "ep", o) for o in (10, 11, 12)
    ]
    assert [p.prepared.event for p in pubs] == events
    assert [p.prepared.received for p in pubs] == [1700000000.123456, 1700000000.5, 1700000001.0]
    assert pubs[0].prepared.json(None) == orjson.dumps(events[0])  # kept as stored


def test_an_entry_of_one_event_is_the_one_event_per_entry_format():
    fields = {b"j": b'{"n":1}', b"t": b"1700000000.25"}
    (pub,) = entry_publications("events", "ep", b"7-0", fields)
    assert (pub.offset, pub.prepared.event, pub.prepared.received) == (7, {"n": 1}, 1700000000.25)


def test_json_with_a_raw_newline_is_stored_compact():
    pretty = b'{\n  "n": 1\n}'
    joined = join_events([b'{"n":0}', pretty, b'{"n":2}'])
    fields = {b"j": joined, b"t": join_times([1.0, 2.0, 3.0])}
    pubs = entry_publications("c", "e", b"3-0", fields)
    assert [p.prepared.event["n"] for p in pubs] == [0, 1, 2]
    assert pubs[1].prepared.json(None) == b'{"n":1}'


def test_an_entry_whose_fields_disagree_is_refused():
    with pytest.raises(ValueError, match="2 events, 1 times"):
        entry_publications("c", "e", b"2-0", {b"j": b"{}\n{}", b"t": b"1.0"})
