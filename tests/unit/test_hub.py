"""The hub's fan-out and its resume handover, with fake subscribers and no sockets.

Every event carries its number ``n`` and a secret (``data.secret``, the path the hub's redactor
hides), so a test compares what was delivered by content: ``full(n)`` for a subscriber with
``events:sensitive``, ``hidden(n)`` for one without. Delivery is driven by ``hub.flush()`` (what
the loop turn after a publication runs), never by waiting.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import zlib
from types import SimpleNamespace
from typing import Any

import pytest

from netsentinel_websocket import hub as hub_module
from netsentinel_websocket.broker_memory import MemoryBroker
from netsentinel_websocket.filters import Filter
from netsentinel_websocket.frames import text_frame
from netsentinel_websocket.hub import Hub
from netsentinel_websocket.metrics import Metrics
from netsentinel_websocket.positions import Position, PreparedEvent, Publication
from netsentinel_websocket.redact import Redactor
from tests.conftest import FakeSubscriber, YieldingBroker, next_frame

ALL = Filter()
HIGH = Filter(min_severity="high")
MiB = 1024 * 1024


def full(n: int, severity: str = "high") -> dict[str, Any]:
    """Event number ``n`` as published (and as a subscriber with events:sensitive sees it)."""
    return {"severity": severity, "n": n, "data": {"secret": f"pw-{n}", "ip": "203.0.113.7"}}


def hidden(n: int, severity: str = "high") -> dict[str, Any]:
    """Event number ``n`` as a subscriber without events:sensitive sees it."""
    return {"severity": severity, "n": n, "data": {"secret": "[redacted]", "ip": "203.0.113.7"}}


class CountingRedactor(Redactor):
    """The hub's redactor, counting the events it is applied to."""

    def __init__(self) -> None:
        super().__init__(["data.secret"])
        self.applied = 0

    def apply(self, event: dict[str, Any]) -> dict[str, Any] | None:
        self.applied += 1
        return super().apply(event)


async def make_hub(broker: Any = None, history: int = 100) -> tuple[Hub, Any]:
    broker = broker or MemoryBroker(history)
    hub = Hub(broker, CountingRedactor(), Metrics())
    await broker.start(hub.on_publication)
    return hub, broker


def publish(
    broker: Any, channel: str, numbers: range | list[int], severity: str = "high", **extra: Any
) -> None:
    """Publish event ``n`` for each of ``numbers`` (the n-th event of a channel has offset n)."""
    for n in numbers:
        broker.publish(channel, PreparedEvent({**full(n, severity), **extra}, 0.0))


async def subscribe(
    hub: Hub,
    sub: FakeSubscriber,
    channels: list[str],
    since: dict[str, Position] | None = None,
    flt: Filter = ALL,
) -> dict[str, Any]:
    """Subscribe and return the ``subscribed`` reply."""
    ids = list(channels)
    await hub.subscribe(sub, 1, ids, flt, since or {})
    return [m for m in sub.messages if m["type"] == "subscribed"][-1]


def delivered(sub: FakeSubscriber, channel: str = "a") -> list[tuple[int, dict[str, Any]]]:
    """(offset, event) of every event of ``channel`` the subscriber got, in order."""
    assert sub.errors == []
    return [(m["offset"], m["event"]) for m in sub.events(channel)]


def offsets(sub: FakeSubscriber, channel: str = "a") -> list[int]:
    return [offset for offset, _ in delivered(sub, channel)]


def sample(metric: Any) -> float:
    return metric._value.get()


# --- fan-out ---


def test_one_loop_turn_is_one_frame_and_the_same_bytes_for_every_member():
    async def scenario():
        hub, broker = await make_hub()
        subs = [FakeSubscriber() for _ in range(3)]
        for sub in subs:
            await subscribe(hub, sub, ["a"])
        publish(broker, "a", range(1, 5))
        await asyncio.sleep(0)  # the turn after the publications: the flush they scheduled
        first = [len(sub.frames) for sub in subs]
        publish(broker, "a", [5])
        await asyncio.sleep(0)  # a later turn schedules a flush of its own
        return subs, first

    subs, first = asyncio.run(scenario())
    assert first == [2, 2, 2]  # the reply, then one frame for the four events
    assert all(sub.counts == [0, 4, 1] for sub in subs)
    assert all(sub.frames[1] is subs[0].frames[1] for sub in subs)
    assert all(delivered(sub) == [(n, hidden(n)) for n in range(1, 6)] for sub in subs)


def test_publish_touches_no_subscriber_and_the_filter_runs_once_per_group_and_event():
    class CountingFilter(Filter):
        calls = 0

        def match(self, event):
            CountingFilter.calls += 1
            return super().match(event)

    async def scenario():
        hub, broker = await make_hub()
        flt = CountingFilter(min_severity="critical")
        subs = [FakeSubscriber() for _ in range(200)]
        for sub in subs:
            await subscribe(hub, sub, ["a"], flt=flt)
        before = sum(len(s.frames) for s in subs)
        publish(broker, "a", range(1, 4))  # severity high: filtered out
        publish(broker, "a", [4], "critical")
        during = sum(len(s.frames) for s in subs)
        hub.flush()
        return subs, before, during

    subs, before, during = asyncio.run(scenario())
    assert during == before == 200  # publish never writes: delivery waits for the flush
    assert CountingFilter.calls == 4
    assert all(delivered(sub) == [(4, hidden(4, "critical"))] for sub in subs)


def test_redaction_classes_get_their_own_bytes():
    async def scenario():
        hub, broker = await make_hub()
        plain, sensitive = FakeSubscriber(), FakeSubscriber(sensitive=True)
        await subscribe(hub, plain, ["a"])
        await subscribe(hub, sensitive, ["a"])
        publish(broker, "a", [1, 2])
        hub.flush()
        return plain, sensitive

    plain, sensitive = asyncio.run(scenario())
    assert delivered(plain) == [(1, hidden(1)), (2, hidden(2))]
    assert delivered(sensitive) == [(1, full(1)), (2, full(2))]


def test_events_are_delivered_with_their_channel_and_epoch():
    async def scenario():
        hub, broker = await make_hub()
        sub = FakeSubscriber(sensitive=True)
        await subscribe(hub, sub, ["a", "b"])
        publish(broker, "b", [1])
        publish(broker, "a", [1, 2])
        hub.flush()
        return sub, broker.position("a").epoch, broker.position("b").epoch

    sub, epoch_a, epoch_b = asyncio.run(scenario())
    assert epoch_a != epoch_b
    assert [m for m in sub.messages if m["type"] == "event"] == [
        {"type": "event", "channel": "b", "epoch": epoch_b, "offset": 1, "event": full(1)},
        {"type": "event", "channel": "a", "epoch": epoch_a, "offset": 1, "event": full(1)},
        {"type": "event", "channel": "a", "epoch": epoch_a, "offset": 2, "event": full(2)},
    ]


