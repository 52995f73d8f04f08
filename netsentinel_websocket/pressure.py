"""Backpressure from delivery to the runner's own ingest: a burst enters at the pace the
subscribers take it, so a live event from another sensor is not queued behind the whole burst.

Without it, a 100,000-line burst on one ingest connection is accepted at once and queued in
every subscriber's ordered outbox (and in its socket's send buffer, which Linux grows up to
4 MiB on its own): a live event that arrives meanwhile reaches the subscribers some 30 s later.
With it (docs/performance.md, "A 100,000-line burst beside live events"):

- a connection is *behind* while its outbox holds more than ``behind_bytes`` (its socket's send
  buffer is full: ``websocket.queue.send_buffer`` keeps that small);
- a behind connection *counts* while it has taken a write within the last ``stall`` seconds; one
  that stopped reading does not hold everyone back (its outbox fills up to
  ``websocket.queue.max_bytes`` and it is closed with 4009, as before);
- a heavy producer waits before its next read while more than ``share`` of the connections
  count (at least one must), at most ``max_wait`` seconds per read, then reads anyway;
- a producer whose last read was light (under :data:`LIGHT` bytes: a sensor's trickle of live
  events) is never held.

Only the node's own producers wait (the runner's TCP and file ingest); nothing here drops an
event or closes a connection. Pure bookkeeping, plus the one wait.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from .config import PressureSettings

#: A read of fewer bytes than this is light: its producer is never held (a sensor's live events
#: arrive a line or a few at a time; a burst fills the 64 KiB reads).
LIGHT = 4096
#: While held, how often a producer looks again even if no connection caught up (a connection
#: that stops counting because it stalled catches up with nothing).
RECHECK = 0.05


class Pressure:
    """How far the node's connections are behind, and the producers' wait."""

    def __init__(
        self,
        settings: PressureSettings,
        population: Callable[[], int],
        record: Callable[[float], None] = lambda seconds: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``population``: how many connections there are (the share is of those);
        ``record``: called with the seconds of each wait (the metric)."""
        self.behind_bytes = settings.behind_bytes
        self._share = settings.share
        self._stall = settings.stall
        self._max_wait = settings.max_wait
        self._population = population
        self._record = record
        self._clock = clock
        self._behind: dict[object, float] = {}  # behind connection -> when it last took a write
        self._waiters: list[asyncio.Future[None]] = []
        self._wake_scheduled = False

    @property
    def behind(self) -> int:
        """Connections behind now, whether they count or not (for ``/ws/stats``)."""
        return len(self._behind)

    def fell_behind(self, member: object) -> None:
        """``member``'s outbox went over ``behind_bytes``."""
        self._behind[member] = self._clock()

    def took(self, member: object) -> None:
        """A write of a behind ``member`` completed: it is reading."""
        if member in self._behind:
            self._behind[member] = self._clock()

    def caught_up(self, member: object) -> None:
        """``member``'s outbox is back under ``behind_bytes`` (or it closed)."""
        if self._behind.pop(member, None) is not None and self._waiters:
            self._schedule_wake()

    def held(self) -> bool:
        """Whether heavy producers wait now."""
        if not self._behind or self._max_wait <= 0:
            return False
        recent = self._clock() - self._stall
        counting = sum(1 for took in self._behind.values() if took >= recent)
        return counting > 0 and counting > self._share * self._population()

    async def hold(self, last_read: int) -> float:
        """Before a producer's next read: wait while :meth:`held`, unless ``last_read`` (the
        bytes of its previous read) was light; at most ``max_wait`` seconds. Returns the
        seconds waited, which the caller must not count against the producer's idle timeout."""
        if last_read < LIGHT:
            return 0.0
        # A read that finds bytes waiting completes without yielding to the loop: let the hub
        # flush what this one published first, so that its subscribers' outboxes show it.
        await asyncio.sleep(0)
        if not self.held():
            return 0.0
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + self._max_wait
        while (left := deadline - loop.time()) > 0 and self.held():
            waiter = loop.create_future()
            self._waiters.append(waiter)
            timer = loop.call_later(min(left, RECHECK), _wake, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        waited = loop.time() - start
        self._record(waited)
        return waited

    def _schedule_wake(self) -> None:
        """Wake the held producers once per loop turn however many connections caught up in
        it (each looks again: O(behind) per producer per turn, not per caught-up connection)."""
        if not self._wake_scheduled:
            self._wake_scheduled = True
            asyncio.get_running_loop().call_soon(self._wake_all)

    def _wake_all(self) -> None:
        self._wake_scheduled = False
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            _wake(waiter)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
