"""History lookup and the resume handover splice: the arithmetic behind 'exactly once, in order'."""

from decimal import Decimal

import pytest

from netsentinel_websocket.history import History
from netsentinel_websocket.positions import (
    Position,
    PreparedEvent,
    Publication,
    Recovery,
    catch_up,
    recover_from,
)
from netsentinel_websocket.redact import Redactor


def pubs(first: int, last: int, epoch: str = "E") -> list[Publication]:
    return [
        Publication("c", epoch, n, PreparedEvent({"n": n}, 0.0)) for n in range(first, last + 1)
    ]


def held(first: int, last: int) -> History:
    """A channel's history holding ``first`` to ``last``, as a broker keeps it."""
    history = History(1000)
    for pub in pubs(first, last):
        history.append(pub)
    return history


def offsets(run: list[Publication] | None) -> list[int] | None:
    return None if run is None else [p.offset for p in run]


# --- recover_from: what history can serve ---


def test_no_since_is_recovered_and_empty():
    assert recover_from(held(1, 5), Position("E", 5), None) == Recovery((), Position("E", 5), True)


def test_since_inside_history_gives_exactly_the_suffix():
    rec = recover_from(held(3, 10), Position("E", 10), Position("E", 6))
    assert (offsets(list(rec.publications)), rec.position, rec.recovered) == (
        [7, 8, 9, 10],
        Position("E", 10),
        True,
    )


def test_since_at_the_oldest_boundary_is_still_served():
    rec = recover_from(held(3, 10), Position("E", 10), Position("E", 2))
    assert (offsets(list(rec.publications)), rec.position, rec.recovered) == (
        [3, 4, 5, 6, 7, 8, 9, 10],
        Position("E", 10),
        True,
    )


def test_since_offset_0_is_a_client_that_has_nothing_yet():
    rec = recover_from(held(1, 3), Position("E", 3), Position("E", 0))
    assert (offsets(list(rec.publications)), rec.position, rec.recovered) == (
        [1, 2, 3],
        Position("E", 3),
        True,
    )
    assert recover_from(History(10), Position("E", 0), Position("E", 0)) == Recovery(
        (), Position("E", 0), True
    )


def test_since_at_top_is_recovered_with_nothing_missed():
    rec = recover_from(held(3, 10), Position("E", 10), Position("E", 10))
    assert rec == Recovery((), Position("E", 10), True)


def test_unknown_epoch_older_than_history_or_from_the_future_are_gaps():
    history, top = held(3, 10), Position("E", 10)
    for since in (Position("OLD", 5), Position("E", 1), Position("E", 11), Position("E", -1)):
        rec = recover_from(history, top, since)
        assert rec == Recovery((), top, False), since


def test_empty_history_serves_only_the_top():
    assert recover_from(History(10), Position("E", 4), Position("E", 4)).recovered
    assert not recover_from(History(10), Position("E", 4), Position("E", 3)).recovered


# --- catch_up: history + buffered live publications -> the exact run up to live ---


def test_overlapping_sources_give_each_offset_once_in_order():
    run = catch_up(Position("E", 4), [*pubs(5, 9), *pubs(7, 12)], Position("E", 12))
    assert offsets(run) == list(range(5, 13))


def test_history_read_ahead_of_live_delivery_is_cut_at_last():
    # e.g. a stream read that already holds what the broker has not delivered yet: it comes live
    assert offsets(catch_up(Position("E", 4), pubs(5, 20), Position("E", 9))) == [5, 6, 7, 8, 9]


def test_a_hole_between_sources_is_a_gap_not_a_silent_skip():
    assert catch_up(Position("E", 4), [*pubs(5, 6), *pubs(8, 9)], Position("E", 9)) is None


def test_nothing_missed_is_an_empty_run():
    assert catch_up(Position("E", 9), pubs(1, 9), Position("E", 9)) == []


def test_other_epoch_or_position_ahead_of_live_is_a_gap():
    assert catch_up(Position("E", 2), pubs(3, 5, "F"), Position("F", 5)) is None
    assert catch_up(Position("E", 6), pubs(1, 5), Position("E", 5)) is None


def test_another_epoch_at_the_same_offset_is_a_gap_not_nothing_missed():
    # offset 5 of epoch E and offset 5 of epoch F are different publications
    assert catch_up(Position("E", 5), pubs(1, 5, "F"), Position("F", 5)) is None
    assert catch_up(Position("E", 5), [], Position("F", 5)) is None


def test_publications_of_another_epoch_in_the_sources_are_not_picked():
    run = catch_up(Position("E", 2), [*pubs(3, 4, "F"), *pubs(3, 4)], Position("E", 4))
    assert [(p.epoch, p.offset) for p in run or []] == [("E", 3), ("E", 4)]


# --- the wire form of a publication, built once per redaction class ---


def test_message_is_cached_and_redacted_form_is_separate():
    prepared = PreparedEvent({"data": {"logdata": {"PASSWORD": "hunter2"}}}, 0.0)
    pub = Publication("threats", "E", 7, prepared)
    redactor = Redactor(["data.logdata.PASSWORD"])
    full, hidden = pub.message(None), pub.message(redactor)
    assert full is pub.message(None) and hidden is pub.message(redactor)
    assert full.startswith(b'{"type":"event","channel":"threats","epoch":"E","offset":7,"event":')
    assert b"hunter2" in full and b"hunter2" not in hidden


# --- the event's JSON: serialized once, whatever the event holds ---


class Opaque:
    def __str__(self) -> str:
        return "opaque!"


def test_a_prepared_event_needs_its_event_or_its_json():
    with pytest.raises(ValueError) as refused:
        PreparedEvent(None, 0.0)
    assert str(refused.value) == "a prepared event needs its event or its JSON"
    kept = PreparedEvent(None, 5.0, full=b'{"n":1}')  # as history keeps it: decoded on demand
    assert (kept.event, kept.received, kept.json(None)) == ({"n": 1}, 5.0, b'{"n":1}')


def test_json_uses_the_bytes_it_was_given():
    prepared = PreparedEvent({"n": 1}, 0.0, full=b'{"n":1,"from":"broker"}')
    assert prepared.json(None) == b'{"n":1,"from":"broker"}'


def test_json_writes_non_string_keys_and_unencodable_values_as_text():
    event = {"data": {7: Opaque(), "amount": Decimal("1.50"), None: True}}
    expected = b'{"data":{"7":"opaque!","amount":"1.50","null":true}}'
    assert PreparedEvent(event, 0.0).json(None) == expected


def test_redacted_json_writes_non_string_keys_and_unencodable_values_as_text():
    event = {"data": {"password": "hunter2", 7: Opaque(), "amount": Decimal("2")}}
    redacted = PreparedEvent(event, 0.0).json(Redactor(["data.password"]))
    assert redacted == b'{"data":{"password":"[redacted]","7":"opaque!","amount":"2"}}'


def test_redacted_json_is_the_full_json_when_nothing_is_hidden():
    prepared = PreparedEvent({"data": {"user": "root"}}, 0.0)
    redacted = prepared.json(Redactor(["data.password"]))
    assert redacted == b'{"data":{"user":"root"}}'
    assert redacted is prepared.json(None)
