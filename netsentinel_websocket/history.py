"""A channel's recent publications, kept for resume and bounded by count and by bytes.

Counting events alone would let a run of large events (an attacker controls much of an
honeypot record) hold ``history.size`` times the largest event; the byte bound caps that.
The size of an event is its JSON, which was made where it entered, so counting costs nothing.

What is kept of a publication is its position, arrival time and JSON, copied to a bytes object
of its exact size: the live publication also holds the event as a dict (about three times its
JSON) and its wire messages, and orjson hands out its JSON in a buffer of at least 4 KiB. Kept
whole, a 250-byte event cost about 5.2 KB of RSS; kept this way it costs its JSON plus about
200 bytes (``tests/unit/test_history_memory.py`` holds it under twice the JSON). A publication read
back is rebuilt around the kept JSON, its event decoded only if a filter or redactor asks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from itertools import islice

from .positions import PreparedEvent, Publication

#: One kept publication: epoch, offset, arrival time, JSON.
_Kept = tuple[str, int, float, bytes]


class History:
    """The newest publications of one channel, oldest first; at most ``max_count`` of them
    and at most ``max_bytes`` of JSON (0: no byte bound), the oldest dropped first."""

    __slots__ = ("_items", "_max_count", "_max_bytes", "_bytes", "_channel")

    def __init__(self, max_count: int, max_bytes: int = 0) -> None:
        self._items: deque[_Kept] = deque()
        self._max_count = max_count
        self._max_bytes = max_bytes
        self._bytes = 0
        self._channel = ""  # every publication of a history is of one channel

    def append(self, pub: Publication) -> None:
        if self._max_count == 0:
            return
        prepared = pub.prepared
        full = bytes(memoryview(prepared.json(None)))  # an exact-size copy (see the module)
        self._channel = pub.channel
        self._items.append((pub.epoch, pub.offset, prepared.received, full))
        self._bytes += len(full)
        items = self._items
        while len(items) > self._max_count or (self._max_bytes and self._bytes > self._max_bytes):
            self._bytes -= len(items.popleft()[3])

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0

    @property
    def bytes(self) -> int:
        """JSON bytes of the events held."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Publication]:
        return self._rebuild(self._items)

    def newest(self, count: int) -> list[Publication]:
        """The last ``count`` publications, oldest first; only those are rebuilt."""
        if count <= 0:
            return []
        last = list(islice(reversed(self._items), count))
        last.reverse()
        return list(self._rebuild(last))

    def _rebuild(self, kept: Iterable[_Kept]) -> Iterator[Publication]:
        channel = self._channel
        for epoch, offset, received, full in kept:
            yield Publication(channel, epoch, offset, PreparedEvent(None, received, full))
