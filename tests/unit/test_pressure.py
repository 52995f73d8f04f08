"""Backpressure rules (:mod:`netsentinel_websocket.pressure`) and how an outbox reports to them,
without sockets: a fake clock, a fake population, the outbox on a transport that takes nothing
until told to."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from netsentinel_websocket.config import PressureSettings
from netsentinel_websocket.outbox import Outbox
from netsentinel_websocket.pressure import LIGHT, Pressure

SETTINGS = PressureSettings(behind_bytes=1000, share=0.1, stall=2.0, max_wait=1.0)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def pressure(
    population: int = 10, settings: PressureSettings = SETTINGS, **kwargs: object
) -> tuple[Pressure, Clock]:
    clock = Clock()
    return Pressure(settings, lambda: population, clock=clock, **kwargs), clock  # type: ignore[arg-type]


def test_nothing_behind_holds_nobody():
    p, _ = pressure()
    assert not p.held()
    assert p.behind == 0


def test_held_only_when_more_than_the_share_are_behind():
    p, _ = pressure(population=20)  # share 0.1 of 20: more than 2 must be behind
    p.fell_behind("a")
    p.fell_behind("b")
    assert not p.held()
    p.fell_behind("c")
    assert p.held()
    p.caught_up("b")
    assert not p.held()
    assert p.behind == 2


def test_one_behind_is_enough_when_the_share_is_below_one_connection():
    p, _ = pressure(population=5)  # 0.1 x 5 = 0.5
    p.fell_behind("a")
    assert p.held()


def test_a_behind_connection_that_takes_nothing_stops_counting_after_the_stall():
    p, clock = pressure(population=1)
    p.fell_behind("reader")
    clock.now += 1.9
    assert p.held()
    clock.now += 0.2  # 2.1 s without a completed write
    assert not p.held()
    assert p.behind == 1  # still behind (for /ws/stats), just not counted
    p.took("reader")  # it reads again: it counts again
    assert p.held()


def test_took_of_a_connection_not_behind_is_ignored():
    p, _ = pressure(population=1)
    p.took("stranger")
    assert not p.held()
    assert p.behind == 0


def test_max_wait_zero_turns_it_off():
    off = PressureSettings(behind_bytes=1000, share=0.0, stall=2.0, max_wait=0.0)
    p, _ = pressure(population=1, settings=off)
    p.fell_behind("a")
    assert not p.held()


@pytest.mark.gen_test
async def test_a_light_read_is_never_held():
    waits: list[float] = []
    p, _ = pressure(population=1, record=waits.append)
    p.fell_behind("a")
    assert p.held()
    assert await p.hold(LIGHT - 1) == 0.0
    assert waits == []  # no wait, nothing recorded


@pytest.mark.gen_test
async def test_a_heavy_read_waits_until_the_connection_catches_up():
    waits: list[float] = []
    p = Pressure(SETTINGS, lambda: 1, record=waits.append)
    p.fell_behind("a")
    holding = asyncio.ensure_future(p.hold(LIGHT))
    await asyncio.sleep(0.05)
    assert not holding.done()
    p.caught_up("a")
    waited = await asyncio.wait_for(holding, 0.5)
    assert 0.04 < waited < 0.5
    assert waits == [waited]


@pytest.mark.gen_test
async def test_a_heavy_read_waits_at_most_max_wait():
    short = PressureSettings(behind_bytes=1000, share=0.0, stall=60.0, max_wait=0.2)
    p = Pressure(short, lambda: 1)
    p.fell_behind("a")  # never catches up, keeps counting (stall 60 s)
    waited = await asyncio.wait_for(p.hold(LIGHT), 2.0)
    assert 0.19 < waited < 1.0


@pytest.mark.gen_test
async def test_a_heavy_read_goes_on_when_the_laggard_stalls():
    stall = PressureSettings(behind_bytes=1000, share=0.0, stall=0.1, max_wait=5.0)
    p = Pressure(stall, lambda: 1)
    p.fell_behind("a")  # stops counting after 0.1 s; the recheck sees it without a wake-up
    waited = await asyncio.wait_for(p.hold(LIGHT), 2.0)
    assert 0.09 < waited < 1.0


@pytest.mark.gen_test
async def test_nothing_behind_a_heavy_read_returns_after_one_loop_turn():
    p = Pressure(SETTINGS, lambda: 1)
    flushed: list[bool] = []
    asyncio.get_running_loop().call_soon(flushed.append, True)  # e.g. the hub's flush
    assert await p.hold(LIGHT) == 0.0
    assert flushed == [True]  # the flush scheduled before ran before the next read


# --- the outbox's reports ---


class HeldTransport:
    """Takes nothing now; completes a write only when told."""

    def __init__(self) -> None:
        self.pending: list[tuple[int, Callable[[bool], None]]] = []

    def send_now(self, data: bytes | memoryview) -> int:
        return 0

    def write(self, data: bytes | memoryview, done: Callable[[bool], None]) -> None:
        self.pending.append((len(data), done))

    def complete(self, ok: bool = True) -> None:
        _, done = self.pending.pop(0)
        done(ok)


class Watch:
    """Records what an outbox tells its pressure."""

    behind_bytes = 1000

    def __init__(self) -> None:
        self.calls: list[str] = []

    def fell_behind(self, member: object) -> None:
        self.calls.append("behind")

    def took(self, member: object) -> None:
        self.calls.append("took")

    def caught_up(self, member: object) -> None:
        self.calls.append("caught_up")


def outbox() -> tuple[Outbox, HeldTransport, Watch]:
    transport, watch = HeldTransport(), Watch()
    return Outbox(transport, 1 << 20, watch), transport, watch  # type: ignore[arg-type]


def test_an_outbox_falls_behind_past_behind_bytes_in_flight_and_waiting():
    box, _, watch = outbox()
    box.push(b"x" * 600)  # in flight: 600
    box.push(b"x" * 400)  # 1000 in all: not more than behind_bytes
    assert watch.calls == []
    box.push(b"x")  # 1001
    assert watch.calls == ["behind"]
    box.push(b"x" * 5000)
    assert watch.calls == ["behind"]  # told once


def test_an_outbox_reports_progress_and_catching_up():
    box, transport, watch = outbox()
    box.push(b"x" * 600)
    box.push(b"x" * 2000)
    assert watch.calls == ["behind"]
    transport.complete()  # 600 written; the 2000 waiting go out in one write: still behind
    assert watch.calls == ["behind", "took"]
    transport.complete()  # all written
    assert watch.calls == ["behind", "took", "took", "caught_up"]
    assert box.idle


def test_a_cleared_outbox_is_no_longer_behind():
    box, transport, watch = outbox()
    box.push(b"x" * 600)
    box.push(b"x" * 2000)
    box.clear()
    assert watch.calls == ["behind", "caught_up"]
    transport.complete()  # the write in flight completes after the close: nothing more told
    assert watch.calls == ["behind", "caught_up"]


def test_a_broken_write_reports_no_progress():
    box, transport, watch = outbox()
    box.push(b"x" * 600)
    box.push(b"x" * 2000)
    transport.complete(ok=False)
    assert watch.calls == ["behind"]


def test_an_outbox_without_a_watch_reports_nothing():
    transport = HeldTransport()
    box = Outbox(transport, 1 << 20)
    box.push(b"x" * 5000)
    box.push(b"x" * 5000)
    transport.complete()
    transport.complete()
    assert box.idle
