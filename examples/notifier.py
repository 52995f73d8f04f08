"""Post critical threats to a chat channel (Slack-style incoming webhook), or print them.

    export NETSENTINEL_TOKEN=$(netsentinel-websocket token --config conf.json --sub notifier \
        --scope "channel:threats")
    export SLACK_WEBHOOK_URL=https://hooks.slack.com/services/...   # optional
    python examples/notifier.py ws://127.0.0.1:8082/ws

Without SLACK_WEBHOOK_URL it prints the messages it would post. The client reconnects and
resumes by itself; a gap (events lost while the server restarted) is posted too, because a
silent hole in a security feed is worse than a noisy one.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from netsentinel_websocket.client import Client, Event, Gap


def chat_message(item: Event | Gap) -> dict[str, str]:
    """The webhook body: Slack's ``{"text": ...}`` (Mattermost and Teams accept it too)."""
    if isinstance(item, Gap):
        return {"text": f":warning: NetSentinel feed gap on #{item.channel}: events were lost"}
    data = item.data
    source = data.get("src_ip") or data.get("src_host") or "unknown source"
    target = f" -> {data['dst_host']}:{data.get('dst_port', '?')}" if "dst_host" in data else ""
    return {
        "text": f":rotating_light: *{item.severity.upper()}* `{item.event_type}` "
        f"from {source}{target} (sensor {item.event.get('source', '?')})"
    }


async def post(webhook: str | None, body: dict[str, str]) -> None:
    if webhook is None:
        print(json.dumps(body), flush=True)
        return
    try:
        await AsyncHTTPClient().fetch(
            webhook,
            method="POST",
            body=json.dumps(body),
            headers={"Content-Type": "application/json"},
        )
    except (HTTPClientError, OSError) as exc:  # the chat being down must not stop the feed
        print(f"notifier: webhook failed: {exc}", file=sys.stderr)


async def main(url: str) -> None:
    webhook = os.environ.get("SLACK_WEBHOOK_URL")
    client = Client(
        url,
        token=os.environ["NETSENTINEL_TOKEN"],
        channels=["threats"],
        filter={"min_severity": "critical"},
    )
    async with client:
        async for item in client:
            await post(webhook, chat_message(item))


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8082/ws"))
    except KeyboardInterrupt:
        pass
