"""Random interleavings of publish / subscribe / unsubscribe / disconnect / resume / restart
against the hub and the memory broker, whose recover yields to the loop a random number of times
so publications land in the middle of handovers.

Invariants, per subscriber and channel: events come in offset order within the epoch it was
told, each offset exactly once on a connection (a ``subscribed`` reply never licenses an offset
the connection already has), with no hole (a filtered subscriber skips only events its filter
refuses); a resume from a position history still holds is recovered and continues with exactly
the suffix after it; an unservable position is a gap; once everything settles, every subscriber
stands at the broker's last position.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from netsentinel_websocket.broker_memory import MemoryBroker
from netsentinel_websocket.filters import Filter
from netsentinel_websocket.hub import Hub
from netsentinel_websocket.metrics import Metrics
from netsentinel_websocket.positions import Position, PreparedEvent
from netsentinel_websocket.redact import Redactor
from tests.conftest import FakeSubscriber, YieldingBroker

CHANNELS = ("a", "b")
HISTORY = 6
SEVERITIES = ("low", "high")
FILTERS = {"all": Filter(), "high": Filter(min_severity="high")}
PUBLICATIONS = st.lists(st.sampled_from(SEVERITIES), max_size=4)


class Client:
    """One connection and what its messages told it so far."""

    def __init__(self, flt: str) -> None:
        self.sub = FakeSubscriber()
        self.flt = flt
        self.seen = 0  # messages checked
        self.at: dict[str, Position] = {}  # where it stands per subscribed channel
        # The last offset it got per channel, whatever replies said since: never moves back.
        self.received: dict[str, Position] = {}
        self.task: asyncio.Task[None] | None = None
        self.since: Mapping[str, Position] = {}
        self.top_at_start: dict[str, Position] = {}
        self.expect_gaps: set[str] = set()

    @property
    def busy(self) -> bool:
        return self.task is not None and not self.task.done()


class TakenUp(Mapping[str, Position]):
    """A resubscribe's ``since``: the positions of ``channels`` as the client knows them when
    the hub first reads the request (``positions()`` is called then, once)."""

    def __init__(self, channels: list[str], positions: Callable[[], dict[str, Position]]):
        self._channels = channels
        self._positions = positions
        self._taken: dict[str, Position] | None = None

    def _get(self) -> dict[str, Position]:
        if self._taken is None:
            known = self._positions()
            self._taken = {c: known[c] for c in self._channels}
        return self._taken

    def __getitem__(self, channel: str) -> Position:
        return self._get()[channel]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._channels)


class HubMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(lambda loop, ctx: self.errors.append(ctx))
        self.errors: list[dict[str, Any]] = []
        self.clients: list[Client] = []
        self.departed: list[Client] = []  # disconnected; their positions are resume material
        self._start()

    def _start(self) -> None:
        self.broker = YieldingBroker(MemoryBroker(HISTORY))
        self.broker.on_resume = self._publish_scripted
        self.script: list[tuple[str, list[str]]] = []  # publications made inside handovers
        self.hub = Hub(self.broker, Redactor([]), Metrics())
        self.model: dict[str, list[str]] = {c: [] for c in CHANNELS}  # severity per offset
        self.loop.run_until_complete(self._boot())

    async def _boot(self) -> None:
        await self.broker.start(self.hub.on_publication)
        # The hub learns its loop at its first publication: make it this one, so that rules
        # can publish outside the running loop and leave publications pending between steps.
        self.broker.publish("boot", PreparedEvent({}, 0.0))

    def teardown(self) -> None:
        for _ in range(20):  # let every subscribe task end before the loop goes
            self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()

    # --- rules ---

    @rule(channel=st.sampled_from(CHANNELS), severities=PUBLICATIONS)
    def publish(self, channel: str, severities: list[str]) -> None:
        for severity in severities:
            self.broker.publish(channel, PreparedEvent({"severity": severity}, 0.0))
            self.model[channel].append(severity)

    @rule(script=st.lists(st.tuples(st.sampled_from(CHANNELS), PUBLICATIONS), max_size=6))
    def during_handovers(self, script: list[tuple[str, list[str]]]) -> None:
        """Publications to make each time a broker read resumes, in the middle of a handover."""
        self.script.extend(script)

    def _publish_scripted(self) -> None:
        if self.script:
            self.publish(*self.script.pop(0))

    @rule(turns=st.integers(1, 4))
    def run_loop(self, turns: int) -> None:
        for _ in range(turns):
            self.loop.run_until_complete(asyncio.sleep(0))

    @rule(
        channels=st.lists(st.sampled_from(CHANNELS), min_size=1, unique=True),
        flt=st.sampled_from(sorted(FILTERS)),
        yields=st.tuples(st.integers(0, 3), st.integers(0, 3)),
    )
    def connect(self, channels: list[str], flt: str, yields: tuple[int, int]) -> None:
        client = Client(flt)
        self.clients.append(client)
        self._subscribe(client, channels, {}, yields)

    @precondition(lambda self: self.departed)
    @rule(
        data=st.data(),
        tamper=st.sampled_from(["none", "epoch", "back", "ahead"]),
        yields=st.tuples(st.integers(0, 3), st.integers(0, 3)),
    )
    def resume(self, data: st.DataObject, tamper: str, yields: tuple[int, int]) -> None:
        old = self.departed.pop(data.draw(st.integers(0, len(self.departed) - 1)))
        since = {c: self._tampered(p, tamper) for c, p in old.at.items()}
        client = Client(old.flt)
        self.clients.append(client)
        self._subscribe(client, sorted(since) or ["a"], since, yields)

    @precondition(lambda self: any(not c.busy for c in self.clients))
    @rule(data=st.data(), with_since=st.booleans(), channel=st.sampled_from(CHANNELS))
    def resubscribe(self, data: st.DataObject, with_since: bool, channel: str) -> None:
        """Subscribe again on the same connection (one request at a time, as Tornado does).

        ``since`` holds what the client has when the hub takes the request up (an event in
        flight before that is the client's to count), so one that comes again is a duplicate
        the hub sent."""
        client = data.draw(st.sampled_from([c for c in self.clients if not c.busy]))
        self._check(client)
        channels = sorted({channel, *client.at})
        since = TakenUp(sorted(client.at) if with_since else [], lambda: self._positions(client))
        self._subscribe(client, channels, since, (1, 1))

    def _positions(self, client: Client) -> dict[str, Position]:
        self._check(client)
        return dict(client.at)

    @precondition(lambda self: any(not c.busy and c.at for c in self.clients))
    @rule(data=st.data())
    def unsubscribe(self, data: st.DataObject) -> None:
        client = data.draw(st.sampled_from([c for c in self.clients if not c.busy and c.at]))
        self._check(client)
        channel = data.draw(st.sampled_from(sorted(client.at)))
        assert self.hub.unsubscribe(client.sub, [channel]) == [channel]
        del client.at[channel]

    @precondition(lambda self: self.clients)
    @rule(data=st.data())
    def disconnect(self, data: st.DataObject) -> None:
        client = self.clients.pop(data.draw(st.integers(0, len(self.clients) - 1)))
        self._check(client)
        client.sub.closed = True
        self.hub.remove(client.sub)
        if not client.busy:
            self.departed.append(client)

    @rule()
    def restart(self) -> None:
        """The process restarts: every connection drops, history and epochs are gone."""
        for client in self.clients:
            self._check(client)
            client.sub.closed = True
            if not client.busy:
                self.departed.append(client)
        self.clients = []
        self._settle()
        self._start()

    @rule()
    def settle(self) -> None:
        self._settle()
        for client in self.clients:
            self._check(client)
            for channel, at in client.at.items():
                self._assert_nothing_missed(client, channel, at, self.broker.position(channel))

    # --- invariants ---

    @invariant()
    def streams_are_exact(self) -> None:
        assert not self.errors, self.errors
        for client in self.clients:
            assert client.sub.errors == []
            if client.task is not None and client.task.done():
                assert client.task.exception() is None  # a subscribe never fails
            self._check(client)

    # --- helpers ---

    def _subscribe(
        self,
        client: Client,
        channels: list[str],
        since: Mapping[str, Position],
        yields: tuple[int, int],
    ) -> None:
        client.since = since
        client.top_at_start = {c: self.broker.position(c) for c in channels}
        self.broker.yields.extend([yields] * len(since))
        client.task = self.loop.create_task(
            self.hub.subscribe(client.sub, 1, channels, FILTERS[client.flt], since)
        )

    def _tampered(self, at: Position, how: str) -> Position:
        if how == "epoch":
            return Position("unknown", at.offset)
        if how == "back":
            return Position(at.epoch, max(0, at.offset - HISTORY - 1))
        if how == "ahead":
            return Position(at.epoch, at.offset + 50)
        return at

    def _settle(self) -> None:
        for _ in range(50):
            self.loop.run_until_complete(asyncio.sleep(0))
        assert not any(c.busy for c in self.clients)

    def _check(self, client: Client) -> None:
        """Walk the messages the client got since the last check."""
        messages = client.sub.messages[client.seen :]
        client.seen = len(client.sub.messages)
        flt = FILTERS[client.flt]
        for msg in messages:
            kind = msg["type"]
            if kind == "gap":
                client.expect_gaps.remove(msg["channel"])
                assert Position(**msg["from"]) == client.since[msg["channel"]]
            elif kind == "subscribed":
                self._check_reply(client, msg)
            else:
                assert kind == "event", msg
                channel = msg["channel"]
                at = client.at[channel]  # KeyError: an event of a channel it is not on
                assert msg["epoch"] == at.epoch
                assert msg["offset"] > at.offset
                got = client.received.get(channel)
                if got is not None and got.epoch == msg["epoch"]:
                    assert msg["offset"] > got.offset, ("a duplicate", channel, msg["offset"])
                client.received[channel] = Position(msg["epoch"], msg["offset"])
                severities = self.model[channel]
                skipped = severities[at.offset : msg["offset"] - 1]
                assert not any(flt.match({"severity": s}) for s in skipped), "a hole"
                assert flt.match({"severity": severities[msg["offset"] - 1]})
                client.at[channel] = Position(msg["epoch"], msg["offset"])
        assert not client.expect_gaps  # a gap comes in the reply's own frame

    def _assert_nothing_missed(
        self, client: Client, channel: str, at: Position, top: Position
    ) -> None:
        """``at`` is ``top``, or behind it only by events the client's filter refuses."""
        flt = FILTERS[client.flt]
        assert at.epoch == top.epoch and at.offset <= top.offset, (channel, at, top)
        later = self.model[channel][at.offset : top.offset]
        assert not any(flt.match({"severity": s}) for s in later), (channel, at, top)

    def _check_reply(self, client: Client, msg: dict[str, Any]) -> None:
        client.expect_gaps = {c for c, ok in msg["recovered"].items() if not ok}
        for channel, raw in msg["positions"].items():
            position = Position(**raw)
            since = client.since.get(channel)
            top = self.broker.position(channel)
            if since is not None:
                recovered = msg["recovered"][channel]
                servable = (
                    since.epoch == top.epoch
                    and top.offset - HISTORY <= since.offset
                    and since.offset <= client.top_at_start[channel].offset
                )
                impossible = since.epoch != top.epoch or since.offset > top.offset
                assert not (servable and not recovered), (since, top)
                assert not (impossible and recovered), (since, top)
                if recovered:
                    assert position == since  # the catch-up continues right after it
            elif channel in client.at:  # was already on it: no window in its live stream
                self._assert_nothing_missed(client, channel, client.at[channel], position)
            assert position.epoch == top.epoch
            got = client.received.get(channel)
            if got is not None and got.epoch == position.epoch:  # never back: no offset twice
                assert position.offset >= got.offset, ("moved back", channel, got, position)
            client.at[channel] = position


HubMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestHubProperties = HubMachine.TestCase
