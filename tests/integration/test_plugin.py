"""The installed plugin, loaded exactly as a NetSentinel host loads it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pluggy
import pytest
import tornado.web
from tornado.httpclient import HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from tornado.websocket import websocket_connect

from netsentinel_websocket import hookspecs
from netsentinel_websocket.config import ConfigError

from ..conftest import WSClient, base_config, make_token


def load_host() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("netsentinel")
    pm.add_hookspecs(hookspecs)
    pm.load_setuptools_entrypoints("netsentinel")
    return pm


@dataclass
class PipelineEvent:
    """An object-form StandardEvent, as the pipeline hands it."""

    event_type: str
    severity: str
    id: str = "obj-1"
    timestamp: float = 1700000000.0
    source: str = "analyzer"
    data: dict[str, Any] = field(default_factory=lambda: {"src_ip": "198.51.100.1"})
    tags: list[str] = field(default_factory=list)
    correlation_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def test_entry_point_registers_the_plugin():
    pm = load_host()
    assert pm.get_plugin("websocket") is not None
    names = {
        impl.function.__name__
        for hook in pm.hook.__dict__.values()
        if hasattr(hook, "get_hookimpls")
        for impl in hook.get_hookimpls()
    }
    assert {
        "netsentinel_configure",
        "netsentinel_web_routes",
        "netsentinel_processors",
        "netsentinel_startup",
        "netsentinel_shutdown",
    } <= names


def test_configure_refuses_a_bad_key_by_name():
    pm = load_host()
    with pytest.raises(ConfigError, match=r"^websocket\.history\.size: "):
        pm.hook.netsentinel_configure(config={"websocket.history.size": "lots"})


def test_disabled_plugin_contributes_nothing():
    pm = load_host()
    config = {"websocket.enabled": False}
    pm.hook.netsentinel_configure(config=config)
    assert [r for rs in pm.hook.netsentinel_web_routes(config=config) for r in rs] == []
    assert [p for ps in pm.hook.netsentinel_processors(config=config) for p in ps] == []


@asynccontextmanager
async def hosted(pm: pluggy.PluginManager) -> AsyncIterator[tuple[int, list[Any]]]:
    """Configure, mount and start the plugin in a Tornado app as a host does; yields the port
    and the processors, and shuts everything down afterwards."""
    config = base_config()
    pm.hook.netsentinel_configure(config=config)
    routes = [r for rs in pm.hook.netsentinel_web_routes(config=config) for r in rs]
    processors = [p for ps in pm.hook.netsentinel_processors(config=config) for p in ps]
    app = tornado.web.Application(routes, **{hookspecs.HOOK_RELAY_SETTING: pm.hook})
    sock, port = bind_unused_port()
    server = HTTPServer(app)
    server.add_sockets([sock])
    for coro in pm.hook.netsentinel_startup(app=app):
        await coro
    for processor in processors:
        await processor.start()
    try:
        yield port, processors
    finally:
        for coro in pm.hook.netsentinel_shutdown(app=app):
            await coro
        for processor in processors:
            await processor.stop()
        server.stop()
        await asyncio.sleep(0)


async def connect(port: int, scope: str) -> WSClient:
    token = make_token(scope=scope)
    conn = await websocket_connect(
        HTTPRequest(f"ws://127.0.0.1:{port}/ws", headers={"Authorization": f"Bearer {token}"})
    )
    client = WSClient(conn)
    assert (await client.recv())["type"] == "welcome"
    return client


@pytest.mark.gen_test(timeout=20)
async def test_every_hook_mounted_in_a_host_app():
    """Call every hook as a host would and stream both event forms through the processor."""
    acks: list[tuple[str, str, str]] = []

    class HostHooks:
        @hookspecs.hookimpl
        def netsentinel_alert_acknowledged(self, alert_id: str, subject: str, note: str) -> None:
            acks.append((alert_id, subject, note))

    pm = load_host()
    pm.register(HostHooks())
    async with hosted(pm) as (port, processors):
        assert [p.name for p in processors] == ["websocket"]
        client = await connect(port, "channel:* alerts:ack")
        reply = await client.request({"type": "subscribe", "id": 1, "channels": ["threats"]})
        assert reply["type"] == "subscribed"

        as_object = PipelineEvent("threat.detected", "high")
        as_mapping = {"event_type": "threat.detected", "severity": "critical", "id": "map-1"}
        for event in (as_object, as_mapping):
            assert await processors[0].process(event) is event
        got = await client.events(2)
        assert [m["event"]["id"] for m in got] == ["obj-1", "map-1"]
        assert [m["offset"] for m in got] == [1, 2]
        assert got[0]["event"]["data"]["src_ip"] == "198.51.100.1"

        ack = await client.request({"type": "ack", "id": 2, "alert_id": "A-1", "note": "seen"})
        assert ack == {"type": "ack_ok", "id": 2}
        assert acks == [("A-1", "tester", "seen")]
        client.close()


@pytest.mark.gen_test(timeout=20)
async def test_ack_without_any_implementation_is_unavailable():
    """``ack_ok`` means something recorded the acknowledgement; a host with nothing to do so
    says so, and the connection stays usable."""
    async with hosted(load_host()) as (port, _):
        client = await connect(port, "channel:* alerts:ack")
        reply = await client.request({"type": "ack", "id": 2, "alert_id": "A-1"})
        assert (reply["type"], reply["id"], reply["code"]) == ("error", 2, "unavailable")
        assert (await client.request({"type": "ping", "id": 3}))["type"] == "pong"
        client.close()
