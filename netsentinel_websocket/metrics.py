"""Prometheus series of one node, in a private registry so a host's metrics stay its own."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from .disconnect import COUNTED_CODES
from .events import REJECT_REASONS

PREFIX = "netsentinel_ws"

# The reasons ingest.py and runner.py count dropped lines under (a bounded label set).
INGEST_REASONS = ("malformed", "too_long", "not_object", "invalid")
# Why the TCP ingest closed a connection at accept, and why it closed one it was serving.
INGEST_REFUSALS = ("not_allowed", "too_many")
INGEST_CLOSES = ("idle", "line_timeout")


def close_label(code: int | None) -> str:
    """The ``code`` label of a close: one of :data:`disconnect.COUNTED_CODES`, or ``other``."""
    return str(code) if code in COUNTED_CODES else "other"


class TallyCell:
    """One series of a :class:`Tally`: a plain integer and when it was first counted."""

    __slots__ = ("value", "created")

    def __init__(self) -> None:
        self.value = 0
        self.created = time.time()

    def inc(self) -> None:
        self.value += 1


class Tally(Collector):
    """A counter the per-event path adds to, scraped as a ``Counter`` of the same name.

    ``prometheus_client.Counter.inc`` takes a lock through three Python calls (about 0.6 us);
    the node counted two per event that way, a twentieth of an ingest line's whole cost. The
    node publishes from its event loop only, so a plain integer needs no lock. A scrape shows
    exactly what a ``Counter`` shows: ``<name>_total`` and ``<name>_created`` per label set.
    Count through a cell: ``labels(...)`` once, then ``inc()`` on what it gave.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: tuple[str, ...] = (),
        *,
        registry: CollectorRegistry,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = labelnames
        self._cells: dict[tuple[str, ...], TallyCell] = {}
        if not labelnames:  # shown at 0 from the start, as a Counter without labels is
            self.labels()
        registry.register(self)

    def labels(self, *values: str) -> TallyCell:
        """The series of these label values (made on first use, as a Counter's child is); a
        tally without labels has one, ``labels()``. Callers keep it: that lookup is not free."""
        if len(values) != len(self._labelnames):
            raise ValueError(f"{self._name} takes labels {self._labelnames}, not {values}")
        cell = self._cells.get(values)
        if cell is None:
            cell = self._cells[values] = TallyCell()
        return cell

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)
        for values, cell in list(self._cells.items()):
            family.add_metric(values, cell.value, created=cell.created)
        yield family


LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Every series the node exposes on ``GET /metrics`` (see docs/observability.md)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connections = Gauge(f"{PREFIX}_connections", "Open WebSocket connections.", registry=r)
        self.subscriptions = Gauge(
            f"{PREFIX}_subscriptions", "Subscriptions per channel.", ["channel"], registry=r
        )
        self.events_in = Tally(f"{PREFIX}_events_in", "Events handed to the processor.", registry=r)
        self.events_published = Tally(
            f"{PREFIX}_events_published", "Events routed to a channel.", ("channel",), registry=r
        )
        self.events_delivered = Counter(
            f"{PREFIX}_events_delivered",
            "Event messages written to subscribers (one per subscriber).",
            ["channel"],
            registry=r,
        )
        self.bytes_sent = Counter(
            f"{PREFIX}_sent_bytes", "Event frame bytes written to subscribers.", registry=r
        )
        self.delivery_latency = Histogram(
            f"{PREFIX}_delivery_latency_seconds",
            "From ingest to the write to subscribers' sockets.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.auth_failures = Counter(
            f"{PREFIX}_auth_failures", "Refused tokens by reason.", ["reason"], registry=r
        )
        self.closes = Counter(
            f"{PREFIX}_connections_closed",
            "Closed connections by close code.",
            ["code"],
            registry=r,
        )
        self.slow_consumer_closes = Counter(
            f"{PREFIX}_slow_consumer_closes", "Connections closed with 4009.", registry=r
        )
        self.write_errors = Counter(
            f"{PREFIX}_write_errors", "Writes that failed on a broken connection.", registry=r
        )
        self.client_errors = Counter(
            f"{PREFIX}_client_errors",
            "Error replies to client messages by code.",
            ["code"],
            registry=r,
        )
        self.ingest_rejected = Counter(
            f"{PREFIX}_ingest_rejected",
            "Ingest lines or items dropped (malformed, too long, invalid).",
            ["reason"],
            registry=r,
        )
        for reason in INGEST_REASONS:  # present at 0, so rate() alerts work from the start
            self.ingest_rejected.labels(reason)
        self.ingest_connections = Gauge(
            f"{PREFIX}_ingest_connections", "Open TCP ingest connections.", registry=r
        )
        self.ingest_refused = Counter(
            f"{PREFIX}_ingest_refused",
            "TCP ingest connections closed at accept (not_allowed, too_many).",
            ["reason"],
            registry=r,
        )
        for reason in INGEST_REFUSALS:
            self.ingest_refused.labels(reason)
        self.ingest_closed = Counter(
            f"{PREFIX}_ingest_closed",
            "TCP ingest connections closed by the server (idle, line_timeout).",
            ["reason"],
            registry=r,
        )
        for reason in INGEST_CLOSES:
            self.ingest_closed.labels(reason)
        self.ingest_file_lines = Counter(
            f"{PREFIX}_ingest_file_lines",
            "Lines of followed files handed to the pipeline as events.",
            registry=r,
        )
        self.ingest_held = Counter(
            f"{PREFIX}_ingest_held_seconds",
            "Time the TCP and file ingest waited for subscribers that were behind "
            "(websocket.backpressure).",
            registry=r,
        )
        self.pipeline_rejected = Counter(
            f"{PREFIX}_pipeline_rejected",
            "Pipeline events refused where they enter, by reason (invalid, too_large, "
            "unserializable).",
            ["reason"],
            registry=r,
        )
        for reason in REJECT_REASONS:
            self.pipeline_rejected.labels(reason)
        self.broker_up = Gauge(f"{PREFIX}_broker_up", "1 when the broker is ready.", registry=r)
        self.broker_errors = Counter(
            f"{PREFIX}_broker_errors", "Broker operations that failed.", ["op"], registry=r
        )
        self.broker_buffered = Gauge(
            f"{PREFIX}_broker_buffered", "Events waiting for the broker (outage).", registry=r
        )
        self.broker_dropped = Counter(
            f"{PREFIX}_broker_dropped", "Events dropped from a full outage buffer.", registry=r
        )
        self.broker_lag = Histogram(
            f"{PREFIX}_broker_lag_seconds",
            "From publish on a node to delivery from the broker on this node.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
