"""Channel routing with the contract's default rules, and configurable rules."""

from __future__ import annotations

import pytest

from netsentinel_websocket.config import DEFAULT_ROUTES
from netsentinel_websocket.globs import GlobError, compile_globs
from netsentinel_websocket.routing import Router

ROUTER = Router(DEFAULT_ROUTES)


@pytest.mark.parametrize(
    ("event_type", "severity", "channels"),
    [
        ("threat.detected", "medium", ("threats",)),
        ("alert.raised", "medium", ("alerts",)),
        ("alert.raised", "critical", ("alerts", "threats")),
        ("status.heartbeat", "info", ("status",)),
        ("system.started", "info", ("status",)),
        ("metrics.cpu", "info", ("metrics",)),
        ("network.flow", "low", ("network",)),
        ("packet.captured", "info", ("packets",)),
        ("ml.anomaly", "medium", ("ml",)),
        ("honeypot.ssh.login_attempt", "high", ("events", "threats")),
        ("honeypot.canary.started", "info", ("events",)),
        ("other.thing", "info", ()),
        ("other.thing", "high", ("threats",)),
    ],
)
def test_default_routes(event_type, severity, channels):
    assert ROUTER.route(event_type, severity) == channels


def test_rules_are_ordered_and_configurable():
    router = Router(
        [
            {"channel": "ml", "min_severity": "critical"},
            {"channel": "events", "event_types": ["custom.*", "x.?"]},
        ]
    )
    assert router.route("custom.a", "critical") == ("ml", "events")
    assert router.route("x.1", "info") == ("events",)
    assert router.route("x.12", "info") == ()


def test_route_cache_stays_bounded():
    router = Router([{"channel": "events"}])
    for i in range(Router._CACHE_LIMIT + 10):
        assert router.route(f"t.{i}", "info") == ("events",)
    assert len(router._cache) <= Router._CACHE_LIMIT


@pytest.mark.parametrize("patterns", [[], [""], ["a["], [5]])
def test_bad_globs(patterns):
    with pytest.raises(GlobError):
        compile_globs(patterns)
