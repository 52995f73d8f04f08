"""History bounded by count and by the JSON bytes of its events."""

from __future__ import annotations

from netsentinel_websocket.history import History
from netsentinel_websocket.positions import Position, PreparedEvent, Publication, recover_from


def pub(offset: int, size: int) -> Publication:
    """A publication whose JSON is exactly ``size`` bytes."""
    full = b'"' + b"x" * (size - 2) + b'"'
    return Publication("events", "E", offset, PreparedEvent({}, 0.0, full))


def test_count_bound_drops_the_oldest():
    history = History(3)
    for offset in range(1, 6):
        history.append(pub(offset, 10))
    assert [p.offset for p in history] == [3, 4, 5] and history.bytes == 30


def test_byte_bound_drops_the_oldest_until_it_fits():
    history = History(1000, max_bytes=250)
    for offset in range(1, 4):
        history.append(pub(offset, 100))
    assert [p.offset for p in history] == [2, 3] and history.bytes == 200
    history.append(pub(4, 240))  # alone it fits: everything older goes
    assert [p.offset for p in history] == [4] and history.bytes == 240


def test_an_event_larger_than_the_byte_bound_is_not_kept():
    history = History(1000, max_bytes=50)
    history.append(pub(1, 40))
    history.append(pub(2, 60))
    assert list(history) == [] and history.bytes == 0


def test_zero_size_keeps_nothing_and_zero_bytes_means_no_byte_bound():
    empty = History(0, max_bytes=0)
    empty.append(pub(1, 10))
    assert len(empty) == 0
    unbounded = History(10, max_bytes=0)
    for offset in range(1, 4):
        unbounded.append(pub(offset, 10_000))
    assert len(unbounded) == 3 and unbounded.bytes == 30_000


def test_what_the_byte_bound_dropped_is_a_gap_for_a_resume():
    history = History(1000, max_bytes=300)
    for offset in range(1, 11):
        history.append(pub(offset, 100))
    top = Position("E", 10)
    assert recover_from(history, top, Position("E", 7)).recovered
    assert [p.offset for p in recover_from(history, top, Position("E", 7)).publications] == [
        8,
        9,
        10,
    ]
    assert not recover_from(history, top, Position("E", 6)).recovered


def test_clear_forgets_everything():
    history = History(10, max_bytes=1000)
    history.append(pub(1, 100))
    history.clear()
    assert list(history) == [] and history.bytes == 0
