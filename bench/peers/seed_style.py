"""A Tornado server built the way the seed's NetSentinel code was: the baseline to beat.

One manager class owns every connection and subscription. For each event it runs ``json.dumps``
and then awaits ``write_message`` for each subscriber in turn, one frame per event, so the cost of
an event grows with the number of subscribers and a slow client holds everyone up.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import tornado.web
import tornado.websocket

from bench.peers import common

log = logging.getLogger("bench.peer.seed")


class WebSocketManager:
    """Connections, subscriptions and broadcast together, as in the seed."""

    def __init__(self) -> None:
        self.connections: set[EventSocket] = set()
        self.offsets = common.Offsets()

    async def broadcast(self, event: dict[str, Any]) -> None:
        for channel in common.route(event):
            message = json.dumps(self.offsets.envelope(channel, event), separators=(",", ":"))
            for handler in list(self.connections):
                if channel not in handler.subscriptions:
                    continue
                try:
                    await handler.write_message(message)
                except tornado.websocket.WebSocketClosedError:
                    self.connections.discard(handler)


class EventSocket(tornado.websocket.WebSocketHandler):
    """One subscriber."""

    def initialize(self, manager: WebSocketManager, secret: str) -> None:
        self.manager = manager
        self.secret = secret
        self.subscriptions: set[str] = set()

    def open(self) -> None:
        try:
            claims = common.verify_bearer(self.request.headers.get("Authorization"), self.secret)
        except common.AuthError as exc:
            self.close(4001, str(exc))
            return
        self.manager.connections.add(self)
        self.write_message(json.dumps(common.welcome(claims), separators=(",", ":")))

    def on_message(self, message: str | bytes) -> None:
        reply = common.answer(message, self.subscriptions)
        self.write_message(json.dumps(reply, separators=(",", ":")))

    def on_close(self) -> None:
        self.manager.connections.discard(self)


async def main() -> None:
    args = common.parse_args(__doc__.splitlines()[0])
    manager = WebSocketManager()
    app = tornado.web.Application(
        [(r"/ws", EventSocket, {"manager": manager, "secret": args.secret})]
    )
    app.listen(args.port, args.host, backlog=1024)
    await common.serve_ingest(args.host, args.ingest_port, manager.broadcast)
    log.info("seed-style peer on %s:%d, ingest %d", args.host, args.port, args.ingest_port)
    await asyncio.Event().wait()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main())
