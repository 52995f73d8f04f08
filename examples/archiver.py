"""Archive a channel to a JSON-lines file, exactly once, across restarts of either side.

    export NETSENTINEL_TOKEN=...
    python examples/archiver.py ws://127.0.0.1:8082/ws events archive.jsonl

Each line is the wire message (``{"type":"event","channel",...,"epoch","offset","event"}``, or
``{"type":"gap",...}`` where events were lost). On start the archiver reads where the file
ends and resumes from there with ``since``, so stopping it, or a crash, loses nothing the
server's history still holds and writes nothing twice: the file itself is the checkpoint.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from netsentinel_websocket.client import Client, Position


def drop_torn_line(path: Path) -> None:
    """A crash in the middle of a write leaves half a line: cut it, the resume rewrites it."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as archive:
            archive.truncate(data.rfind(b"\n") + 1)


def last_positions(path: Path) -> dict[str, Position]:
    """Each channel's last archived position (a gap line moves it to where delivery resumed)."""
    positions: dict[str, Position] = {}
    if not path.exists():
        return positions
    drop_torn_line(path)
    with path.open(encoding="utf-8") as archive:
        for line in archive:
            msg = json.loads(line)
            if msg.get("type") == "event":
                positions[msg["channel"]] = Position(msg["epoch"], msg["offset"])
            elif msg.get("type") == "gap":
                resumed = msg["resumed"]
                positions[msg["channel"]] = Position(resumed["epoch"], resumed["offset"])
    return positions


async def archive(url: str, channel: str, path: Path) -> None:
    since = {c: p for c, p in last_positions(path).items() if c == channel}
    client = Client(url, token=os.environ["NETSENTINEL_TOKEN"], channels=[channel], since=since)
    async with client:
        with path.open("a", encoding="utf-8") as out:
            async for item in client:
                out.write(json.dumps(item.as_message(), separators=(",", ":")) + "\n")
                out.flush()  # the file is the checkpoint: what is written counts as received


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: archiver.py WS_URL CHANNEL FILE")
    try:
        asyncio.run(archive(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
    except KeyboardInterrupt:
        pass
