"""The plugin's HTTP endpoints: /metrics, /healthz, /ws/stats, /ws/dashboard and its files."""

from __future__ import annotations

import asyncio
import socket

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import make_token

# Contract section 10, with Prometheus names (counters end in _total when exposed).
REQUIRED = {
    "netsentinel_ws_connections": "gauge",
    "netsentinel_ws_subscriptions": "gauge",
    "netsentinel_ws_events_in": "counter",
    "netsentinel_ws_events_delivered": "counter",
    "netsentinel_ws_sent_bytes": "counter",
    "netsentinel_ws_delivery_latency_seconds": "histogram",
    "netsentinel_ws_auth_failures": "counter",
    "netsentinel_ws_slow_consumer_closes": "counter",
    "netsentinel_ws_ingest_rejected": "counter",
    "netsentinel_ws_broker_up": "gauge",
}


async def scrape(server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics`` by (name, sorted labels)."""
    response = await server.get("/metrics")
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = list(text_string_to_metric_families(response.body.decode()))
    kinds = {f.name: f.type for f in families}
    for name, kind in REQUIRED.items():
        assert kinds.get(name) == kind, (name, kinds.get(name))
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


@pytest.mark.gen_test(timeout=20)
async def test_metrics_parse_and_move_as_events_are_delivered(server_factory, make_event):
    server = await server_factory()
    before = await scrape(server)
    assert before[("netsentinel_ws_connections", ())] == 0
    assert before[("netsentinel_ws_broker_up", ())] == 1
    assert before[("netsentinel_ws_ingest_rejected_total", (("reason", "malformed"),))] == 0

    client = await server.subscriber(["events"])
    for n in range(3):
        await server.publish(make_event(n))
    await client.events(3)
    after = await scrape(server)

    events = (("channel", "events"),)
    assert after[("netsentinel_ws_connections", ())] == 1
    assert after[("netsentinel_ws_subscriptions", events)] == 1
    assert after[("netsentinel_ws_events_in_total", ())] == 3
    assert after[("netsentinel_ws_events_published_total", events)] == 3
    assert after[("netsentinel_ws_events_delivered_total", events)] == 3
    assert after[("netsentinel_ws_sent_bytes_total", ())] > 0
    assert after[("netsentinel_ws_delivery_latency_seconds_count", ())] >= 3

    client.conn.close(1000)  # the close is counted by code, and the gauges go back down
    for _ in range(100):
        final = await scrape(server)
        if final[("netsentinel_ws_connections", ())] == 0:
            break
        await asyncio.sleep(0.02)
    assert final[("netsentinel_ws_subscriptions", events)] == 0
    assert final[("netsentinel_ws_connections_closed_total", (("code", "1000"),))] == 1


@pytest.mark.gen_test(timeout=20)
async def test_auth_failures_and_dropped_ingest_lines_are_counted(server_factory):
    server = await server_factory()
    bad = make_token()[:-4] + "AAAA"
    assert (await server.get("/ws/stats", bad)).code == 401
    with socket.create_connection(("127.0.0.1", server.ingest_port)) as sock:
        sock.sendall(b"{not json\n[1]\n")
    for _ in range(100):
        samples = await scrape(server)
        if samples[("netsentinel_ws_ingest_rejected_total", (("reason", "not_object"),))]:
            break
        await asyncio.sleep(0.02)
    assert samples[("netsentinel_ws_auth_failures_total", (("reason", "bad signature"),))] == 1
    assert samples[("netsentinel_ws_ingest_rejected_total", (("reason", "malformed"),))] == 1
    assert samples[("netsentinel_ws_ingest_rejected_total", (("reason", "not_object"),))] == 1


@pytest.mark.gen_test(timeout=20)
async def test_stats_needs_an_admin_token(server_factory, make_event):
    server = await server_factory()
    client = await server.subscriber(["events"])
    await server.publish(make_event(1))
    await client.events(1)

    none = await server.get("/ws/stats")
    assert none.code == 401 and none.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await server.get("/ws/stats", "not-a-jwt")).code == 401
    assert (await server.get("/ws/stats", make_token(scope="channel:*"))).code == 403

    ok = await server.get("/ws/stats", make_token("ops", "admin"))
    assert ok.code == 200 and ok.headers["Cache-Control"] == "no-store"
    stats = orjson.loads(ok.body)
    assert stats["connections"] == 1
    assert stats["channels"]["events"]["offset"] == 1
    assert stats["broker"]["ready"] is True


@pytest.mark.gen_test(timeout=20)
async def test_healthz(server_factory):
    server = await server_factory()
    response = await server.get("/healthz")
    assert response.code == 200
    body = orjson.loads(response.body)
    assert body["status"] == "ok" and body["broker"]["ready"] is True


@pytest.mark.gen_test(timeout=20)
async def test_dashboard_page_and_static_files(server_factory):
    server = await server_factory()
    page = await server.get("/ws/dashboard")
    assert page.code == 200
    html = page.body.decode()
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp
    assert '<meta name="netsentinel-ws-path" content="/ws">' in html
    assert "netsentinel-dev-token" not in html  # only serve --dev hands a token over
    assert "<script>" not in html  # the CSP allows no inline script
    for name, kind in [
        ("client.js", "javascript"),
        ("dashboard.js", "javascript"),
        ("dashboard.css", "text/css"),
    ]:
        response = await server.get(f"/ws/static/{name}")
        assert response.code == 200 and kind in response.headers["Content-Type"], name
        assert b"http://" not in response.body and b"https://" not in response.body  # air-gapped


@pytest.mark.gen_test(timeout=20)
async def test_dashboard_dev_token_and_path_are_escaped(server_factory):
    token = make_token("dev", "channel:*")
    server = await server_factory(
        websocket__path="/feed", websocket__dashboard__token=token + '"><script>'
    )
    html = (await server.get("/feed/dashboard")).body.decode()
    assert f'<meta name="netsentinel-dev-token" content="{token}&quot;&gt;&lt;script&gt;">' in html
    assert 'content="/feed"' in html
    assert (await server.get("/feed/static/client.js")).code == 200
