"""``GET /ws/history/<channel>``: pages of a channel's history, read through the broker.

``since`` is the last position the caller holds; a page holds the events after it (at most
``limit``) and ``next``, the position to ask from for the following page, so a loop on ``next``
walks forward without a hole or a repeat. When history no longer reaches back to ``since`` the
page says ``gap`` and starts at the oldest event history still holds. Without ``since`` the page
is the newest ``limit`` events.

The broker answers one question, "the events after this position, if you still have them all"
(:meth:`~.broker.Broker.recover`); the oldest position it can serve is found by bisection on
that answer, which history being a contiguous run makes monotonic.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import orjson

from .positions import Position, Publication, Recovery
from .redact import Redactor
from .sse import SSEError, position

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

Recover = Callable[[Position], Awaitable[Recovery]]


def parse_since(text: str | None) -> Position | None:
    """``<epoch>:<offset>`` (the epoch may itself hold ``:``); strict: digits only."""
    if text is None:
        return None
    epoch, sep, offset = text.rpartition(":")
    if not sep or not offset.isascii() or not offset.isdigit() or len(offset) > 19:
        raise SSEError("since must be <epoch>:<offset>")
    return position(epoch, int(offset))


def parse_limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    if not (text.isascii() and text.isdigit() and len(text) <= 4 and 1 <= int(text) <= MAX_LIMIT):
        raise SSEError(f"limit must be an integer from 1 to {MAX_LIMIT}")
    return int(text)


@dataclass(frozen=True, slots=True)
class Page:
    epoch: str
    publications: Sequence[Publication]
    next: Position
    gap: bool

    def body(self, channel: str, redactor: Redactor | None) -> bytes:
        """The JSON answer; the event messages are the WebSocket's, joined as they are."""
        events = b",".join(p.message(redactor) for p in self.publications)
        return b"".join(
            (
                b'{"channel":',
                orjson.dumps(channel),
                b',"epoch":',
                orjson.dumps(self.epoch),
                b',"events":[',
                events,
                b'],"next":',
                orjson.dumps(f"{self.next.epoch}:{self.next.offset}"),
                b',"gap":',
                b"true" if self.gap else b"false",
                b"}",
            )
        )


async def page(recover: Recover, top: Position, since: Position | None, limit: int) -> Page:
    """One page after ``since`` (or the newest ``limit`` events); ``top`` is the channel's
    current position."""
    start = since or Position(top.epoch, max(0, top.offset - limit))
    found = await recover(start)
    gap = False
    if not found.recovered:
        gap = since is not None  # without since, history holding fewer is no gap
        now = found.position
        floor = start.offset if start.epoch == now.epoch and start.offset <= now.offset else 0
        start, found = await _oldest(recover, Position(now.epoch, floor), now)
    pubs = found.publications[:limit]
    last = pubs[-1].position if pubs else start
    return Page(found.position.epoch, pubs, last, gap)


async def _oldest(recover: Recover, floor: Position, top: Position) -> tuple[Position, Recovery]:
    """The earliest position from ``floor`` on that history can serve, and its recovery."""
    lo, hi = floor.offset, top.offset
    best = Recovery((), top, True)  # serving from the top always works: nothing is missed
    while lo < hi:
        mid = (lo + hi) // 2
        found = await recover(Position(top.epoch, mid))
        if found.recovered:
            hi, best = mid, found
        else:
            lo = mid + 1
    return Position(top.epoch, hi), best
