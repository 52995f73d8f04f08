"""The per-event tallies are scraped exactly as the prometheus_client Counters they replace."""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest

from netsentinel_websocket.metrics import Metrics, Tally


def exposition(registry: CollectorRegistry) -> str:
    """The text format with each series' creation time blanked (they differ by microseconds)."""
    return re.sub(r"(_created(?:\{[^}]*\})?) \S+", r"\1 T", generate_latest(registry).decode())


def test_a_tally_is_scraped_as_a_counter_with_and_without_labels():
    tallied, counted = CollectorRegistry(), CollectorRegistry()
    plain = Tally("x_events", "Events.", registry=tallied)
    labelled = Tally("x_routed", "Routed.", ("channel",), registry=tallied)
    plain_counter = Counter("x_events", "Events.", registry=counted)
    labelled_counter = Counter("x_routed", "Routed.", ["channel"], registry=counted)
    for cell, counter, times in (
        (plain.labels(), plain_counter, 3),
        (labelled.labels("events"), labelled_counter.labels("events"), 2),
        (labelled.labels("alerts"), labelled_counter.labels("alerts"), 0),
    ):
        for _ in range(times):
            cell.inc()
            counter.inc()
    assert exposition(tallied) == exposition(counted)
    assert tallied.get_sample_value("x_routed_total", {"channel": "events"}) == 2


def test_a_tally_takes_exactly_its_labels():
    tally = Tally("x_routed", "Routed.", ("channel",), registry=CollectorRegistry())
    assert tally.labels("events") is tally.labels("events")
    with pytest.raises(ValueError, match="takes labels"):
        tally.labels()
    with pytest.raises(ValueError, match="takes labels"):
        tally.labels("events", "extra")


def test_the_node_series_are_present_from_the_start():
    registry = Metrics().registry
    assert registry.get_sample_value("netsentinel_ws_events_in_total") == 0
    assert registry.get_sample_value("netsentinel_ws_events_in_created") is not None