def test_a_filtered_group_gets_only_matching_events_live_and_in_a_replay():
    async def scenario():
        hub, broker = await make_hub()
        publish(broker, "a", [1], "low")
        publish(broker, "a", [2], "high")
        publish(broker, "a", [3], "low")
        epoch = broker.position("a").epoch
        live, resumed = FakeSubscriber(), FakeSubscriber()
        await subscribe(hub, live, ["a"], flt=HIGH)
        await subscribe(hub, resumed, ["a"], {"a": Position(epoch, 0)}, flt=HIGH)
        publish(broker, "a", [4], "low")
        publish(broker, "a", [5], "critical")
        hub.flush()
        return live, resumed

    live, resumed = asyncio.run(scenario())
    assert delivered(live) == [(5, hidden(5, "critical"))]
    assert delivered(resumed) == [(2, hidden(2)), (5, hidden(5, "critical"))]


def test_delivery_is_counted_per_subscriber_with_its_bytes():
    async def scenario():
        hub, broker = await make_hub()
        subs = [FakeSubscriber(), FakeSubscriber(), FakeSubscriber(sensitive=True)]
        for sub in subs:
            await subscribe(hub, sub, ["a"])
        publish(broker, "a", [1, 2, 3])
        hub.flush()
        return hub, subs

    hub, subs = asyncio.run(scenario())
    assert sample(hub._metrics.events_delivered.labels("a")) == 9
    assert sample(hub._metrics.bytes_sent) == sum(len(sub.frames[1]) for sub in subs)


def test_a_burst_of_more_than_a_frame_is_split_and_counted_whole():
    blob = "x" * 5_000  # about 5 KiB per event: 300 events are near 1.5 MiB

    async def scenario():
        hub, broker = await make_hub(history=10)
        subs = [FakeSubscriber(), FakeSubscriber()]
        for sub in subs:
            await subscribe(hub, sub, ["a"])
        publish(broker, "a", range(1, 301), blob=blob)
        hub.flush()
        return hub, subs

    hub, subs = asyncio.run(scenario())
    for sub in subs:
        assert delivered(sub) == [(n, {**hidden(n), "blob": blob}) for n in range(1, 301)]
        assert len(sub.counts) == 3 and sum(sub.counts) == 300  # the reply, then two frames
    assert sample(hub._metrics.events_delivered.labels("a")) == 600


def test_delivery_latency_is_from_receipt_to_the_flush(monkeypatch):
    monkeypatch.setattr(hub_module, "time", SimpleNamespace(time=lambda: 1000.0))

    async def scenario():
        hub, broker = await make_hub()
        for sub in (FakeSubscriber(), FakeSubscriber()):
            await subscribe(hub, sub, ["a"])
        for n in (1, 2, 3):
            broker.publish("a", PreparedEvent(full(n), 1000.0 - n / 4))
        hub.flush()
        return hub

    value = asyncio.run(scenario())._metrics.registry.get_sample_value
    assert value("netsentinel_ws_delivery_latency_seconds_count") == 3  # one group, 3 events
    assert value("netsentinel_ws_delivery_latency_seconds_sum") == 1.5  # 0.25 + 0.5 + 0.75


class BadPublication(Publication):
    """A publication whose message cannot be built (a broker handing over something odd)."""

    __slots__ = ()

    def message(self, redactor):
        raise ValueError("not serializable")


def test_a_publication_that_fails_to_serialize_is_left_out_and_counted(caplog):
    async def scenario():
        hub, broker = await make_hub()
        plain, sensitive = FakeSubscriber(), FakeSubscriber(sensitive=True)
        await subscribe(hub, plain, ["a"])
        await subscribe(hub, sensitive, ["a"])
        for n, cls in ((1, Publication), (2, BadPublication), (3, Publication)):
            hub.on_publication(cls("a", "e1", n, PreparedEvent(full(n), 0.0)))
        with caplog.at_level(logging.ERROR, logger="netsentinel_websocket.hub"):
            hub.flush()
        return hub, plain, sensitive

    hub, plain, sensitive = asyncio.run(scenario())
    assert delivered(plain) == [(1, hidden(1)), (3, hidden(3))]
    assert delivered(sensitive) == [(1, full(1)), (3, full(3))]
    assert plain.counts == sensitive.counts == [0, 2]  # one frame of the two good events
    assert sample(hub._metrics.broker_errors.labels("serialize")) == 2  # once per group
    assert sample(hub._metrics.events_delivered.labels("a")) == 4  # the bad one is not counted
    assert [r.getMessage() for r in caplog.records] == [
        "channel a offset 2 not deliverable: ValueError('not serializable')"
    ] * 2  # once per group


def test_a_replayed_publication_that_fails_to_serialize_is_left_out_and_counted():
    class BadHistoryBroker(YieldingBroker):
        async def recover(self, channel, since):
            recovery = await self.inner.recover(channel, since)
            pubs = list(recovery.publications)
            bad = pubs[1]
            pubs[1] = BadPublication(bad.channel, bad.epoch, bad.offset, bad.prepared)
            return type(recovery)(pubs, recovery.position, recovery.recovered)

    async def scenario():
        hub, broker = await make_hub(BadHistoryBroker(MemoryBroker(100)))
        publish(broker, "a", range(1, 5))
        sub = FakeSubscriber()
        reply = await subscribe(hub, sub, ["a"], {"a": Position(broker.position("a").epoch, 1)})
        return hub, sub, reply

    hub, sub, reply = asyncio.run(scenario())
    assert reply["recovered"] == {"a": True}
    assert delivered(sub) == [(2, hidden(2)), (4, hidden(4))]
    assert sample(hub._metrics.broker_errors.labels("serialize")) == 1


# --- group bookkeeping ---


def test_when_one_redaction_class_leaves_the_other_keeps_receiving():
    async def scenario():
        hub, broker = await make_hub()
        plain, sensitive = FakeSubscriber(), FakeSubscriber(sensitive=True)
        await subscribe(hub, plain, ["a"])
        await subscribe(hub, sensitive, ["a"])
        groups = [len(hub._channels["a"].groups)]
        hub.remove(plain)
        groups.append(len(hub._channels["a"].groups))
        counts = [hub.subscriber_counts()]
        publish(broker, "a", [1])
        hub.flush()
        hub.remove(sensitive)
        groups.append(len(hub._channels["a"].groups))
        counts.append(hub.subscriber_counts())
        late = FakeSubscriber()  # a new group of the class that left: redacted again
        await subscribe(hub, late, ["a"])
        publish(broker, "a", [2])
        hub.flush()
        counts.append(hub.subscriber_counts())
        return hub, plain, sensitive, late, groups, counts

    hub, plain, sensitive, late, groups, counts = asyncio.run(scenario())
    assert groups == [2, 1, 0]  # a group goes when its last member does
    assert counts == [{"a": 1}, {"a": 0}, {"a": 1}]
    assert delivered(plain) == []
    assert delivered(sensitive) == [(1, full(1))]
    assert delivered(late) == [(2, hidden(2))]
    assert sample(hub._metrics.subscriptions.labels("a")) == 1


