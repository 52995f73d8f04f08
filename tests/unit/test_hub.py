"""The hub's fan-out and its resume handover, with fake subscribers and no sockets."""

from __future__ import annotations

import asyncio
from typing import Any

from netsentinel_websocket import protocol
from netsentinel_websocket.broker_memory import MemoryBroker
from netsentinel_websocket.filters import Filter
from netsentinel_websocket.hub import Hub
from netsentinel_websocket.metrics import Metrics
from netsentinel_websocket.positions import Position, PreparedEvent
from netsentinel_websocket.redact import Redactor
from tests.conftest import FakeSubscriber, YieldingBroker

ALL = Filter()


async def make_hub(broker: Any = None, history: int = 100) -> tuple[Hub, Any]:
    broker = broker or MemoryBroker(history)
    hub = Hub(broker, Redactor(["data.secret"]), Metrics())
    await broker.start(hub.on_publication)
    return hub, broker


def publish(broker: Any, channel: str = "a", n: int = 1, **fields: Any) -> None:
    for _ in range(n):
        broker.publish(channel, PreparedEvent({"severity": "high", **fields}, 0.0))


async def subscribe(
    hub: Hub,
    sub: FakeSubscriber,
    channels: list[str],
    since: dict[str, Position] | None = None,
    flt: Filter = ALL,
) -> dict[str, Any]:
    ids = list(channels)
    await hub.subscribe(sub, ids, flt, since or {}, lambda p, r: protocol.subscribed(1, ids, p, r))
    return [m for m in sub.messages if m["type"] == "subscribed"][-1]


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


def offsets(sub: FakeSubscriber, channel: str = "a") -> list[int]:
    return [m["offset"] for m in sub.events(channel)]


# --- fan-out ---


def test_one_loop_turn_is_one_frame_and_the_same_bytes_for_every_member():
    async def scenario():
        hub, broker = await make_hub()
        subs = [FakeSubscriber() for _ in range(3)]
        for sub in subs:
            await subscribe(hub, sub, ["a"])
        publish(broker, n=4)
        await settle()
        return subs

    subs = asyncio.run(scenario())
    frames = [sub.frames[-1] for sub in subs]
    assert all(f is frames[0] for f in frames)
    assert all(offsets(sub) == [1, 2, 3, 4] for sub in subs)


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
        publish(broker, n=3)  # severity high: filtered out
        broker.publish("a", PreparedEvent({"severity": "critical"}, 0.0))
        during = sum(len(s.frames) for s in subs)
        await settle()
        return subs, before, during

    subs, before, during = asyncio.run(scenario())
    assert during == before  # process()/publish never writes: delivery waits for the flush
    assert CountingFilter.calls == 4
    assert all(offsets(sub) == [4] for sub in subs)


def test_redaction_classes_get_their_own_bytes():
    async def scenario():
        hub, broker = await make_hub()
        plain, sensitive = FakeSubscriber(), FakeSubscriber(sensitive=True)
        await subscribe(hub, plain, ["a"])
        await subscribe(hub, sensitive, ["a"])
        publish(broker, data={"secret": "s3cret"})
        await settle()
        return plain, sensitive

    plain, sensitive = asyncio.run(scenario())
    assert plain.events()[0]["event"]["data"]["secret"] == "[redacted]"
    assert sensitive.events()[0]["event"]["data"]["secret"] == "s3cret"


# --- resume handover ---


def test_resume_while_publishing_during_an_awaiting_recover_is_exact():
    async def scenario():
        hub, broker = await make_hub(YieldingBroker(MemoryBroker(100), before=3, after=3))
        publish(broker, n=10)
        epoch = broker.position("a").epoch
        stop = False

        async def producer():
            while not stop:
                publish(broker)
                await asyncio.sleep(0)

        task = asyncio.create_task(producer())
        await asyncio.sleep(0)
        sub = FakeSubscriber()
        reply = await subscribe(hub, sub, ["a"], {"a": Position(epoch, 4)})
        for _ in range(5):
            await asyncio.sleep(0)
        stop = True
        await task
        await settle()
        return sub, reply, broker.position("a").offset

    sub, reply, top = asyncio.run(scenario())
    assert reply["recovered"] == {"a": True} and reply["positions"]["a"]["offset"] == 4
    assert offsets(sub) == list(range(5, top + 1))


def test_publication_handed_over_after_the_history_read_is_not_lost():
    """Regression: it was pending in the hub when the subscriber stopped recovering."""

    class LateBroker(YieldingBroker):
        async def recover(self, channel, since):
            recovery = await self.inner.recover(channel, since)
            publish(self.inner)  # arrives after the read, before the handover ends
            return recovery

    async def scenario():
        hub, broker = await make_hub(LateBroker(MemoryBroker(100)))
        publish(broker, n=3)
        epoch = broker.position("a").epoch
        sub = FakeSubscriber()
        await subscribe(hub, sub, ["a"], {"a": Position(epoch, 1)})
        publish(broker)
        await settle()
        return sub

    assert offsets(asyncio.run(scenario())) == [2, 3, 4, 5]


