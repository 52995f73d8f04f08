"""In-process broker: offsets assigned at publish time, bounded history per channel.

Each channel gets a fresh random epoch when the process starts, because its history does not
survive a restart: a client resuming with a position from before gets an honest ``gap``.
A line of a followed file that is published again (same id) is not appended twice.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from .broker import Deliver, Lost
from .filefollow import Watermarks
from .history import History
from .positions import Position, PreparedEvent, Publication, Recovery, recover_from
from .revocation import Revocation, Revocations

#: Per channel, the followed files (generations) whose last published line is remembered.
FILE_SOURCES = 1024


class _Sequence:
    __slots__ = ("epoch", "offset", "history", "files")

    def __init__(self, history_size: int, history_bytes: int) -> None:
        self.epoch = secrets.token_hex(6)
        self.offset = 0
        self.history = History(history_size, history_bytes)
        self.files = Watermarks(FILE_SOURCES)


class MemoryBroker:
    """The default broker: one process, one feed."""

    def __init__(self, history_size: int, history_bytes: int = 0) -> None:
        self._history_size = history_size
        self._history_bytes = history_bytes
        self._channels: dict[str, _Sequence] = {}
        self._deliver: Deliver | None = None
        self._revocations = Revocations()  # the node's, once it follows them

    async def start(self, deliver: Deliver, lost: Lost | None = None) -> None:
        """``lost`` is never called: offsets are assigned here, so nothing is skipped."""
        self._deliver = deliver

    async def stop(self) -> None:
        self._deliver = None

    async def flushed(self) -> None:
        """Everything published is in history at once (and dies with the process)."""

    async def delivered(self) -> None:
        """Everything published was delivered in :meth:`publish` already."""

    def publish(self, channel: str, prepared: PreparedEvent) -> None:
        ch = self._channel(channel)
        if not ch.files.fresh(prepared.event.get("id")):
            return
        ch.offset += 1
        pub = Publication(channel, ch.epoch, ch.offset, prepared)
        ch.history.append(pub)
        if self._deliver is not None:
            self._deliver(pub)

    async def recover(self, channel: str, since: Position | None) -> Recovery:
        ch = self._channel(channel)
        return recover_from(ch.history, Position(ch.epoch, ch.offset), since)

    def position(self, channel: str) -> Position:
        ch = self._channel(channel)
        return Position(ch.epoch, ch.offset)

    @property
    def ready(self) -> bool:
        return True

    def state(self) -> dict[str, Any]:
        return {"kind": "memory", "state": "ready", "ready": True}

    def follow_revocations(self, revocations: Revocations) -> None:
        self._revocations = revocations

    async def revoke(self, revocation: Revocation) -> None:
        """One node: in force at once, forgotten with the process."""
        self._revocations.add(revocation, time.time())

    async def lift(self, revocation_id: str) -> bool:
        return self._revocations.lift(revocation_id) is not None

    def _channel(self, name: str) -> _Sequence:
        ch = self._channels.get(name)
        if ch is None:
            ch = self._channels[name] = _Sequence(self._history_size, self._history_bytes)
        return ch
