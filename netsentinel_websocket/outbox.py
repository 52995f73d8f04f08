"""One connection's outbound queue: every server frame in order, bounded, one write at a time.

The outbox owns the slow-consumer rule. Frames go straight to the transport while nothing is
in flight; otherwise they wait in a queue whose bytes may not pass ``bound``: a frame that
would put it over makes :meth:`Outbox.push` return False, and the caller closes the connection
with 4009. Nothing is ever written past the bound, whoever asks (control replies included).

A resume replay can be far larger than the bound (a whole channel history), so it is not
queued as bytes: :meth:`Outbox.push_replay` queues an iterator of frames, and the outbox draws
the next frame only when the previous write has completed. What a replay holds in memory at
once is one frame, paced by the reader's socket; a client that never reads never gets past
it, and the live frames queued behind it meet the bound as usual.

The outbox also tells the node's :class:`~.pressure.Pressure` (its *watch*) when it falls
behind (more than the watch's ``behind_bytes`` waiting or in flight), takes a write while
behind, and catches up, so that the runner's ingest can wait for subscribers instead of
queueing a burst in front of live events.

No I/O here: the transport does the writing (see :class:`Transport`), which keeps this
testable without a socket.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Protocol

from .pressure import Pressure

Frames = Iterator[tuple[bytes, int]]

#: Replays a connection may have waiting at once; one more means the client sends resumes
#: without reading what they produce (a slow consumer by definition).
MAX_PENDING_REPLAYS = 4


class Transport(Protocol):
    """How an outbox writes: the connection's side of it."""

    def send_now(self, data: bytes | memoryview) -> int:
        """Write without waiting what the socket takes at once; returns the bytes taken (0 when
        it cannot take any now). Only called when no write is in flight."""

    def write(self, data: bytes | memoryview, done: Callable[[bool], None]) -> None:
        """Write everything, calling ``done(ok)`` once it has all reached the socket (``ok``
        False when the connection broke)."""


class Outbox:
    """Bounded, ordered outbound frames of one connection."""

    __slots__ = (
        "_transport",
        "_bound",
        "_watch",
        "_queue",
        "_queued",
        "_flight",
        "_busy",
        "_behind",
        "_replays",
        "_idle",
        "sent",
    )

    def __init__(self, transport: Transport, bound: int, watch: Pressure | None = None) -> None:
        self._transport = transport
        self._bound = bound
        self._watch = watch
        # made when something must wait (an empty deque costs 760 bytes; most connections keep up)
        self._queue: deque[tuple[bytes, int] | Frames] | None = None
        self._queued = 0  # bytes of the frames in the queue (replays count as they are drawn)
        self._flight = 0  # bytes of the write in flight when it began
        self._busy = False  # a write is in flight
        self._behind = False  # as last told to the watch
        self._replays = 0
        self._idle: Callable[[], None] | None = None
        self.sent = 0  # events handed to the transport

    @property
    def queued(self) -> int:
        """Bytes waiting behind the write in flight."""
        return self._queued

    @property
    def idle(self) -> bool:
        """True when nothing is in flight or waiting."""
        return not self._busy and not self._queue

    def push(self, frame: bytes, count: int = 0) -> bool:
        """Send ``frame`` (holding ``count`` events) after everything before it; False when it
        would put the queue over the bound (the frame is not kept)."""
        if self.idle:
            self._send(frame, count)
            return True
        if self._queued + len(frame) > self._bound:
            return False
        self._waiting().append((frame, count))
        self._queued += len(frame)
        if not self._behind and self._watch is not None:
            self._gauge()
        return True

    def push_replay(self, frames: Frames) -> bool:
        """Send ``frames`` one at a time, each once the previous write completed; False when too
        many replays are already waiting."""
        if self._replays >= MAX_PENDING_REPLAYS:
            return False
        self._replays += 1
        self._waiting().append(frames)
        if not self._busy:
            self._next()
        return True

    def when_idle(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once everything queued so far has been written (at once if idle)."""
        if self.idle:
            callback()
        else:
            self._idle = callback

    def clear(self) -> None:
        """Forget what waits (the connection is closing); a write in flight completes."""
        if self._queue is not None:
            self._queue.clear()  # a _next() in progress stops here too
            self._queue = None
        self._queued = 0
        self._replays = 0
        self._idle = None
        if self._behind and self._watch is not None:
            self._behind = False
            self._watch.caught_up(self)

    def _waiting(self) -> deque[tuple[bytes, int] | Frames]:
        if self._queue is None:
            self._queue = deque()
        return self._queue

    def _send(self, data: bytes | memoryview, count: int) -> None:
        self.sent += count
        taken = self._transport.send_now(data)
        if taken < len(data):
            self._busy = True
            rest = memoryview(data)[taken:] if taken else data
            self._flight = len(rest)
            self._transport.write(rest, self._written)

    def _written(self, ok: bool) -> None:
        self._busy = False
        self._flight = 0
        if ok:
            if self._behind and self._watch is not None:
                self._watch.took(self)
            self._next()

    def _gauge(self) -> None:
        """Tell the watch when the backlog (in flight and waiting) crosses ``behind_bytes``."""
        watch = self._watch
        assert watch is not None
        over = self._flight + self._queued > watch.behind_bytes
        if over != self._behind:
            self._behind = over
            if over:
                watch.fell_behind(self)
            else:
                watch.caught_up(self)

    def _next(self) -> None:
        """Write what waits: the queued frames up to the next replay joined in one write, or
        the next frame of the replay at the head."""
        queue = self._queue
        while queue and not self._busy:
            head = queue[0]
            if isinstance(head, tuple):
                parts: list[bytes] = []
                count = 0
                while queue and isinstance(waiting := queue[0], tuple):
                    queue.popleft()
                    parts.append(waiting[0])
                    count += waiting[1]
                self._queued -= sum(map(len, parts))
                self._send(parts[0] if len(parts) == 1 else b"".join(parts), count)
                continue
            drawn = next(head, None)
            if drawn is None:
                queue.popleft()
                self._replays -= 1
                continue
            self._send(*drawn)
        if self._queue is not None and not self._queue:
            self._queue = None
        if self._watch is not None:
            self._gauge()
        if self.idle and self._idle is not None:
            callback, self._idle = self._idle, None
            callback()