def test_history_read_ahead_of_delivery_is_not_sent_twice():
    """A broker may read history the hub has not been handed yet; that part comes live."""

    class AheadBroker(YieldingBroker):
        async def recover(self, channel, since):
            self.inner._deliver = None  # the next publications reach history first...
            publish(self.inner, n=2)
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
        publish(broker, n=3)
        epoch = broker.position("a").epoch
        sub = FakeSubscriber()
        reply = await subscribe(hub, sub, ["a"], {"a": Position(epoch, 1)})
        held, broker.held = broker.held, []
        for pub in held:  # ...and are delivered afterwards
            hub.on_publication(pub)
        await settle()
        return sub, reply

    sub, reply = asyncio.run(scenario())
    assert reply["recovered"] == {"a": True}
    assert offsets(sub) == [2, 3, 4, 5]


def test_unknown_epoch_and_too_old_positions_get_a_gap_then_live():
    async def scenario():
        hub, broker = await make_hub(history=5)
        publish(broker, n=20)
        epoch = broker.position("a").epoch
        results = []
        for since in (Position("gone", 3), Position(epoch, 14), Position(epoch, 99)):
            sub = FakeSubscriber()
            reply = await subscribe(hub, sub, ["a"], {"a": since})
            results.append((sub, reply, since))
        publish(broker)
        await settle()
        return results, epoch

    results, epoch = asyncio.run(scenario())
    for sub, reply, since in results:
        gap = [m for m in sub.messages if m["type"] == "gap"]
        assert reply["recovered"] == {"a": False}
        assert reply["positions"]["a"] == {"epoch": epoch, "offset": 20}
        assert gap == [{"type": "gap", "channel": "a", "epoch": epoch, "from": since.as_dict()}]
        assert offsets(sub) == [21]


def test_broker_failure_during_recover_is_a_gap_and_counted():
    class FailingBroker(YieldingBroker):
        async def recover(self, channel, since):
            raise ConnectionError("history unavailable")

    async def scenario():
        hub, broker = await make_hub(FailingBroker(MemoryBroker(100)))
        publish(broker, n=2)
        sub = FakeSubscriber()
        reply = await subscribe(hub, sub, ["a"], {"a": broker.position("a")})
        return reply, hub

    reply, hub = asyncio.run(scenario())
    assert reply["recovered"] == {"a": False}
    assert hub._metrics.broker_errors.labels("recover")._value.get() == 1


def test_subscriber_closed_during_recover_is_never_joined():
    async def scenario():
        hub, broker = await make_hub(YieldingBroker(MemoryBroker(100)))
        publish(broker, n=2)
        sub = FakeSubscriber()
        task = asyncio.create_task(subscribe_quietly(hub, sub, broker.position("a")))
        await asyncio.sleep(0)
        sub.closed = True
        hub.remove(sub)
        await task
        publish(broker)
        await settle()
        return hub, sub

    async def subscribe_quietly(hub, sub, since):
        await hub.subscribe(sub, ["a"], ALL, {"a": since}, lambda p, r: b"{}")

    hub, sub = asyncio.run(scenario())
    assert sub.messages == []
    assert hub.subscriber_counts() == {"a": 0}
    assert hub._channels["a"].recovering == []


def test_resubscribing_a_live_channel_leaves_no_window_while_another_recovers():
    async def scenario():
        hub, broker = await make_hub(YieldingBroker(MemoryBroker(100), before=2, after=2))
        sub = FakeSubscriber()
        await subscribe(hub, sub, ["a"])
        publish(broker, "b", 3)
        since_b = broker.position("b")

        async def producer():
            for _ in range(10):
                publish(broker, "a")
                await asyncio.sleep(0)

        task = asyncio.create_task(producer())
        await asyncio.sleep(0)
        await subscribe(hub, sub, ["a", "b"], {"b": since_b})
        await task
        await settle()
        return sub

    sub = asyncio.run(scenario())
    assert offsets(sub, "a") == list(range(1, 11))
    assert offsets(sub, "b") == []


def test_unsubscribe_and_remove_stop_delivery():
    async def scenario():
        hub, broker = await make_hub()
        left, gone, stays = FakeSubscriber(), FakeSubscriber(), FakeSubscriber()
        for sub in (left, gone, stays):
            await subscribe(hub, sub, ["a", "b"])
        assert hub.unsubscribe(left, ["a", "c"]) == ["a"]
        hub.remove(gone)
        publish(broker, "a")
        publish(broker, "b")
        await settle()
        return hub, left, gone, stays

    hub, left, gone, stays = asyncio.run(scenario())
    assert [m["channel"] for m in left.events()] == ["b"]
    assert gone.events() == []
    assert [m["channel"] for m in stays.events()] == ["a", "b"]
    assert hub.subscriber_counts() == {"a": 1, "b": 2}