def test_a_group_emptied_during_a_flush_is_skipped_and_the_next_still_served():
    class Closer(FakeSubscriber):
        """A connection whose write makes another one leave (its close handled at once)."""

        def send_frame(self, frame, count=0):
            super().send_frame(frame, count)
            if count:
                self.hub.remove(self.victim)

    async def scenario():
        hub, broker = await make_hub()
        closer, victim, last = Closer(), FakeSubscriber(sensitive=True), FakeSubscriber()
        closer.hub, closer.victim = hub, victim
        await subscribe(hub, closer, ["a"])
        await subscribe(hub, victim, ["a"])  # a group of its own, after the closer's
        await subscribe(hub, last, ["a"], flt=HIGH)  # and a third group after that
        publish(broker, "a", [1])
        hub.flush()
        return hub, closer, victim, last

    hub, closer, victim, last = asyncio.run(scenario())
    assert delivered(closer) == [(1, hidden(1))]
    assert delivered(victim) == []
    assert delivered(last) == [(1, hidden(1))]
    assert hub.subscriber_counts() == {"a": 2}


def test_a_group_without_a_matching_event_does_not_hold_up_the_next():
    async def scenario():
        hub, broker = await make_hub()
        high, everything = FakeSubscriber(), FakeSubscriber()
        await subscribe(hub, high, ["a"], flt=HIGH)  # the first group: nothing for it
        await subscribe(hub, everything, ["a"])
        publish(broker, "a", [1], "low")
        hub.flush()
        return high, everything

    high, everything = asyncio.run(scenario())
    assert delivered(high) == []
    assert delivered(everything) == [(1, hidden(1, "low"))]


def test_filters_make_groups_of_their_own_and_leaving_one_keeps_the_other():
    async def scenario():
        hub, broker = await make_hub()
        everything, high = FakeSubscriber(), FakeSubscriber()
        await subscribe(hub, everything, ["a"])
        await subscribe(hub, high, ["a"], flt=HIGH)
        groups = [len(hub._channels["a"].groups)]
        assert hub.unsubscribe(everything, ["a"]) == ["a"]
        groups.append(len(hub._channels["a"].groups))
        publish(broker, "a", [1], "low")
        publish(broker, "a", [2], "high")
        hub.flush()
        return hub, everything, high, groups

    hub, everything, high, groups = asyncio.run(scenario())
    assert groups == [2, 1]
    assert delivered(everything) == []
    assert delivered(high) == [(2, hidden(2))]
    assert hub.subscriptions(high) == {"a": HIGH}
    assert hub.subscriptions(everything) == {}


def test_unsubscribe_and_remove_stop_delivery():
    async def scenario():
        hub, broker = await make_hub()
        left, gone, stays = FakeSubscriber(), FakeSubscriber(), FakeSubscriber()
        for sub in (left, gone, stays):
            await subscribe(hub, sub, ["a", "b"])
        assert hub.unsubscribe(left, ["a", "c"]) == ["a"]
        assert hub.unsubscribe(left, ["a"]) == []
        hub.remove(gone)
        publish(broker, "a", [1])
        publish(broker, "b", [1])
        hub.flush()
        return hub, left, gone, stays

    hub, left, gone, stays = asyncio.run(scenario())
    assert (delivered(left, "a"), delivered(left, "b")) == ([], [(1, hidden(1))])
    assert (delivered(gone, "a"), delivered(gone, "b")) == ([], [])
    assert (delivered(stays, "a"), delivered(stays, "b")) == ([(1, hidden(1))], [(1, hidden(1))])
    assert hub.subscriber_counts() == {"a": 1, "b": 2}
    assert hub.subscriptions(left) == {"b": ALL}
    assert hub.subscriptions(gone) == {}
    assert gone not in hub._memberships  # a closed connection is forgotten
    metrics = hub._metrics
    assert [sample(metrics.subscriptions.labels(c)) for c in "ab"] == [1, 2]


# --- a token refresh changes the redaction class ---


def test_a_refresh_that_drops_events_sensitive_redacts_later_events_again():
    async def scenario():
        hub, broker = await make_hub()
        sub = FakeSubscriber(sensitive=True)
        other = FakeSubscriber(sensitive=True)
        await subscribe(hub, sub, ["a", "b"], flt=HIGH)
        await subscribe(hub, other, ["a"], flt=HIGH)
        publish(broker, "a", [1])
        hub.flush()
        sub.sensitive = False  # the refreshed token lacks events:sensitive
        hub.regroup(sub)
        publish(broker, "a", [2])
        publish(broker, "a", [3], "low")
        publish(broker, "b", [1])
        hub.flush()
        return hub, sub, other

    hub, sub, other = asyncio.run(scenario())
    assert delivered(sub, "a") == [(1, full(1)), (2, hidden(2))]  # the filter stays too
    assert delivered(sub, "b") == [(1, hidden(1))]
    assert delivered(other, "a") == [(1, full(1)), (2, full(2))]
    assert hub.subscriber_counts() == {"a": 2, "b": 1}
    assert hub.subscriptions(sub) == {"a": HIGH, "b": HIGH}
    assert sample(hub._metrics.subscriptions.labels("a")) == 2
    assert len(hub._channels["b"].groups) == 1  # the emptied sensitive group is gone


def test_a_refresh_that_adds_events_sensitive_shows_later_events_whole():
    async def scenario():
        hub, broker = await make_hub()
        sub = FakeSubscriber()
        await subscribe(hub, sub, ["a"])
        publish(broker, "a", [1])
        hub.flush()
        sub.sensitive = True
        hub.regroup(sub)
        hub.regroup(sub)  # unchanged class: nothing moves
        hub.regroup(FakeSubscriber(sensitive=True))  # a connection on no channel: nothing to do
        publish(broker, "a", [2])
        hub.flush()
        return hub, sub

    hub, sub = asyncio.run(scenario())
    assert delivered(sub) == [(1, hidden(1)), (2, full(2))]
    assert hub.subscriber_counts() == {"a": 1}
    assert len(hub._channels["a"].groups) == 1


# --- permessage-deflate: events in compressed frames, made once per group ---


class DeflateSubscriber(FakeSubscriber):
    """A connection that negotiated permessage-deflate with ``window_bits``: keeps every frame
    as it came, notes whether it was compressed (RSV1) and reads its messages inflated, as a
    client without context takeover does (RFC 7692 section 7.2.2)."""

    def __init__(self, window_bits: int = 15, sensitive: bool = False) -> None:
        super().__init__(sensitive)
        self.window_bits = window_bits
        self.compressed: list[bool] = []

    def _record(self, frame: bytes, count: int) -> None:
        compressed = bool(frame[0] & 0x40)
        self.compressed.append(compressed)
        if not compressed:
            super()._record(frame, count)
            return
        _, payload, end = next_frame(frame) or (0, b"", 0)
        if end != len(frame):
            self.errors.append(f"not exactly one frame: {frame[:40]!r}")
        inflater = zlib.decompressobj(-self.window_bits)
        super()._record(text_frame(inflater.decompress(payload + b"\x00\x00\xff\xff")), count)
        self.frames[-1] = frame  # as it came, to compare the bytes members share


