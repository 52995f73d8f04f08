"""The memory broker: per-channel epochs, offsets +1, bounded history, delivery in order."""

import asyncio

from netsentinel_websocket.broker_memory import MemoryBroker
from netsentinel_websocket.positions import Position, PreparedEvent, Publication


def run(coro):
    return asyncio.run(coro)


async def started(history: int = 5) -> tuple[MemoryBroker, list[Publication]]:
    broker = MemoryBroker(history)
    delivered: list[Publication] = []
    await broker.start(delivered.append)
    return broker, delivered


def publish(broker: MemoryBroker, channel: str, n: int) -> None:
    for i in range(n):
        broker.publish(channel, PreparedEvent({"i": i}, 0.0))


def test_offsets_count_up_by_one_per_channel_and_are_delivered_in_order():
    async def scenario():
        broker, delivered = await started()
        publish(broker, "a", 3)
        publish(broker, "b", 2)
        publish(broker, "a", 1)
        return broker, delivered

    broker, delivered = run(scenario())
    assert [(p.channel, p.offset) for p in delivered] == [
        ("a", 1),
        ("a", 2),
        ("a", 3),
        ("b", 1),
        ("b", 2),
        ("a", 4),
    ]
    assert len({p.epoch for p in delivered if p.channel == "a"}) == 1
    assert broker.position("a") == Position(delivered[0].epoch, 4)


def test_each_channel_and_each_broker_lifetime_has_its_own_epoch():
    first = MemoryBroker(5)
    second = MemoryBroker(5)  # a restart: the history is gone, so the epoch must change
    assert first.position("a").epoch != first.position("b").epoch
    assert first.position("a").epoch != second.position("a").epoch
    assert first.position("a").offset == 0


def test_history_is_bounded_and_recover_serves_only_what_it_holds():
    async def scenario():
        broker, _ = await started(history=5)
        publish(broker, "a", 12)
        epoch = broker.position("a").epoch
        inside = await broker.recover("a", Position(epoch, 7))
        outside = await broker.recover("a", Position(epoch, 6))
        unknown = await broker.recover("a", Position("other", 11))
        return inside, outside, unknown

    inside, outside, unknown = run(scenario())
    assert inside.recovered and [p.offset for p in inside.publications] == [8, 9, 10, 11, 12]
    assert not outside.recovered and not unknown.recovered
    assert outside.position.offset == 12


def test_history_size_zero_keeps_nothing():
    async def scenario():
        broker, _ = await started(history=0)
        publish(broker, "a", 3)
        epoch = broker.position("a").epoch
        return await broker.recover("a", Position(epoch, 2)), await broker.recover(
            "a", Position(epoch, 3)
        )

    behind, current = run(scenario())
    assert not behind.recovered and current.recovered


def test_stopped_broker_delivers_nothing():
    async def scenario():
        broker, delivered = await started()
        await broker.stop()
        publish(broker, "a", 2)
        return delivered

    assert run(scenario()) == []
