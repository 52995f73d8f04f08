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
from operator import itemgetter

import orjson

from .positions import PreparedEvent, Publication

#: The most events one entry holds: a node writes a run of at most one write batch.
MAX_ENTRY_EVENTS = 500

_FIRST, _LAST = itemgetter(0), itemgetter(-1)  # of a line: "{" and "}" for a JSON object


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
    channel: str,
    epoch: str,
    entry_id: bytes,
    fields: Mapping[bytes, bytes],
    max_event_bytes: int = 0,
) -> list[Publication]:
    """The entry's events as publications, in offset order; their JSON is kept as stored
    (decoded only if a filter or redactor needs the event).

    ValueError for an entry no node of this version writes (a buggy or older node of the
    feed): a field missing, as many times as events not, more than :data:`MAX_ENTRY_EVENTS`,
    an event over ``max_event_bytes`` (0: no bound; the pipeline refuses those where they
    enter), a line not shaped as a JSON object, a time that is not a number. Its message
    names the entry, never its content. The shape check is cheap (each line's first and last
    byte); a line shaped as an object that still is not JSON fails only where it is decoded."""
    joined, spaced = fields.get(b"j"), fields.get(b"t")
    if joined is None or spaced is None:
        raise ValueError(f"stream entry {entry_id!r}: no {'j' if joined is None else 't'} field")
    jsons = joined.split(b"\n", MAX_ENTRY_EVENTS)  # at most one piece more: a bound
    count = len(jsons)
    if count > MAX_ENTRY_EVENTS:
        count = joined.count(b"\n") + 1
        raise ValueError(f"stream entry {entry_id!r}: {count} events, over {MAX_ENTRY_EVENTS}")
    if not all(jsons) or {*map(_FIRST, jsons)} != {0x7B} or {*map(_LAST, jsons)} != {0x7D}:
        raise ValueError(f"stream entry {entry_id!r}: a line that is not a JSON object")
    times = spaced.split(b" ", count)
    if len(times) != count:
        times_count = spaced.count(b" ") + 1
        raise ValueError(f"stream entry {entry_id!r}: {count} events, {times_count} times")
    if max_event_bytes and max(map(len, jsons)) > max_event_bytes:
        raise ValueError(f"stream entry {entry_id!r}: an event over {max_event_bytes} bytes")
    first = int(entry_id.partition(b"-")[0]) - count + 1
    try:
        return [
            Publication(channel, epoch, first + i, PreparedEvent(None, float(t), full=j))
            for i, (j, t) in enumerate(zip(jsons, times, strict=True))
        ]
    except ValueError:  # float()'s message would quote the field
        raise ValueError(f"stream entry {entry_id!r}: a time that is not a number") from None