def test_a_compressing_subscriber_gets_events_compressed_and_replies_and_gaps_plain():
    async def scenario():
        hub, broker = await make_hub()
        publish(broker, "a", range(1, 4))
        since = {"a": Position(broker.position("a").epoch, 1), "b": Position("gone", 1)}
        sub = DeflateSubscriber()
        await hub.subscribe(sub, 1, ["a", "b"], ALL, since, deflate=15)
        publish(broker, "a", [4, 5])
        hub.flush()
        hub.on_loss("a", Position("NEW", 9))
        return sub

    sub = asyncio.run(scenario())
    assert [m["type"] for m in sub.messages] == ["subscribed", "gap", *["event"] * 4, "gap"]
    assert sub.counts == [0, 2, 2, 0]  # reply and gap, the replay, the live burst, the loss
    assert sub.compressed == [False, True, True, False]
    assert delivered(sub) == [(n, hidden(n)) for n in (2, 3, 4, 5)]


def test_compressing_and_plain_subscribers_get_frames_of_their_own_per_window_size():
    async def scenario():
        hub, broker = await make_hub()
        plain, small = FakeSubscriber(), DeflateSubscriber(window_bits=9)
        wide = [DeflateSubscriber(), DeflateSubscriber()]
        await subscribe(hub, plain, ["a"])
        for sub in wide:
            await hub.subscribe(sub, 1, ["a"], ALL, {}, deflate=15)
        await hub.subscribe(small, 1, ["a"], ALL, {}, deflate=9)
        publish(broker, "a", [1, 2])
        hub.flush()
        return hub, plain, small, wide

    hub, plain, small, wide = asyncio.run(scenario())
    for sub in (plain, small, *wide):
        assert delivered(sub) == [(1, hidden(1)), (2, hidden(2))]
    assert [sub.compressed for sub in (small, *wide)] == [[False, True]] * 3
    assert wide[0].frames[1] is wide[1].frames[1]  # one compressed frame for the group
    assert small.frames[1] is not wide[0].frames[1] and plain.frames[1] != wide[0].frames[1]
    assert hub.subscriber_counts() == {"a": 4}


def test_a_compressing_subscriber_regrouped_by_a_refresh_stays_compressed():
    async def scenario():
        hub, broker = await make_hub()
        sub = DeflateSubscriber()
        await hub.subscribe(sub, 1, ["a"], ALL, {}, deflate=15)
        publish(broker, "a", [1])
        hub.flush()
        sub.sensitive = True
        hub.regroup(sub)
        publish(broker, "a", [2])
        hub.flush()
        return sub

    sub = asyncio.run(scenario())
    assert delivered(sub) == [(1, hidden(1)), (2, full(2))]
    assert sub.compressed == [False, True, True]


# --- resume handover ---


def test_a_resume_without_events_sensitive_replays_redacted_events():
    async def scenario():
        hub, broker = await make_hub()
        publish(broker, "a", range(1, 5))
        since = Position(broker.position("a").epoch, 2)
        plain, sensitive = FakeSubscriber(), FakeSubscriber(sensitive=True)
        await subscribe(hub, plain, ["a"], {"a": since})
        await subscribe(hub, sensitive, ["a"], {"a": since})
        publish(broker, "a", [5])
        hub.flush()
        return plain, sensitive

    plain, sensitive = asyncio.run(scenario())
    assert delivered(plain) == [(3, hidden(3)), (4, hidden(4)), (5, hidden(5))]
    assert delivered(sensitive) == [(3, full(3)), (4, full(4)), (5, full(5))]


def test_a_resume_of_more_than_a_frame_is_several_frames_drawn_as_the_reader_takes_them():
    blob = "x" * 5_000  # about 5 KiB per event: 600 events are near 3 MiB

    async def scenario():
        hub, broker = await make_hub(history=700)
        publish(broker, "a", range(1, 601), blob=blob)
        epoch = broker.position("a").epoch
        sub = FakeSubscriber(paced=True)
        reply = await subscribe(hub, sub, ["a"], {"a": Position(epoch, 0)})
        steps = [(len(sub.frames), hub._redactor.applied)]  # the reply only, nothing built
        publish(broker, "a", [601], blob=blob)
        hub.flush()  # live: waits behind the replay
        steps.append((len(sub.frames), hub._redactor.applied))
        assert sub.take()
        steps.append((len(sub.frames), hub._redactor.applied))
        sub.take_all()
        return sub, reply, steps, epoch

    sub, reply, steps, epoch = asyncio.run(scenario())
    assert reply["positions"]["a"] == {"epoch": epoch, "offset": 0}
    assert steps[:2] == [(1, 0), (1, 1)]  # the live event was built for the group, not sent
    assert steps[2] == (2, 1 + 256)  # one frame taken: one batch of 256 messages built
    assert not sub.waiting
    assert delivered(sub) == [(n, {**hidden(n), "blob": blob}) for n in range(1, 602)]
    replay = sub.counts[1:-1]
    assert len(replay) == 3 and sum(replay) == 600 and sub.counts[-1] == 1
    payloads = [len(frame) - 10 for frame in sub.frames[1:-1]]  # 64-bit length headers
    assert all(MiB - 5_200 < size <= MiB for size in payloads[:-1])  # full frames
    assert payloads[-1] <= MiB


def test_resume_while_publishing_during_an_awaiting_recover_is_exact():
    async def scenario():
        hub, broker = await make_hub(YieldingBroker(MemoryBroker(100), before=3, after=3))
        publish(broker, "a", range(1, 11))
        epoch = broker.position("a").epoch

        async def producer():
            for n in range(11, 31):
                publish(broker, "a", [n])
                await asyncio.sleep(0)  # one publication per loop turn, across the handover

        task = asyncio.create_task(producer())
        await asyncio.sleep(0)
        sub = FakeSubscriber()
        reply = await subscribe(hub, sub, ["a"], {"a": Position(epoch, 4)})
        await task
        hub.flush()
        return sub, reply

    sub, reply = asyncio.run(scenario())
    assert reply["recovered"] == {"a": True} and reply["positions"]["a"]["offset"] == 4
    assert delivered(sub) == [(n, hidden(n)) for n in range(5, 31)]


def test_publication_handed_over_after_the_history_read_is_not_lost():
    """Regression: it was pending in the hub when the subscriber stopped recovering."""

    class LateBroker(YieldingBroker):
        async def recover(self, channel, since):
            recovery = await self.inner.recover(channel, since)
            publish(self.inner, "a", [4])  # arrives after the read, before the handover ends
            return recovery

    async def scenario():
        hub, broker = await make_hub(LateBroker(MemoryBroker(100)))
        publish(broker, "a", range(1, 4))
        epoch = broker.position("a").epoch
        sub = FakeSubscriber()
        await subscribe(hub, sub, ["a"], {"a": Position(epoch, 1)})
        publish(broker, "a", [5])
        hub.flush()
        return sub

    assert delivered(asyncio.run(scenario())) == [(n, hidden(n)) for n in (2, 3, 4, 5)]


