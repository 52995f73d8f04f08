"""The hub: who is subscribed to what, and the fan-out hot path.

Subscribers of a channel are grouped by (filter, redaction class, compression: see
:mod:`.frames`). The broker hands publications
to :meth:`Hub.on_publication`; the hub collects those of one event-loop turn and flushes once:
per channel and group, the filter runs once per event, the matching prepared messages are joined
into one WebSocket frame, and that same bytes object is written to every member. The cost per
subscriber per flush is one write call.

Resume (``since``) is a handover between history and live delivery without a hole or a
duplicate: the subscriber is registered as *recovering* before history is read, so every
publication flushed meanwhile is buffered for it, however long the broker's read awaits. Once
history is in, the hub flushes (so nothing handed over is left pending), stitches history and
the buffer into the exact run from ``since`` to the broker's last delivered position, writes it,
and adds the subscriber to its groups in the same loop turn: live delivery starts right after
that position. A run that cannot be stitched without a hole is reported as a ``gap``.

Server-Sent Events readers (:meth:`Hub.stream`) go through the same handover and groups, with
the channel set in the group's key: each SSE event carries a cursor of the positions of all
the stream's channels at that event, which is the same for every live member (each has been
handed everything up to the hub's ``head`` of every channel), so the group's chunk is built
once too. The hub keeps per channel the ``head``, the last position it has flushed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from itertools import chain
from typing import Any, Protocol

from . import protocol, sse
from .broker import Broker
from .filters import Filter
from .frames import coalesce, iter_frames, text_frame
from .metrics import Metrics
from .positions import Position, Publication, Recovery, catch_up
from .protocol import RequestId
from .redact import Redactor

log = logging.getLogger(__name__)

#: Replayed events are turned into messages this many at a time, as the subscriber reads.
REPLAY_BATCH = 256

#: The channels of an SSE reader's stream (its cursor's channels); None for a WebSocket.
Streams = tuple[str, ...] | None


class Subscriber(Protocol):
    """What the hub needs from a connection."""

    @property
    def sensitive(self) -> bool:
        """True when the subscriber may see redacted fields."""

    @property
    def closed(self) -> bool: ...

    def send_frame(self, frame: bytes, count: int = 0) -> None:
        """Write a prepared frame holding ``count`` events; never raises, never blocks."""

    def send_replay(self, frames: Iterator[tuple[bytes, int]]) -> None:
        """Write ``frames`` (frame, events in it) after everything sent so far, drawing each
        only when the subscriber has taken the previous one; never raises, never blocks."""


class _Group:
    __slots__ = ("key", "filter", "redactor", "stream", "deflate", "members")

    def __init__(
        self,
        key: tuple[Any, ...],
        flt: Filter,
        redactor: Redactor | None,
        stream: Streams,
        deflate: int | None,
    ) -> None:
        self.key = key
        self.filter = flt
        self.redactor = redactor
        self.stream = stream  # an SSE group's channels; None for WebSocket subscribers
        self.deflate = deflate  # the window bits of its compressed frames; None: plain
        self.members: dict[Subscriber, None] = {}


class _Recovering:
    __slots__ = ("subscriber", "buffer")

    def __init__(self, subscriber: Subscriber) -> None:
        self.subscriber = subscriber
        self.buffer: list[Publication] = []


class _Audience:
    __slots__ = ("name", "head", "groups", "recovering", "delivered", "subscribed")

    def __init__(self, name: str, head: Position, metrics: Metrics) -> None:
        self.name = name
        self.head = head  # the last position flushed (set again by every handover)
        self.groups: dict[tuple[Any, ...], _Group] = {}
        self.recovering: list[_Recovering] = []
        self.delivered = metrics.events_delivered.labels(name)
        self.subscribed = metrics.subscriptions.labels(name)


class Hub:
    """Fan-out of publications to subscribers; one per node."""

    def __init__(self, broker: Broker, redactor: Redactor, metrics: Metrics) -> None:
        self._broker = broker
        self._redactor = redactor
        self._metrics = metrics
        self._channels: dict[str, _Audience] = {}
        self._memberships: dict[Subscriber, dict[str, _Group]] = {}
        self._pending: list[Publication] = []
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- the hot path ---

    def on_publication(self, pub: Publication) -> None:
        """Called by the broker for every publication; delivery happens at the next flush."""
        self._pending.append(pub)
        if not self._scheduled:
            self._scheduled = True
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Deliver every pending publication now."""
        self._scheduled = False
        pending = self._pending
        if not pending:
            return
        self._pending = []
        by_channel: dict[str, list[Publication]] = {}
        for pub in pending:
            by_channel.setdefault(pub.channel, []).append(pub)
        now = time.time()
        for name, pubs in by_channel.items():
            channel = self._channels.get(name)
            if channel is not None:
                self._deliver(channel, pubs, now)

    def on_loss(self, name: str, resumed: Position) -> None:
        """Called by the broker when publications after the last it delivered are gone (a
        Redis that lost its data, a stream trimmed past a lagging reader): every subscriber of
        ``name`` gets a ``gap`` from where it stands, and live delivery goes on after
        ``resumed``. Pending publications go first, so the gap stands where the loss is."""
        self.flush()
        channel = self._channels.get(name)
        if channel is None:
            return
        message = protocol.gap(name, resumed.epoch, channel.head)
        plain = text_frame(message)  # one frame for every WebSocket group (compression optional)
        channel.head = resumed
        for group in tuple(channel.groups.values()):
            if group.stream is None:
                frame = plain
            else:
                frame = sse.gap(message, {n: self._channels[n].head for n in group.stream})
            for subscriber in tuple(group.members):
                subscriber.send_frame(frame)

    def _deliver(self, channel: _Audience, pubs: list[Publication], now: float) -> None:
        for recovering in channel.recovering:
            recovering.buffer.extend(pubs)
        observe = self._metrics.delivery_latency.observe
        for group in tuple(channel.groups.values()):
            if not group.members:
                continue
            flt = group.filter
            chosen = pubs if flt.match_all else [p for p in pubs if flt.match(p.prepared.event)]
            if not chosen:
                continue
            redactor = group.redactor
            members = tuple(group.members)
            sent = 0  # events in the frames: a publication left out is not delivered
            chosen, messages = self._messages(chosen, redactor)
            if group.stream is None:
                frames = coalesce(messages, window_bits=group.deflate)
            else:
                heads = {name: self._channels[name].head for name in group.stream}
                frames = list(sse.event_chunks(heads, zip(chosen, messages, strict=True)))
            for frame, count in frames:
                for subscriber in members:
                    subscriber.send_frame(frame, count)
                self._metrics.bytes_sent.inc(len(frame) * len(members))
                sent += count
            channel.delivered.inc(sent * len(members))
            for pub in chosen:
                observe(now - pub.prepared.received)
        channel.head = pubs[-1].position

    def _messages(
        self, pubs: list[Publication], redactor: Redactor | None
    ) -> tuple[list[Publication], list[bytes]]:
        """The wire messages of ``pubs``, with the publications they are of. Events are
        serialized where they enter, so this cannot fail for them; should one still fail (a
        broker handing over something odd), it alone is left out and counted: one bad
        publication never costs the others."""
        try:
            return pubs, [p.message(redactor) for p in pubs]
        except Exception:
            kept: list[Publication] = []
            messages: list[bytes] = []
            for pub in pubs:
                try:
                    messages.append(pub.message(redactor))
                    kept.append(pub)
                except Exception as exc:
                    self._metrics.broker_errors.labels("serialize").inc()
                    log.error(
                        "channel %s offset %d not deliverable: %r", pub.channel, pub.offset, exc
                    )
            return kept, messages

    # --- subscriptions ---

    async def subscribe(
        self,
        subscriber: Subscriber,
        request_id: RequestId,
        channels: Sequence[str],
        flt: Filter,
        since: Mapping[str, Position],
        deflate: int | None = None,
    ) -> None:
        """Subscribe to ``channels``; writes the ``subscribed`` reply to ``request_id``, then
        any gaps,
        then the missed events as a replay paced by the subscriber (frames of at most 1 MiB,
        each built when the previous one was taken), before the first live event of these
        channels. With ``deflate`` (window bits: the client negotiated permessage-deflate)
        the events come in compressed frames, made once per group (:mod:`.frames`).

        A reported position is where the subscriber stands: its next event on that channel
        has the following offset.
        """
        handover = await self._handover(subscriber, channels, flt, since)
        if handover is None:
            return
        positions, recovered, missed = handover
        redactor = self._redactor_for(subscriber)
        gaps = [
            protocol.gap(name, positions[name].epoch, since[name])
            for name, ok in recovered.items()
            if not ok
        ]
        reply = protocol.subscribed(request_id, list(channels), positions, recovered)
        for frame, _ in coalesce([reply, *gaps]):
            subscriber.send_frame(frame)
        if missed:
            messages = (message for _, message in self._replay_messages(missed, redactor))
            subscriber.send_replay(iter_frames(messages, window_bits=deflate))
        self._join(subscriber, channels, flt, redactor, deflate=deflate)

    async def stream(
        self,
        reader: Subscriber,
        channels: Sequence[str],
        flt: Filter,
        since: Mapping[str, Position],
    ) -> None:
        """An SSE reader's stream of ``channels``: the opening cursor, any gaps, the missed
        events (paced as for :meth:`subscribe`), then live events, every event with the cursor
        of the whole stream after it (:mod:`.sse`)."""
        handover = await self._handover(reader, channels, flt, since)
        if handover is None:
            return
        cursor, recovered, missed = handover
        redactor = self._redactor_for(reader)
        reader.send_frame(sse.opening(cursor))
        for name, ok in recovered.items():
            if not ok:
                reader.send_frame(
                    sse.gap(protocol.gap(name, cursor[name].epoch, since[name]), cursor)
                )
        if missed:
            reader.send_replay(sse.event_chunks(cursor, self._replay_messages(missed, redactor)))
        self._join(reader, channels, flt, redactor, tuple(channels))

    async def _handover(
        self,
        subscriber: Subscriber,
        channels: Sequence[str],
        flt: Filter,
        since: Mapping[str, Position],
    ) -> tuple[dict[str, Position], dict[str, bool], list[Publication]] | None:
        """Where the subscriber stands on each channel (``since`` where history serves it,
        else where live delivery takes over), whether each ``since`` was served, and the missed
        events that pass ``flt``; None when the subscriber closed meanwhile."""
        waiting = {name: _Recovering(subscriber) for name in channels if name in since}
        for name, recovering in waiting.items():
            self._leave(subscriber, name)  # no live event of these channels until caught up
            self._channel(name).recovering.append(recovering)
        try:
            recoveries = {name: await self._recover(name, since[name]) for name in waiting}
            self.flush()  # what the broker handed over meanwhile must reach the buffers
        finally:
            for name, recovering in waiting.items():
                self._channel(name).recovering.remove(recovering)
        if subscriber.closed:
            return None
        positions: dict[str, Position] = {}
        recovered: dict[str, bool] = {}
        missed: list[Publication] = []
        for name in channels:
            # Live delivery goes on after the last position handed to the hub (all flushed).
            last = self._broker.position(name)
            self._channel(name).head = last
            positions[name] = last
            if name not in waiting:
                continue
            rec = recoveries[name]
            pubs = (
                catch_up(since[name], chain(rec.publications, waiting[name].buffer), last)
                if rec.recovered
                else None
            )
            recovered[name] = pubs is not None
            if pubs is None:
                continue
            positions[name] = since[name]
            missed.extend(
                pubs if flt.match_all else [p for p in pubs if flt.match(p.prepared.event)]
            )
        return positions, recovered, missed

    def _redactor_for(self, subscriber: Subscriber) -> Redactor | None:
        return None if subscriber.sensitive else self._redactor

    def _replay_messages(
        self, pubs: list[Publication], redactor: Redactor | None
    ) -> Iterator[tuple[Publication, bytes]]:
        """The messages of a replay with their publications, built as the subscriber draws
        them."""
        for start in range(0, len(pubs), REPLAY_BATCH):
            yield from zip(
                *self._messages(pubs[start : start + REPLAY_BATCH], redactor), strict=True
            )

    async def _recover(self, name: str, since: Position) -> Recovery:
        try:
            return await self._broker.recover(name, since)
        except Exception as exc:  # a broker outage must not fail the subscribe: report a gap
            log.warning("history of channel %s unavailable (%r); reporting a gap", name, exc)
            self._metrics.broker_errors.labels("recover").inc()
            return Recovery((), self._broker.position(name), False)

    def _join(
        self,
        subscriber: Subscriber,
        channels: Sequence[str],
        flt: Filter,
        redactor: Redactor | None,
        stream: Streams = None,
        deflate: int | None = None,
    ) -> None:
        """Put the subscriber in the group of each channel (leaving any group it was in)."""
        mine = self._memberships.setdefault(subscriber, {})
        key = (flt.key, redactor is None, stream, deflate)
        for name in channels:
            self._leave(subscriber, name)
            channel = self._channel(name)
            group = channel.groups.get(key)
            if group is None:
                group = channel.groups[key] = _Group(key, flt, redactor, stream, deflate)
            group.members[subscriber] = None
            mine[name] = group
            channel.subscribed.inc()

    def unsubscribe(self, subscriber: Subscriber, channels: Sequence[str]) -> list[str]:
        """Leave ``channels``; returns those the subscriber was on."""
        return [name for name in channels if self._leave(subscriber, name)]

    def remove(self, subscriber: Subscriber) -> None:
        """Forget a closed connection."""
        for name in list(self._memberships.get(subscriber, ())):
            self._leave(subscriber, name)
        self._memberships.pop(subscriber, None)

    def subscriptions(self, subscriber: Subscriber) -> dict[str, Filter]:
        """The channels a subscriber is on, with their filters."""
        return {name: g.filter for name, g in self._memberships.get(subscriber, {}).items()}

    def regroup(self, subscriber: Subscriber) -> None:
        """Move a subscriber whose redaction class changed (token refresh) to the right groups."""
        redactor = self._redactor_for(subscriber)
        for name, group in list(self._memberships.get(subscriber, {}).items()):
            if group.redactor is not redactor:
                self._join(subscriber, [name], group.filter, redactor, group.stream, group.deflate)

    def subscriber_counts(self) -> dict[str, int]:
        """Subscribers per channel, for ``/ws/stats``."""
        return {
            name: sum(len(g.members) for g in ch.groups.values())
            for name, ch in self._channels.items()
        }

    def _leave(self, subscriber: Subscriber, name: str) -> bool:
        mine = self._memberships.get(subscriber)
        group = mine.pop(name, None) if mine else None
        if group is None:
            return False
        group.members.pop(subscriber, None)
        channel = self._channels[name]
        channel.subscribed.dec()
        if not group.members:
            channel.groups.pop(group.key, None)
        return True

    def _channel(self, name: str) -> _Audience:
        channel = self._channels.get(name)
        if channel is None:
            channel = self._channels[name] = _Audience(
                name, self._broker.position(name), self._metrics
            )
        return channel
