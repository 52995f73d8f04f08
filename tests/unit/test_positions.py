"""History lookup and the resume handover splice: the arithmetic behind 'exactly once, in order'."""

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


def offsets(run: list[Publication] | None) -> list[int] | None:
    return None if run is None else [p.offset for p in run]


# --- recover_from: what history can serve ---


def test_no_since_is_recovered_and_empty():
    assert recover_from(pubs(1, 5), Position("E", 5), None) == Recovery((), Position("E", 5), True)


def test_since_inside_history_gives_exactly_the_suffix():
    rec = recover_from(pubs(3, 10), Position("E", 10), Position("E", 6))
    assert rec.recovered and offsets(list(rec.publications)) == [7, 8, 9, 10]


def test_since_at_the_oldest_boundary_is_still_served():
    rec = recover_from(pubs(3, 10), Position("E", 10), Position("E", 2))
    assert rec.recovered and offsets(list(rec.publications)) == list(range(3, 11))


def test_since_at_top_is_recovered_with_nothing_missed():
    rec = recover_from(pubs(3, 10), Position("E", 10), Position("E", 10))
    assert rec.recovered and not rec.publications


def test_unknown_epoch_older_than_history_or_from_the_future_are_gaps():
    history, top = pubs(3, 10), Position("E", 10)
    for since in (Position("OLD", 5), Position("E", 1), Position("E", 11), Position("E", -1)):
        rec = recover_from(history, top, since)
        assert rec == Recovery((), top, False), since


def test_empty_history_serves_only_the_top():
    assert recover_from([], Position("E", 4), Position("E", 4)).recovered
    assert not recover_from([], Position("E", 4), Position("E", 3)).recovered


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


# --- the wire form of a publication, built once per redaction class ---


def test_message_is_cached_and_redacted_form_is_separate():
    prepared = PreparedEvent({"data": {"logdata": {"PASSWORD": "hunter2"}}}, 0.0)
    pub = Publication("threats", "E", 7, prepared)
    redactor = Redactor(["data.logdata.PASSWORD"])
    full, hidden = pub.message(None), pub.message(redactor)
    assert full is pub.message(None) and hidden is pub.message(redactor)
    assert full.startswith(b'{"type":"event","channel":"threats","epoch":"E","offset":7,"event":')
    assert b"hunter2" in full and b"hunter2" not in hidden
