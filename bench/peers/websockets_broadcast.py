"""A server on the ``websockets`` library: a well-made general-purpose peer.

Each event is encoded once with orjson and handed to ``websockets.asyncio.server.broadcast``,
which writes the same bytes to every subscriber without waiting on any of them. That is the
library's recommended fan-out, so it is the fair "good library, no special design" comparison.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

from bench.peers import common

log = logging.getLogger("bench.peer.websockets")


class Hub:
    """Subscribers per channel; the ingest broadcasts into it."""

    def __init__(self) -> None:
        self.subscribers: dict[str, set[ServerConnection]] = {c: set() for c in common.CHANNELS}
        self.offsets = common.Offsets()

    async def publish(self, event: dict[str, Any]) -> None:
        for channel in common.route(event):
            members = self.subscribers[channel]
            if members:
                broadcast(members, orjson.dumps(self.offsets.envelope(channel, event)), text=True)

    def forget(self, connection: ServerConnection) -> None:
        for members in self.subscribers.values():
            members.discard(connection)


async def session(connection: ServerConnection, hub: Hub, secret: str) -> None:
    """One subscriber: authenticate, welcome, then answer client messages."""
    try:
        claims = common.verify_bearer(connection.request.headers.get("Authorization"), secret)
    except common.AuthError as exc:
        await connection.close(4001, str(exc))
        return
    await connection.send(orjson.dumps(common.welcome(claims)), text=True)
    subscriptions: set[str] = set()
    try:
        async for message in connection:
            reply = common.answer(message, subscriptions)
            for channel in subscriptions:
                hub.subscribers[channel].add(connection)
            for channel in set(common.CHANNELS) - subscriptions:
                hub.subscribers[channel].discard(connection)
            await connection.send(orjson.dumps(reply), text=True)
    except ConnectionClosed:
        pass
    finally:
        hub.forget(connection)


async def main() -> None:
    args = common.parse_args(__doc__.splitlines()[0])
    hub = Hub()
    async with serve(
        lambda c: session(c, hub, args.secret), args.host, args.port, compression=None, backlog=1024
    ):
        await common.serve_ingest(args.host, args.ingest_port, hub.publish)
        log.info("websockets peer on %s:%d, ingest %d", args.host, args.port, args.ingest_port)
        await asyncio.Event().wait()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main())
