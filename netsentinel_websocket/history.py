"""A channel's recent publications, kept for resume and bounded by count and by bytes.

Counting events alone would let a run of large events (an attacker controls much of an
honeypot record) hold ``history.size`` times the largest event; the byte bound caps that.
The size of an event is its JSON, which was made where it entered, so counting costs nothing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from .positions import Publication


class History:
    """The newest publications of one channel, oldest first; at most ``max_count`` of them
    and at most ``max_bytes`` of JSON (0: no byte bound), the oldest dropped first."""

    __slots__ = ("_items", "_max_count", "_max_bytes", "_bytes")

    def __init__(self, max_count: int, max_bytes: int = 0) -> None:
        self._items: deque[tuple[Publication, int]] = deque()
        self._max_count = max_count
        self._max_bytes = max_bytes
        self._bytes = 0

    def append(self, pub: Publication) -> None:
        if self._max_count == 0:
            return
        size = len(pub.prepared.json(None))
        self._items.append((pub, size))
        self._bytes += size
        items = self._items
        while len(items) > self._max_count or (self._max_bytes and self._bytes > self._max_bytes):
            self._bytes -= items.popleft()[1]

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
        return (pub for pub, _ in self._items)