def test_history_read_ahead_of_delivery_is_not_sent_twice():
    """A broker may read history the hub has not been handed yet; that part comes live."""

    class AheadBroker(YieldingBroker):
        async def recover(self, channel, since):
            self.inner._deliver = None  # the next publications reach history first...
            publish(self.inner, "a", [4, 5])
            recovery = await self.inner.recover(channel, since)
            self.held = list(recovery.publications[-2:])
            self.inner._deliver = self.hub.on_publication
            return recovery

        def position(self, channel):
            top = self.inner.position(channel)
            return Position(top.epoch, top.offset - len(getattr(self, "held", ())))

    async def scenario():
        broker = AheadBroker(MemoryBroker(100))
        hub, _ = await make_hub(broker)
        broker.hub = hub
        publish(broker, "a", range(1, 4))
        epoch = broker.position("a").epoch
        sub = FakeSubscriber()
        reply = await subscribe(hub, sub, ["a"], {"a": Position(epoch, 1)})
        held, broker.held = broker.held, []
        for pub in held:  # ...and are delivered afterwards
            hub.on_publication(pub)
        hub.flush()
        return sub, reply

    sub, reply = asyncio.run(scenario())
    assert reply["recovered"] == {"a": True}
    assert delivered(sub) == [(n, hidden(n)) for n in (2, 3, 4, 5)]


def test_unknown_epoch_and_too_old_positions_get_a_gap_then_live():
    async def scenario():
        hub, broker = await make_hub(history=5)
        publish(broker, "a", range(1, 21))
        epoch = broker.position("a").epoch
        results = []
        for since in (Position("gone", 3), Position(epoch, 14), Position(epoch, 99)):
            sub = FakeSubscriber()
            reply = await subscribe(hub, sub, ["a"], {"a": since})
            results.append((sub, reply, since))
        publish(broker, "a", [21])
        hub.flush()
        return results, epoch

    results, epoch = asyncio.run(scenario())
    for sub, reply, since in results:
        assert reply["recovered"] == {"a": False}
        assert reply["positions"]["a"] == {"epoch": epoch, "offset": 20}
        gap = {"type": "gap", "channel": "a", "epoch": epoch, "from": since.as_dict()}
        assert sub.messages[:2] == [reply, gap]
        assert sub.counts[0] == 0 and len(sub.frames) == 2  # the gap is in the reply's frame
        assert delivered(sub) == [(21, hidden(21))]


def test_a_resume_of_two_channels_recovers_one_and_reports_a_gap_for_the_other():
    async def scenario():
        hub, broker = await make_hub(history=5)
        publish(broker, "a", range(1, 4))
        publish(broker, "b", range(1, 11))
        publish(broker, "c", range(1, 3))
        epochs = {c: broker.position(c).epoch for c in "abc"}
        sub = FakeSubscriber()
        since = {"a": Position(epochs["a"], 1), "b": Position(epochs["b"], 2)}
        reply = await subscribe(hub, sub, ["c", "b", "a"], since)
        publish(broker, "c", [3])
        hub.flush()
        return sub, reply, epochs

    sub, reply, epochs = asyncio.run(scenario())
    assert list(reply["positions"].items()) == [
        ("c", {"epoch": epochs["c"], "offset": 2}),
        ("b", {"epoch": epochs["b"], "offset": 10}),
        ("a", {"epoch": epochs["a"], "offset": 1}),
    ]
    assert reply["recovered"] == {"b": False, "a": True}
    assert sub.messages[1] == {
        "type": "gap",
        "channel": "b",
        "epoch": epochs["b"],
        "from": {"epoch": epochs["b"], "offset": 2},
    }
    assert delivered(sub, "a") == [(2, hidden(2)), (3, hidden(3))]
    assert delivered(sub, "b") == []
    assert delivered(sub, "c") == [(3, hidden(3))]


def test_the_subscribed_reply_answers_the_request_id_and_names_the_channels_in_order():
    async def scenario():
        hub, broker = await make_hub()
        publish(broker, "a", range(1, 4))
        publish(broker, "b", range(1, 3))
        epochs = {c: broker.position(c).epoch for c in "ab"}
        sub = FakeSubscriber()
        await hub.subscribe(sub, "req-7", ["b", "a"], ALL, {"a": Position(epochs["a"], 1)})
        return sub, epochs

    sub, epochs = asyncio.run(scenario())
    assert sub.messages[0] == {
        "type": "subscribed",
        "id": "req-7",
        "channels": ["b", "a"],
        "positions": {
            "b": {"epoch": epochs["b"], "offset": 2},
            "a": {"epoch": epochs["a"], "offset": 1},
        },
        "recovered": {"a": True},
    }
    assert delivered(sub) == [(2, hidden(2)), (3, hidden(3))]


def test_a_new_epoch_at_the_same_offsets_during_the_handover_is_a_gap():
    """History is read in the old epoch; the channel then restarts and reaches the same
    offsets again in a new one: those are other events, so the subscriber gets a gap."""

    async def scenario():
        inner = MemoryBroker(100)
        broker = YieldingBroker(inner, before=0, after=1)
        hub, _ = await make_hub(broker)
        publish(broker, "a", range(1, 4))
        old = broker.position("a").epoch

        def restart():
            broker.on_resume = None
            del inner._channels["a"]  # history and epoch are gone, as after a broker restart
            publish(broker, "a", range(101, 104))  # offsets 1..3 again

        broker.on_resume = restart
        sub = FakeSubscriber()
        reply = await subscribe(hub, sub, ["a"], {"a": Position(old, 1)})
        publish(broker, "a", [104])
        hub.flush()
        return sub, reply, old, broker.position("a").epoch

    sub, reply, old, new = asyncio.run(scenario())
    assert old != new
    assert reply["recovered"] == {"a": False}
    assert reply["positions"]["a"] == {"epoch": new, "offset": 3}
    assert sub.messages[1] == {
        "type": "gap",
        "channel": "a",
        "epoch": new,
        "from": {"epoch": old, "offset": 1},
    }
    assert delivered(sub) == [(4, hidden(104))]


@pytest.mark.parametrize("since", [1, 2])  # behind, and at the last position
def test_broker_failure_during_recover_is_a_gap_and_counted(since, caplog):
    class FailingBroker(YieldingBroker):
        async def recover(self, channel, since):
            raise ConnectionError("history unavailable")

    async def scenario():
        hub, broker = await make_hub(FailingBroker(MemoryBroker(100)))
        publish(broker, "a", [1, 2])
        sub = FakeSubscriber()
        position = Position(broker.position("a").epoch, since)
        with caplog.at_level(logging.WARNING, logger="netsentinel_websocket.hub"):
            reply = await subscribe(hub, sub, ["a"], {"a": position})
        publish(broker, "a", [3])
        hub.flush()
        return hub, sub, reply, broker.position("a").epoch

    hub, sub, reply, epoch = asyncio.run(scenario())
    assert reply["recovered"] == {"a": False}
    assert reply["positions"]["a"] == {"epoch": epoch, "offset": 2}
    assert sub.messages[1]["type"] == "gap"
    assert delivered(sub) == [(3, hidden(3))]
    assert sample(hub._metrics.broker_errors.labels("recover")) == 1
    assert [r.getMessage() for r in caplog.records] == [
        "history of channel a unavailable (ConnectionError('history unavailable')); reporting a gap"
    ]


def test_subscriber_closed_during_recover_is_never_joined():
    async def scenario():
        hub, broker = await make_hub(YieldingBroker(MemoryBroker(100)))
        publish(broker, "a", [1, 2])
        sub = FakeSubscriber()
        since = {"a": broker.position("a")}
        task = asyncio.create_task(hub.subscribe(sub, 1, ["a"], ALL, since))
        await asyncio.sleep(0)  # the task is now inside the broker's read
        sub.closed = True
        hub.remove(sub)
        await task
        publish(broker, "a", [3])
        hub.flush()
        return hub, sub

    hub, sub = asyncio.run(scenario())
    assert sub.messages == []
    assert hub.subscriber_counts() == {"a": 0}
    assert hub._channels["a"].recovering == []
    assert hub.subscriptions(sub) == {}


