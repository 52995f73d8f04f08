"""The pipeline processor: the plugin's tap on NetSentinel's event stream."""

from __future__ import annotations

from typing import Any

from .node import Node


class WebSocketProcessor:
    """Hands every pipeline event to the node and returns it unchanged.

    ``process`` never waits on subscribers: it normalizes, routes and appends to the broker,
    and delivery happens later in the hub's flush, so its cost does not depend on how many
    clients are connected.
    """

    name = "websocket"

    def __init__(self, node: Node) -> None:
        self._node = node

    async def start(self) -> None:
        await self._node.start()

    async def stop(self) -> None:
        await self._node.stop()

    async def process(self, event: Any) -> Any:
        self._node.publish(event)
        return event
