"""The outbox without a socket: order, the bound, replays paced by completed writes."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from netsentinel_websocket.outbox import MAX_PENDING_REPLAYS, Outbox


class Transport:
    """Takes ``accept`` bytes at once per ``send_now``; buffered writes complete on ``finish``."""

    def __init__(self, accept: int = 0) -> None:
        self.accept = accept
        self.wire: list[bytes] = []  # everything that reached the socket, in order
        self.pending: list[tuple[bytes, Callable[[bool], None]]] = []

    def send_now(self, data: bytes | memoryview) -> int:
        taken = min(self.accept, len(data))
        if taken:
            self.wire.append(bytes(data[:taken]))
        return taken

    def write(self, data: bytes | memoryview, done: Callable[[bool], None]) -> None:
        self.pending.append((bytes(data), done))

    def finish(self, ok: bool = True) -> None:
        """The write in flight completes."""
        data, done = self.pending.pop(0)
        if ok:
            self.wire.append(data)
        done(ok)

    @property
    def sent(self) -> bytes:
        return b"".join(self.wire)


def test_idle_frames_go_straight_to_the_socket():
    transport = Transport(accept=1 << 20)
    box = Outbox(transport, bound=100)
    assert box.push(b"a" * 500, 2) and box.push(b"b" * 500, 1)
    assert transport.sent == b"a" * 500 + b"b" * 500 and transport.pending == []
    assert box.idle and box.sent == 3


def test_partial_send_leaves_the_rest_in_flight_and_later_frames_wait_in_order():
    transport = Transport(accept=3)
    box = Outbox(transport, bound=100)
    box.push(b"first", 1)
    assert transport.wire == [b"fir"] and transport.pending[0][0] == b"st"
    box.push(b"second", 1)
    box.push(b"third", 1)
    assert box.queued == 11 and not box.idle
    transport.accept = 0
    transport.finish()  # "st" done: the two waiting frames go out as one write
    assert transport.pending[0][0] == b"secondthird" and box.queued == 0
    transport.finish()
    assert transport.sent == b"firstsecondthird" and box.idle and box.sent == 3


def test_a_frame_over_the_bound_is_refused_and_not_kept():
    transport = Transport(accept=0)
    box = Outbox(transport, bound=10)
    assert box.push(b"x" * 50)  # idle: in flight, the bound is for what waits behind it
    assert box.push(b"y" * 10)
    assert not box.push(b"z")  # 11 bytes would wait
    assert box.queued == 10
    transport.finish()
    transport.finish()
    assert transport.sent == b"x" * 50 + b"y" * 10


def frames(n: int, size: int, drawn: list[int]) -> Iterator[tuple[bytes, int]]:
    for i in range(n):
        drawn.append(i)
        yield bytes([65 + i]) * size, 1


def test_a_replay_is_drawn_one_frame_per_completed_write():
    transport = Transport(accept=0)
    box = Outbox(transport, bound=10)
    drawn: list[int] = []
    assert box.push_replay(frames(3, 1000, drawn))  # 3000 bytes: far over the bound
    assert drawn == [0] and len(transport.pending) == 1
    assert box.push(b"live", 1)  # live frames wait behind the replay
    transport.finish()
    assert drawn == [0, 1]
    transport.finish()
    transport.finish()
    assert drawn == [0, 1, 2] and transport.pending[0][0] == b"live"
    transport.finish()
    assert transport.sent == b"A" * 1000 + b"B" * 1000 + b"C" * 1000 + b"live"
    assert box.idle and box.sent == 4


def test_a_reader_that_never_reads_holds_one_replay_frame_and_meets_the_bound():
    transport = Transport(accept=0)
    box = Outbox(transport, bound=100)
    drawn: list[int] = []
    box.push_replay(frames(1000, 1000, drawn))
    live = [box.push(b"e" * 30) for _ in range(4)]
    assert live == [True, True, True, False]
    assert drawn == [0] and box.queued == 90


def test_too_many_waiting_replays_are_refused():
    box = Outbox(Transport(accept=0), bound=100)
    results = [box.push_replay(frames(2, 10, [])) for _ in range(MAX_PENDING_REPLAYS + 1)]
    assert results == [True] * MAX_PENDING_REPLAYS + [False]


def test_an_exhausted_replay_frees_its_place():
    transport = Transport(accept=1 << 20)
    box = Outbox(transport, bound=100)
    for _ in range(MAX_PENDING_REPLAYS * 3):  # each drains at once: none stays waiting
        assert box.push_replay(frames(2, 10, []))
    assert box.idle


def test_when_idle_waits_for_everything_queued():
    transport = Transport(accept=0)
    box = Outbox(transport, bound=100)
    calls: list[str] = []
    box.push(b"one")
    box.push(b"two")
    box.when_idle(lambda: calls.append("idle"))
    transport.finish()
    assert calls == []
    transport.finish()
    assert calls == ["idle"]
    box.when_idle(lambda: calls.append("now"))
    assert calls == ["idle", "now"]


def test_clear_drops_what_waits_and_a_failed_write_stops_the_outbox():
    transport = Transport(accept=0)
    box = Outbox(transport, bound=100)
    box.push(b"one")
    box.push(b"two")
    box.push_replay(frames(5, 10, []))
    box.clear()
    assert box.queued == 0
    transport.finish(ok=False)
    assert transport.pending == [] and transport.wire == []
