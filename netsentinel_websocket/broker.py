"""The broker interface: the one seam between the hub and where publications come from.

The memory broker numbers events in-process; the Redis broker numbers them in a Redis Stream so
every node agrees. The hub, history and resume code only ever see this interface.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from .positions import Position, PreparedEvent, Publication, Recovery
from .revocation import Revocation, Revocations

Deliver = Callable[[Publication], None]
#: ``lost(channel, resumed)``: publications after the last delivered one are gone; delivery
#: goes on after ``resumed`` (the hub sends subscribers a ``gap``).
Lost = Callable[[str, Position], None]


class BrokerUnavailable(RuntimeError):
    """The broker cannot be asked right now (the hub turns a failed resume into a ``gap``; a
    revocation that cannot be recorded is refused with 503)."""


class Broker(Protocol):
    """What the hub needs from a broker."""

    async def start(self, deliver: Deliver, lost: Lost | None = None) -> None:
        """Begin delivering; ``deliver`` gets every publication of every channel, in offset
        order per channel, on the event loop thread. Whenever the next one does not follow
        the last delivered (events were lost), ``lost`` (when given) is called first."""

    async def stop(self) -> None:
        """Stop delivering and release connections."""

    def publish(self, channel: str, prepared: PreparedEvent) -> None:
        """Append an event to a channel; never blocks and never raises for a broker outage."""

    async def flushed(self) -> None:
        """Return once every event published before the call is held by the broker (file
        ingest saves its read position only then; through an outage this waits)."""

    async def delivered(self) -> None:
        """Return once every event published before the call has reached ``deliver`` (shutdown
        waits for it, bounded by its grace, before closing subscribers with 1001; through an
        outage this waits)."""

    async def recover(self, channel: str, since: Position | None) -> Recovery:
        """The publications after ``since`` that history still holds, or a not-recovered
        answer when it cannot serve ``since``. May await; it may also return publications
        not yet delivered: the hub keeps only those up to ``position`` and lets live delivery
        bring the rest."""

    def position(self, channel: str) -> Position:
        """The last position delivered to the hub (offset 0 when the channel is empty); every
        later publication of the channel must still reach ``deliver``. The hub reads it to know
        where live delivery takes over from history."""

    @property
    def ready(self) -> bool:
        """True when the broker can take and deliver publications (for ``/healthz``)."""

    def state(self) -> dict[str, Any]:
        """A JSON-able description for ``/healthz`` and ``/ws/stats``."""

    def follow_revocations(self, revocations: Revocations) -> None:
        """Keep ``revocations`` in step with every node's from :meth:`start` on (called
        before it): each one learnt, this node's own included, is added to it."""

    async def revoke(self, revocation: Revocation) -> None:
        """Put a revocation in force here and on every node (where the broker persists, across
        restarts too); :class:`BrokerUnavailable` when it cannot be recorded, and then it is
        not in force anywhere."""

    async def lift(self, revocation_id: str) -> bool:
        """Take a revocation out of force on every node; False when there was none."""
