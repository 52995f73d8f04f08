"""What both reference servers share: token check, routing, protocol messages and the ingest.

Kept identical for both peers so that the comparison measures only the fan-out design.
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import jwt

log = logging.getLogger("bench.peer")

#: The project's default routing table (contract section 4), first match per channel.
DEFAULT_RULES: tuple[tuple[str, str], ...] = (
    ("threat.*", "threats"),
    ("alert.*", "alerts"),
    ("status.*", "status"),
    ("system.*", "status"),
    ("metrics.*", "metrics"),
    ("network.*", "network"),
    ("packet.*", "packets"),
    ("ml.*", "ml"),
    ("honeypot.*", "events"),
)
CHANNELS: tuple[str, ...] = (
    "threats",
    "alerts",
    "status",
    "metrics",
    "events",
    "network",
    "packets",
    "ml",
)
SEVERE = frozenset({"high", "critical"})
NODE_ID = "bench-peer"


class AuthError(Exception):
    """A token that must not open a session; the message is the close reason."""


def parse_args(description: str) -> argparse.Namespace:
    """Both peers take the same flags so the bench starts them the same way."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ingest-port", type=int, required=True)
    parser.add_argument("--secret", required=True)
    return parser.parse_args()


def verify_bearer(header: str | None, secret: str) -> dict[str, Any]:
    """Check an ``Authorization: Bearer`` value as the project does (HS256, exp and sub)."""
    if not header or not header.startswith("Bearer "):
        raise AuthError("missing token")
    try:
        return jwt.decode(
            header[7:], secret, algorithms=["HS256"], options={"require": ["exp", "sub"]}
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("token expired") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthError("invalid token") from exc


def route(event: dict[str, Any]) -> list[str]:
    """Channels an event goes to under the project's default rules."""
    event_type = str(event.get("event_type", ""))
    channels = []
    for pattern, channel in DEFAULT_RULES:
        if channel not in channels and fnmatch.fnmatchcase(event_type, pattern):
            channels.append(channel)
    if event.get("severity") in SEVERE and "threats" not in channels:
        channels.append("threats")
    return channels


def welcome(claims: dict[str, Any]) -> dict[str, Any]:
    """The first message of a session."""
    return {
        "type": "welcome",
        "protocol": 1,
        "connection_id": uuid.uuid4().hex,
        "node_id": NODE_ID,
        "server_time": time.time(),
        "channels": list(CHANNELS),
        "expires_at": claims["exp"],
    }


def answer(message: str | bytes, subscriptions: set[str]) -> dict[str, Any]:
    """Reply to one client message, updating the connection's subscriptions."""
    try:
        request = json.loads(message)
    except ValueError:
        return {"type": "error", "id": None, "code": "bad_request", "message": "not JSON"}
    kind, rid = request.get("type"), request.get("id")
    if kind == "subscribe":
        wanted = [c for c in request.get("channels", []) if c in CHANNELS]
        subscriptions.update(wanted)
        return {
            "type": "subscribed",
            "id": rid,
            "channels": wanted,
            "positions": {},
            "recovered": {},
        }
    if kind == "unsubscribe":
        gone = [c for c in request.get("channels", []) if c in subscriptions]
        subscriptions.difference_update(gone)
        return {"type": "unsubscribed", "id": rid, "channels": gone}
    if kind == "ping":
        return {"type": "pong", "id": rid, "server_time": time.time()}
    return {"type": "error", "id": rid, "code": "unknown_type", "message": str(kind)}


class Offsets:
    """Per-channel offsets within one epoch, as the project's memory broker assigns them."""

    def __init__(self) -> None:
        self.epoch = uuid.uuid4().hex[:8]
        self._next: dict[str, int] = {}

    def envelope(self, channel: str, event: dict[str, Any]) -> dict[str, Any]:
        offset = self._next.get(channel, 0) + 1
        self._next[channel] = offset
        return {
            "type": "event",
            "channel": channel,
            "epoch": self.epoch,
            "offset": offset,
            "event": event,
        }


async def serve_ingest(
    host: str, port: int, handle: Callable[[dict[str, Any]], Awaitable[None]]
) -> asyncio.Server:
    """JSON-lines TCP listener; each line is awaited through ``handle`` before the next."""

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    event = json.loads(line)
                except ValueError:
                    log.warning("malformed ingest line dropped")
                    continue
                if isinstance(event, dict):
                    await handle(event)
        finally:
            writer.close()

    return await asyncio.start_server(client, host, port, limit=1 << 20)