def test_resubscribing_a_live_channel_leaves_no_window_while_another_recovers():
    async def scenario():
        hub, broker = await make_hub(YieldingBroker(MemoryBroker(100), before=2, after=2))
        sub = FakeSubscriber()
        await subscribe(hub, sub, ["a"])
        publish(broker, "b", range(1, 4))
        since_b = broker.position("b")

        async def producer():
            for n in range(1, 11):
                publish(broker, "a", [n])
                await asyncio.sleep(0)

        task = asyncio.create_task(producer())
        await asyncio.sleep(0)
        await subscribe(hub, sub, ["a", "b"], {"b": since_b})
        await task
        hub.flush()
        return sub

    sub = asyncio.run(scenario())
    assert delivered(sub, "a") == [(n, hidden(n)) for n in range(1, 11)]
    assert delivered(sub, "b") == []


def test_resubscribing_with_since_while_live_on_the_channel_sends_no_offset_twice():
    async def scenario():
        broker = YieldingBroker(MemoryBroker(100), before=2, after=2)
        hub, _ = await make_hub(broker)
        sub = FakeSubscriber()
        await subscribe(hub, sub, ["a"])
        publish(broker, "a", range(1, 4))
        hub.flush()
        numbers = iter(range(4, 8))
        broker.on_resume = lambda: publish(broker, "a", [next(numbers)])  # 4 during the read
        epoch = broker.position("a").epoch
        reply = await subscribe(hub, sub, ["a"], {"a": Position(epoch, 3)})
        broker.on_resume = None
        publish(broker, "a", [8])
        hub.flush()
        return hub, sub, reply

    hub, sub, reply = asyncio.run(scenario())
    assert reply["recovered"] == {"a": True} and reply["positions"]["a"]["offset"] == 3
    assert delivered(sub) == [(n, hidden(n)) for n in range(1, 9)]
    assert hub.subscriber_counts() == {"a": 1}


def test_resubscribing_with_another_filter_moves_the_subscriber():
    async def scenario():
        hub, broker = await make_hub()
        sub = FakeSubscriber()
        await subscribe(hub, sub, ["a"])
        await subscribe(hub, sub, ["a"], flt=HIGH)
        publish(broker, "a", [1], "low")
        publish(broker, "a", [2], "high")
        hub.flush()
        return hub, sub

    hub, sub = asyncio.run(scenario())
    assert delivered(sub) == [(2, hidden(2))]
    assert hub.subscriber_counts() == {"a": 1}
    assert len(hub._channels["a"].groups) == 1


@pytest.mark.parametrize("sensitive", [False, True])
def test_a_resume_with_nothing_missed_sends_the_reply_only(sensitive):
    async def scenario():
        hub, broker = await make_hub()
        publish(broker, "a", [1, 2])
        sub = FakeSubscriber(sensitive, paced=True)
        reply = await subscribe(hub, sub, ["a"], {"a": broker.position("a")})
        return sub, reply

    sub, reply = asyncio.run(scenario())
    assert reply["recovered"] == {"a": True}
    assert not sub.waiting and sub.counts == [0]


# --- Server-Sent Events readers (Hub.stream) ---
#
# The stream's bytes are stated literally: every channel's epoch is ``e<channel>`` (see
# FixedEpochBroker), an event's message is spelled out by ``message``, a cursor is the unpadded
# base64url of the JSON list of ``[channel, epoch, offset]`` in channel order, and each chunk is
# framed for HTTP/1.1 chunked transfer encoding.


class FixedEpochBroker(MemoryBroker):
    """The memory broker with epoch ``e<channel>`` for every channel instead of a random one."""

    def _channel(self, name):
        new = name not in self._channels
        ch = super()._channel(name)
        if new:
            ch.epoch = "e" + name
        return ch


class SSEReader(FakeSubscriber):
    """An SSE reader: records every chunk as it is (they are HTTP chunks, not WebSocket
    frames) with the event count the hub declared; paced as FakeSubscriber."""

    def _record(self, frame: bytes, count: int) -> None:
        self.frames.append(frame)
        self.counts.append(count)


def chunk(payload: bytes) -> bytes:
    """``payload`` as one HTTP/1.1 chunk: hex length, CRLF, payload, CRLF."""
    return b"%x\r\n%b\r\n" % (len(payload), payload)


def unchunk(data: bytes) -> bytes:
    """The payload of one HTTP/1.1 chunk (and a check that it is exactly one)."""
    head, _, rest = data.partition(b"\r\n")
    size = int(head, 16)
    assert rest[size:] == b"\r\n"
    return rest[:size]


