"""How the Redis broker stores a run of events in one stream entry, and reads them back.

One entry per run of a channel's events, not one per event: a node writes a whole batch with
one script call and a reader gets it in one reply, which is what lets the broker move tens of
thousands of events a second (docs/performance.md). Offsets stay per event: the entry's ID is
``<last offset>-0`` and it holds ``count`` events, so its events have offsets
``last - count + 1 .. last``. With the last offset as the ID, ``XREAD`` from the last offset
a reader delivered returns the next entry, and ``XRANGE`` from any offset starts at the entry
holding it. Fields: ``j``, the events' JSON joined by newlines (compact JSON has no raw
newline: a document with one is re-serialized compactly); ``t``, their ingest times (epoch
seconds) joined by spaces. An entry of one event is exactly the format of one event per entry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import orjson

from .positions import PreparedEvent, Publication


def join_events(jsons: Sequence[bytes]) -> bytes:
    """The ``j`` field: the events' JSON, one per line."""
    joined = b"\n".join(jsons)
    if joined.count(b"\n") == len(jsons) - 1:
        return joined
    return b"\n".join(orjson.dumps(orjson.loads(j)) if b"\n" in j else j for j in jsons)


def join_times(times: Sequence[float]) -> bytes:
    """The ``t`` field: the ingest times, exact (``repr``), separated by spaces."""
    return " ".join(map(repr, times)).encode()


def entry_publications(
    channel: str, epoch: str, entry_id: bytes, fields: Mapping[bytes, bytes]
) -> list[Publication]:
    """The entry's events as publications, in offset order; their JSON is kept as stored
    (decoded only if a filter or redactor needs the event)."""
    jsons = fields[b"j"].split(b"\n")
    times = fields[b"t"].split(b" ")
    if len(times) != len(jsons):
        raise ValueError(f"stream entry {entry_id!r}: {len(jsons)} events, {len(times)} times")
    first = int(entry_id.partition(b"-")[0]) - len(jsons) + 1
    return [
        Publication(channel, epoch, first + i, PreparedEvent(None, float(t), full=j))
        for i, (j, t) in enumerate(zip(jsons, times, strict=True))
    ]
