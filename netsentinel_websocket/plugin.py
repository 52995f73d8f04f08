"""The pluggy hook implementations: what NetSentinel loads through the ``netsentinel`` entry
point group (name ``websocket``)."""

from __future__ import annotations

import logging
from typing import Any

from . import admin, feeds
from .config import validate
from .hookspecs import HOOK_RELAY_SETTING, hookimpl
from .http import routes
from .node import Node
from .processor import WebSocketProcessor

log = logging.getLogger("netsentinel_websocket")


class WebSocketPlugin:
    """One plugin instance; ``netsentinel_configure`` builds its node when enabled."""

    def __init__(self) -> None:
        self.node: Node | None = None

    @hookimpl
    def netsentinel_configure(self, config: dict[str, Any]) -> None:
        settings = validate(config)
        for warning in settings.warnings:
            log.warning("configuration: %s", warning)
        self.node = Node(settings.websocket) if settings.websocket.enabled else None

    @hookimpl
    def netsentinel_web_routes(self, config: dict[str, Any]) -> list[Any]:
        if self.node is None:
            return []
        return [*routes(self.node), *admin.routes(self.node), *feeds.routes(self.node)]

    @hookimpl
    def netsentinel_processors(self, config: dict[str, Any]) -> list[Any]:
        return [WebSocketProcessor(self.node)] if self.node else []

    @hookimpl
    async def netsentinel_startup(self, app: Any) -> None:
        if self.node is None:
            return
        relay = getattr(app, "settings", {}).get(HOOK_RELAY_SETTING)
        if relay is not None:
            self.node.ack_hook = relay.netsentinel_alert_acknowledged
        await self.node.start()

    @hookimpl
    async def netsentinel_shutdown(self, app: Any) -> None:
        if self.node is not None:
            await self.node.stop()


#: The object the entry point names.
plugin = WebSocketPlugin()