def cursor(*triples: tuple[str, str, int]) -> bytes:
    raw = json.dumps([list(t) for t in triples], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def message(channel: str, offset: int, n: int, sensitive: bool = False, **extra: str) -> bytes:
    """The ``event`` message of event ``n`` of ``publish`` at ``offset`` of ``channel``."""
    secret = f"pw-{n}" if sensitive else "[redacted]"
    tail = "".join(f',"{key}":"{value}"' for key, value in extra.items())
    return (
        f'{{"type":"event","channel":"{channel}","epoch":"e{channel}","offset":{offset},'
        f'"event":{{"severity":"high","n":{n},"data":{{"secret":"{secret}",'
        f'"ip":"203.0.113.7"}}{tail}}}}}'
    ).encode()


def sse_event(cur: bytes, msg: bytes) -> bytes:
    return b"id: " + cur + b"\nevent: event\ndata: " + msg + b"\n\n"


def opening(cur: bytes) -> bytes:
    return chunk(b": netsentinel\nid: " + cur + b"\n\n")


def test_the_cursor_spelling_of_these_tests():
    # [["a","ea",1]] and [["a","ea",2],["b","eb",0]] in base64url without padding
    assert cursor(("a", "ea", 1)) == b"W1siYSIsImVhIiwxXV0"
    assert cursor(("a", "ea", 2), ("b", "eb", 0)) == b"W1siYSIsImVhIiwyXSxbImIiLCJlYiIsMF1d"


def test_a_stream_opens_with_its_cursor_and_each_event_carries_the_whole_streams_cursor():
    async def scenario():
        hub, broker = await make_hub(FixedEpochBroker(100))
        publish(broker, "a", [1])
        reader = SSEReader()
        await hub.stream(reader, ["b", "a"], ALL, {})
        opened = list(reader.frames)
        publish(broker, "a", [2])
        publish(broker, "b", [1])
        hub.flush()  # channel a's group first, then b's: b's event has a's new head
        publish(broker, "a", [3, 4])
        hub.flush()  # one chunk of two events
        publish(broker, "b", [2])
        hub.flush()  # a's head is now its last flushed position, offset 4
        return hub, reader, opened

    hub, reader, opened = asyncio.run(scenario())
    assert opened == [opening(cursor(("a", "ea", 1), ("b", "eb", 0)))]
    assert reader.frames[1:] == [
        chunk(sse_event(cursor(("a", "ea", 2), ("b", "eb", 0)), message("a", 2, 2))),
        chunk(sse_event(cursor(("a", "ea", 2), ("b", "eb", 1)), message("b", 1, 1))),
        chunk(
            sse_event(cursor(("a", "ea", 3), ("b", "eb", 1)), message("a", 3, 3))
            + sse_event(cursor(("a", "ea", 4), ("b", "eb", 1)), message("a", 4, 4))
        ),
        chunk(sse_event(cursor(("a", "ea", 4), ("b", "eb", 2)), message("b", 2, 2))),
    ]
    assert reader.counts == [0, 1, 1, 2, 1]
    assert sample(hub._metrics.events_delivered.labels("a")) == 3
    assert sample(hub._metrics.events_delivered.labels("b")) == 2
    assert sample(hub._metrics.bytes_sent) == sum(len(frame) for frame in reader.frames[1:])
    assert hub.subscriber_counts() == {"a": 1, "b": 1}
    assert hub.subscriptions(reader) == {"a": ALL, "b": ALL}


def test_readers_of_one_stream_share_the_chunk_and_other_streams_and_websockets_do_not():
    async def scenario():
        hub, broker = await make_hub(FixedEpochBroker(100))
        same = [SSEReader(), SSEReader()]
        for reader in same:
            await hub.stream(reader, ["a"], ALL, {})
        wider, sensitive, ws = SSEReader(), SSEReader(sensitive=True), FakeSubscriber()
        await hub.stream(wider, ["a", "b"], ALL, {})
        await hub.stream(sensitive, ["a"], ALL, {})
        await subscribe(hub, ws, ["a"])
        publish(broker, "a", [1])
        hub.flush()
        return hub, same, wider, sensitive, ws

    hub, same, wider, sensitive, ws = asyncio.run(scenario())
    assert same[0].frames[1] is same[1].frames[1]
    assert same[0].frames == [
        opening(cursor(("a", "ea", 0))),
        chunk(sse_event(cursor(("a", "ea", 1)), message("a", 1, 1))),
    ]
    assert wider.frames[1] == chunk(
        sse_event(cursor(("a", "ea", 1), ("b", "eb", 0)), message("a", 1, 1))
    )
    assert sensitive.frames[1] == chunk(
        sse_event(cursor(("a", "ea", 1)), message("a", 1, 1, sensitive=True))
    )
    assert delivered(ws) == [(1, hidden(1))]
    assert hub.subscriber_counts() == {"a": 5, "b": 1}
    assert sample(hub._metrics.events_delivered.labels("a")) == 5


def test_a_stream_resumed_from_a_cursor_replays_what_it_missed_then_goes_live():
    async def scenario():
        hub, broker = await make_hub(FixedEpochBroker(100))
        publish(broker, "a", [1, 2, 3])
        publish(broker, "b", [1])
        reader = SSEReader()
        since = {"a": Position("ea", 1), "b": Position("eb", 1)}
        await hub.stream(reader, ["a", "b"], ALL, since)
        publish(broker, "b", [2])
        hub.flush()
        return reader

    reader = asyncio.run(scenario())
    assert reader.frames == [
        opening(cursor(("a", "ea", 1), ("b", "eb", 1))),
        chunk(
            sse_event(cursor(("a", "ea", 2), ("b", "eb", 1)), message("a", 2, 2))
            + sse_event(cursor(("a", "ea", 3), ("b", "eb", 1)), message("a", 3, 3))
        ),
        chunk(sse_event(cursor(("a", "ea", 3), ("b", "eb", 2)), message("b", 2, 2))),
    ]
    assert reader.counts == [0, 2, 1]


def test_a_filtered_stream_replays_and_delivers_only_matching_events():
    async def scenario():
        hub, broker = await make_hub(FixedEpochBroker(100))
        publish(broker, "a", [1], "low")
        publish(broker, "a", [2])
        reader = SSEReader()
        await hub.stream(reader, ["a"], HIGH, {"a": Position("ea", 0)})
        publish(broker, "a", [3], "low")
        publish(broker, "a", [4])
        hub.flush()
        return hub, reader

    hub, reader = asyncio.run(scenario())
    assert reader.frames == [
        opening(cursor(("a", "ea", 0))),
        chunk(sse_event(cursor(("a", "ea", 2)), message("a", 2, 2))),
        chunk(sse_event(cursor(("a", "ea", 4)), message("a", 4, 4))),
    ]
    assert hub.subscriptions(reader) == {"a": HIGH}


def test_a_stream_whose_cursor_history_cannot_serve_gets_a_gap_then_live():
    async def scenario():
        hub, broker = await make_hub(FixedEpochBroker(100))
        publish(broker, "a", [1, 2])
        publish(broker, "b", [1])
        publish(broker, "c", [1])
        reader = SSEReader()
        since = {"a": Position("old", 1), "c": Position("ec", 1)}
        await hub.stream(reader, ["a", "b", "c"], ALL, since)
        publish(broker, "a", [3])
        hub.flush()
        return reader

    reader = asyncio.run(scenario())
    now = cursor(("a", "ea", 2), ("b", "eb", 1), ("c", "ec", 1))
    gap = b'{"type":"gap","channel":"a","epoch":"ea","from":{"epoch":"old","offset":1}}'
    assert reader.frames == [
        opening(now),
        chunk(b"id: " + now + b"\nevent: gap\ndata: " + gap + b"\n\n"),
        chunk(
            sse_event(cursor(("a", "ea", 3), ("b", "eb", 1), ("c", "ec", 1)), message("a", 3, 3))
        ),
    ]
    assert reader.counts == [0, 0, 1]


def test_a_stream_reader_whose_redaction_class_changes_is_regrouped_and_stays_a_stream():
    async def scenario():
        hub, broker = await make_hub(FixedEpochBroker(100))
        reader, other = SSEReader(), SSEReader()
        await hub.stream(reader, ["a"], HIGH, {})
        await hub.stream(other, ["a"], HIGH, {})
        publish(broker, "a", [1])
        hub.flush()
        reader.sensitive = True
        hub.regroup(reader)
        hub.regroup(other)  # unchanged: stays where it is
        publish(broker, "a", [2])
        publish(broker, "a", [3], "low")
        hub.flush()
        reader.sensitive = False
        hub.regroup(reader)
        publish(broker, "a", [4])
        hub.flush()
        return hub, reader, other

    hub, reader, other = asyncio.run(scenario())
    assert reader.frames[1:] == [
        chunk(sse_event(cursor(("a", "ea", 1)), message("a", 1, 1))),
        chunk(sse_event(cursor(("a", "ea", 2)), message("a", 2, 2, sensitive=True))),
        chunk(sse_event(cursor(("a", "ea", 4)), message("a", 4, 4))),
    ]
    assert other.frames[1:] == [
        chunk(sse_event(cursor(("a", "ea", n)), message("a", n, n))) for n in (1, 2, 4)
    ]
    assert reader.frames[3] is other.frames[3]  # back in the same group
    assert hub.subscriptions(reader) == {"a": HIGH}
    assert hub.subscriber_counts() == {"a": 2}


def test_a_stream_resume_of_more_than_a_chunk_is_built_as_the_reader_takes_it():
    blob = "x" * 5_000  # about 5 KiB per event: 600 events are near 3 MiB

    async def scenario():
        hub, broker = await make_hub(FixedEpochBroker(700))
        publish(broker, "a", range(1, 601), blob=blob)
        reader = SSEReader(paced=True)
        await hub.stream(reader, ["a"], ALL, {"a": Position("ea", 0)})
        steps = [(len(reader.frames), hub._redactor.applied)]  # the opening, nothing built
        publish(broker, "a", [601], blob=blob)
        hub.flush()  # live: waits behind the replay
        steps.append((len(reader.frames), hub._redactor.applied))
        assert reader.take()
        steps.append((len(reader.frames), hub._redactor.applied))
        reader.take_all()
        return reader, steps

    reader, steps = asyncio.run(scenario())
    assert steps == [(1, 0), (1, 1), (2, 1 + 256)]  # one chunk taken: one batch built
    assert not reader.waiting
    assert reader.frames[0] == opening(cursor(("a", "ea", 0)))
    payloads = [unchunk(frame) for frame in reader.frames[1:]]
    assert b"".join(payloads) == b"".join(
        sse_event(cursor(("a", "ea", n)), message("a", n, n, blob=blob)) for n in range(1, 602)
    )
    assert len(payloads) == 4 and all(MiB - 5_200 < len(p) <= MiB for p in payloads[:2])
    assert [p.count(b"\nevent: event\n") for p in payloads] == reader.counts[1:]
    assert sum(reader.counts[1:4]) == 600 and reader.counts[4] == 1


def test_a_stream_leaves_out_a_publication_that_fails_to_serialize():
    async def scenario():
        hub, broker = await make_hub(FixedEpochBroker(100))
        reader = SSEReader()
        await hub.stream(reader, ["a"], ALL, {})
        for n, cls in ((1, Publication), (2, BadPublication), (3, Publication)):
            hub.on_publication(cls("a", "ea", n, PreparedEvent(full(n), 0.0)))
        hub.flush()
        hub.on_publication(Publication("a", "ea", 4, PreparedEvent(full(4), 0.0)))
        hub.flush()
        return hub, reader

    hub, reader = asyncio.run(scenario())
    assert reader.frames[1:] == [
        chunk(
            sse_event(cursor(("a", "ea", 1)), message("a", 1, 1))
            + sse_event(cursor(("a", "ea", 3)), message("a", 3, 3))
        ),
        chunk(sse_event(cursor(("a", "ea", 4)), message("a", 4, 4))),
    ]
    assert reader.counts == [0, 2, 1]
    assert sample(hub._metrics.events_delivered.labels("a")) == 3


def test_a_stream_reader_closed_during_the_handover_gets_nothing_and_is_never_joined():
    async def scenario():
        hub, broker = await make_hub(YieldingBroker(FixedEpochBroker(100)))
        publish(broker, "a", [1, 2])
        reader = SSEReader()
        task = asyncio.create_task(hub.stream(reader, ["a"], ALL, {"a": Position("ea", 1)}))
        await asyncio.sleep(0)  # the task is now inside the broker's read
        reader.closed = True
        await task
        publish(broker, "a", [3])
        hub.flush()
        return hub, reader

    hub, reader = asyncio.run(scenario())
    assert reader.frames == []
    assert hub.subscriber_counts() == {"a": 0}
    assert hub.subscriptions(reader) == {}


# --- a loss the broker reports ---


def test_a_reported_loss_is_a_gap_after_what_was_pending_for_every_group():
    async def scenario():
        hub, broker = await make_hub()
        everything, high = FakeSubscriber(), FakeSubscriber()
        await subscribe(hub, everything, ["a"])
        await subscribe(hub, high, ["a"], flt=HIGH)
        publish(broker, "a", [1, 2])
        publish(broker, "a", [3], severity="low")
        epoch = broker.position("a").epoch
        hub.on_loss("a", Position("NEW", 7))  # before the flush: what was pending goes first
        hub.on_loss("unknown", Position("X", 0))  # a channel nobody is on: nothing to do
        hub.on_publication(Publication("a", "NEW", 8, PreparedEvent(full(8), 0.0)))
        await asyncio.sleep(0)
        return everything, high, epoch

    everything, high, epoch = asyncio.run(scenario())
    gap = {"type": "gap", "channel": "a", "epoch": "NEW", "from": {"epoch": epoch, "offset": 3}}
    for sub, before in ((everything, [1, 2, 3]), (high, [1, 2])):
        kinds = [m for m in sub.messages if m["type"] != "subscribed"]
        assert [m["type"] for m in kinds] == ["event"] * len(before) + ["gap", "event"]
        assert [m["offset"] for m in kinds if m["type"] == "event"] == [*before, 8]
        assert kinds[len(before)] == gap
        assert kinds[-1]["epoch"] == "NEW"


def test_a_reported_loss_reaches_a_stream_as_a_gap_with_the_cursor_after_it():
    async def scenario():
        hub, broker = await make_hub(FixedEpochBroker(100))
        publish(broker, "a", [1, 2])
        publish(broker, "b", [1])
        reader = SSEReader()
        await hub.stream(reader, ["a", "b"], ALL, {})
        publish(broker, "a", [3])
        hub.on_loss("a", Position("new", 7))  # a's pending event goes first
        publish(broker, "b", [2])  # its cursor has a where live delivery goes on
        hub.flush()
        return reader

    reader = asyncio.run(scenario())
    after = cursor(("a", "new", 7), ("b", "eb", 1))
    gap = b'{"type":"gap","channel":"a","epoch":"new","from":{"epoch":"ea","offset":3}}'
    assert reader.frames == [
        opening(cursor(("a", "ea", 2), ("b", "eb", 1))),
        chunk(sse_event(cursor(("a", "ea", 3), ("b", "eb", 1)), message("a", 3, 3))),
        chunk(b"id: " + after + b"\nevent: gap\ndata: " + gap + b"\n\n"),
        chunk(sse_event(cursor(("a", "new", 7), ("b", "eb", 2)), message("b", 2, 2))),
    ]
    assert reader.counts == [0, 1, 0, 1]


def test_a_loss_on_a_channel_whose_only_subscriber_closed_during_its_handover_sends_nothing():
    """The handover made the channel known but never joined anyone: the loss is built from
    the head the channel started with and reaches nobody; later subscribers are served."""

    async def scenario():
        hub, broker = await make_hub(YieldingBroker(MemoryBroker(100)))
        publish(broker, "a", [1, 2])
        gone = FakeSubscriber()
        task = asyncio.create_task(hub.subscribe(gone, 1, ["a"], ALL, {"a": broker.position("a")}))
        await asyncio.sleep(0)  # the task is now inside the broker's read
        gone.closed = True
        await task
        hub.on_loss("a", Position("NEW", 0))
        late = FakeSubscriber()
        await subscribe(hub, late, ["a"])
        publish(broker, "a", [3])
        hub.flush()
        return gone, late

    gone, late = asyncio.run(scenario())
    assert gone.frames == []
    assert delivered(late) == [(3, hidden(3))]
