"""Stream positions, publications and history lookup: the data of delivery guarantees.

A channel is a sequence of publications numbered by ``offset`` (1, 2, 3, ...) within an
``epoch``. A new epoch means the old sequence is gone (memory broker restarted, Redis stream
lost), so a client holding a position of another epoch cannot be served from history.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from .events import to_json
from .redact import Redactor


@dataclass(frozen=True, slots=True)
class Position:
    """Where a subscriber stands in a channel: the last offset it has, within an epoch."""

    epoch: str
    offset: int

    def as_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "offset": self.offset}


class PreparedEvent:
    """One normalized event and its JSON, serialized at most once per redaction class.

    Either may be given: an event kept in history is only its JSON (``event`` None), decoded
    again when a filter or a redactor needs it, since the dict costs over twice its JSON.
    """

    __slots__ = ("_event", "received", "_full", "_redacted")

    def __init__(
        self, event: dict[str, Any] | None, received: float, full: bytes | None = None
    ) -> None:
        if event is None and full is None:
            raise ValueError("a prepared event needs its event or its JSON")
        self._event = event
        self.received = received
        self._full = full
        self._redacted: bytes | None = None

    @property
    def event(self) -> dict[str, Any]:
        """The normalized event (decoded from its JSON when only that was kept)."""
        if self._event is None:
            assert self._full is not None
            self._event = orjson.loads(self._full)
        return self._event

    def json(self, redactor: Redactor | None) -> bytes:
        """The event's JSON; with a redactor, the redacted form (shared when nothing hides)."""
        if self._full is None:
            self._full = to_json(self._event)
        if redactor is None:
            return self._full
        if self._redacted is None:
            hidden = redactor.apply(self.event)
            self._redacted = self._full if hidden is None else to_json(hidden)
        return self._redacted


class Publication:
    """One event on one channel at one position; its wire message is built once per class."""

    __slots__ = ("channel", "epoch", "offset", "prepared", "_messages")

    def __init__(self, channel: str, epoch: str, offset: int, prepared: PreparedEvent) -> None:
        self.channel = channel
        self.epoch = epoch
        self.offset = offset
        self.prepared = prepared
        self._messages: list[bytes | None] = [None, None]

    @property
    def position(self) -> Position:
        return Position(self.epoch, self.offset)

    def message(self, redactor: Redactor | None) -> bytes:
        """``{"type":"event",...}`` bytes; index 1 is the redacted form."""
        slot = 0 if redactor is None else 1
        msg = self._messages[slot]
        if msg is None:
            msg = b"".join(
                (
                    b'{"type":"event","channel":',
                    orjson.dumps(self.channel),
                    b',"epoch":',
                    orjson.dumps(self.epoch),
                    b',"offset":',
                    str(self.offset).encode(),
                    b',"event":',
                    self.prepared.json(redactor),
                    b"}",
                )
            )
            self._messages[slot] = msg
        return msg


@dataclass(frozen=True, slots=True)
class Recovery:
    """What history can give a subscriber resuming ``since`` a position.

    ``recovered`` is False when the position cannot be served (other epoch, or older than the
    history holds): the subscriber gets a ``gap`` and then live events.
    """

    publications: Sequence[Publication]
    position: Position
    recovered: bool


class Recent(Protocol):
    """The newest publications of a channel, oldest first (``history.History``)."""

    def __len__(self) -> int: ...

    def newest(self, count: int) -> list[Publication]:
        """The last ``count`` publications (at most ``len``), oldest first."""


def recover_from(history: Recent, top: Position, since: Position | None) -> Recovery:
    """Pure history lookup: ``history`` holds the newest publications, ending at ``top``."""
    if since is None:
        return Recovery((), top, True)
    if since.epoch != top.epoch or since.offset > top.offset or since.offset < 0:
        return Recovery((), top, False)
    missed = top.offset - since.offset
    if missed == 0:
        return Recovery((), top, True)
    if missed > len(history):
        return Recovery((), top, False)
    return Recovery(history.newest(missed), top, True)


def catch_up(
    since: Position, sources: Iterable[Publication], last: Position
) -> list[Publication] | None:
    """The publications after ``since`` up to ``last`` (where live delivery takes over), each
    once and in offset order, picked from ``sources`` (ordered runs that may overlap, e.g.
    history then what was flushed while history was read); None when they cannot all be found,
    which the subscriber must learn as a gap rather than miss silently."""
    if since.epoch != last.epoch or since.offset > last.offset:
        return None
    run: list[Publication] = []
    expected = since.offset + 1
    for pub in sources:
        if pub.offset == expected and expected <= last.offset and pub.epoch == since.epoch:
            run.append(pub)
            expected += 1
    return run if expected == last.offset + 1 else None
