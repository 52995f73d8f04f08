"""``netsentinel-websocket tail``: live events on a terminal or as JSON lines, until Ctrl-C.

Built on :mod:`netsentinel_websocket.client`, so it reconnects and resumes by itself; it says
so in one line on stderr, and says when events were lost (a ``gap``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import orjson

from .client import (
    AuthenticationError,
    Client,
    ClientError,
    Event,
    Gap,
    Reconnect,
    SubscriptionError,
)
from .events import SEVERITIES
from .terminal import json_line, printable

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
TOKEN_ENV = "NETSENTINEL_TOKEN"
PROG = "netsentinel-websocket tail"
COLOURS = {
    "critical": "\033[1;97;41m",  # bold white on red
    "high": "\033[1;31m",
    "medium": "\033[33m",
    "low": "\033[36m",
    "info": "\033[2m",
}
RESET = "\033[0m"
SUMMARY_CHARS = 100
# Shown elsewhere on the line, or noise to a reader.
ROUTINE_FIELDS = frozenset(
    {"src_ip", "src_host", "src_port", "dst_host", "dst_port", "service", "logtype", "logdata"}
)
# An event's own message is prose: its line breaks are layout, folded into one space.
PROSE_BREAKS = re.compile(r"[ \t\r\n]+")

EPILOG = f"""\
The token comes from --token, or better (it stays out of the process list) from a file
(--token-file: its first line) or the {TOKEN_ENV} environment variable.

The address may be ws(s)://, http(s):// (the same server) or host:port; without a path,
/ws is used.

Output: one line per event (UTC time, severity, event type, source address, summary);
severities are coloured when stdout is a terminal and NO_COLOR is not set. With --json, one
JSON message per line as the server sent it ({{"type":"event","channel",...,"event":{{...}}}}),
and {{"type":"gap",...}} lines where events were lost.

Event content never controls the terminal: control and format characters (escape sequences,
C1 controls, bidi overrides, zero-width characters, line breaks) are printed as backslash
escapes such as \\x1b, \\n or \\u202e, and a backslash as \\\\. In --json output they are
\\u escapes (the JSON parses to the same value).

Connection losses (server restart, network, slow consumer) are retried with back-off and the
stream resumes where it stopped, with one notice on stderr.

Exit codes:
  0  stopped with Ctrl-C (or SIGTERM); any close from the server, 1000 included, is retried
  1  connection failure that retrying cannot fix (HTTP 403/404 at the handshake, ...)
  2  usage error (bad option, no token, bad --filter, unknown channel)
  3  authentication refused (invalid or expired token: 4001/4004) or channel not allowed
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "tail",
        help="print live events (reconnects and resumes by itself)",
        description="Print live events from a netsentinel-websocket endpoint.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "url", help="the server: ws://127.0.0.1:8082/ws, http://127.0.0.1:8082 or 127.0.0.1:8082"
    )
    add_token_options(p)
    p.add_argument(
        "--channel",
        action="append",
        required=True,
        metavar="NAME",
        help="channel to follow (repeat for several)",
    )
    p.add_argument(
        "--filter", metavar="JSON", help='subscription filter, e.g. \'{"tags":["ssh"]}\''
    )
    p.add_argument("--min-severity", choices=SEVERITIES, help="only this severity and above")
    p.add_argument(
        "--event-type", action="append", metavar="GLOB", help="event_type glob (repeatable)"
    )
    p.add_argument(
        "--src-ip", action="append", metavar="CIDR", help="source address range (repeatable)"
    )
    p.add_argument("--tag", action="append", metavar="TAG", help="any of these tags (repeatable)")
    p.add_argument("--json", action="store_true", help="print raw JSON messages, one per line")
    p.set_defaults(func=cmd_tail)


def add_token_options(parser: argparse.ArgumentParser) -> None:
    """``--token`` and ``--token-file`` (``tail`` and ``revoke``), read by :func:`read_token`."""
    parser.add_argument(
        "--token", help=f"JWT (visible in the process list: prefer --token-file or ${TOKEN_ENV})"
    )
    parser.add_argument(
        "--token-file", metavar="FILE", help=f"file holding the JWT (default: ${TOKEN_ENV})"
    )


def read_token(args: argparse.Namespace) -> str:
    """The token from --token, --token-file (first line) or the environment; ValueError with
    the reason when there is none (never the token itself)."""
    token = args.token
    if token is None and args.token_file is not None:
        try:
            with open(args.token_file, encoding="utf-8") as fh:
                token = fh.readline(16 * 1024).strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read --token-file {args.token_file}: {exc}") from None
    token = token or os.environ.get(TOKEN_ENV)
    if not token:
        raise ValueError(f"no token: use --token-file, --token or set {TOKEN_ENV}")
    return token


def websocket_url(url: str) -> str:
    """The WebSocket address a user meant: ``http(s)://`` becomes ``ws(s)://``, a bare
    ``host:port`` gets ``ws://``, an empty path ``/ws``; ValueError for anything else."""
    parts = urlsplit(url if "://" in url else "ws://" + url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a ws(s)://, http(s):// or host:port address: {url!r}")
    try:
        parts.port  # noqa: B018  # raises on a port that is not a number
    except ValueError:
        raise ValueError(f"the port of {url!r} is not a number from 0 to 65535") from None
    return urlunsplit((scheme, parts.netloc, parts.path or "/ws", parts.query, ""))


def cmd_tail(args: argparse.Namespace) -> int:
    try:
        token = read_token(args)
        url = websocket_url(args.url)
        flt = build_filter(args)
    except ValueError as exc:
        return _usage(str(exc))
    _log_to_stderr()
    colour = not args.json and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    printer = Printer(sys.stdout, sys.stderr, json_lines=args.json, colour=colour)
    try:
        return asyncio.run(_tail(url, token, args.channel, flt, printer))
    except KeyboardInterrupt:  # where signal handlers cannot be installed
        return EXIT_OK


def build_filter(args: argparse.Namespace) -> dict[str, Any] | None:
    """The subscription filter from --filter JSON or the individual options (not both)."""
    parts: dict[str, Any] = {
        "min_severity": args.min_severity,
        "event_types": args.event_type,
        "src_ip": args.src_ip,
        "tags": args.tag,
    }
    parts = {k: v for k, v in parts.items() if v}
    if args.filter is None:
        return parts or None
    if parts:
        raise ValueError("use --filter or the individual filter options, not both")
    try:
        flt = json.loads(args.filter)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--filter is not valid JSON: {exc.msg}") from None
    if not isinstance(flt, dict):
        raise ValueError("--filter must be a JSON object")
    return flt


async def _tail(
    url: str, token: str, channels: list[str], flt: dict[str, Any] | None, printer: Printer
) -> int:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, task.cancel)
        except (NotImplementedError, RuntimeError):
            pass
    client = Client(
        url, token=token, channels=channels, filter=flt, on_reconnect=printer.reconnecting
    )
    # before the first subscription, nothing is being resumed
    printer.connected = lambda: client.was_connected
    printer.multi_channel = len(client.channels) > 1
    try:
        async with client:
            async for item in client:
                printer.show(item)
    except asyncio.CancelledError:
        return EXIT_OK
    except AuthenticationError as exc:
        return _fail(EXIT_AUTH, str(exc))
    except SubscriptionError as exc:
        return _fail(EXIT_AUTH if exc.code == "forbidden" else EXIT_USAGE, str(exc))
    except ClientError as exc:
        return _fail(EXIT_FAILURE, str(exc))
    except BrokenPipeError:  # piped into head: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
    return EXIT_OK


class Printer:
    """Formats what the client yields: human lines or JSON lines, notices on stderr."""

    def __init__(self, out: TextIO, err: TextIO, *, json_lines: bool, colour: bool) -> None:
        self.out = out
        self.err = err
        self.json_lines = json_lines
        self.colour = colour
        self.multi_channel = False
        self.connected: Callable[[], bool] = lambda: True

    def show(self, item: Event | Gap) -> None:
        if self.json_lines:
            line = json_line(item.as_message())
        elif isinstance(item, Gap):
            self.notice(
                f"gap on channel {item.channel}: events after offset {item.since.offset} "
                f"were lost; resuming at offset {item.resumed.offset + 1}"
            )
            return
        else:
            line = self.format_event(item)
        self.out.write(line + "\n")
        self.out.flush()

    def format_event(self, item: Event) -> str:
        when = _utc(item.event.get("timestamp"))
        severity = item.severity or "-"
        name = printable(severity.upper())
        label = f"{name:<8}"
        if self.colour and severity in COLOURS:
            label = f"{COLOURS[severity]}{name}{RESET}{' ' * (8 - len(name))}"
        data = item.data
        source = data.get("src_ip") or data.get("src_host") or "-"
        channel = f"[{item.channel}] " if self.multi_channel else ""
        # Everything around the label comes from the server: escaped as a whole.
        content = f"{item.event_type} {source} {summary(data)}"
        return f"{printable(channel)}{when} {label} {printable(content)}".rstrip()

    def reconnecting(self, info: Reconnect) -> None:
        """One line per outage (its first retry), not one per attempt."""
        if info.attempt == 1:
            code = f"{info.code} " if info.code is not None else ""
            if self.connected():
                self.notice(f"disconnected ({code}{info.reason}); reconnecting and resuming")
            else:
                self.notice(f"cannot connect ({code}{info.reason}); retrying until it can")

    def notice(self, text: str) -> None:
        _say(text, self.err)


def summary(data: dict[str, Any]) -> str:
    """A short line for a human: the event's own message if it has one, else the target and
    the interesting fields (OpenCanary's ``logdata`` when present)."""
    for key in ("summary", "message", "description"):
        if isinstance(data.get(key), str):
            text = PROSE_BREAKS.sub(" ", data[key]).strip(" ")
            break
    else:
        parts = []
        if data.get("dst_host") or data.get("dst_port"):
            parts.append(f"-> {data.get('dst_host', '?')}:{data.get('dst_port', '?')}")
        logdata = data.get("logdata")
        fields = logdata if isinstance(logdata, dict) else data
        parts.extend(
            f"{str(k).lower()}={_short(v)}" for k, v in fields.items() if k not in ROUTINE_FIELDS
        )
        text = " ".join(parts)
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…"


def _utc(stamp: Any) -> str:
    """The event's time, or ``-``: a time no clock can show (1e300) must not stop tail."""
    if isinstance(stamp, (int, float)):
        try:
            return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))
        except (OverflowError, OSError, ValueError):
            pass
    return "-"


def _short(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return orjson.dumps(value, default=str).decode()
    return str(value)


def _usage(message: str) -> int:
    return _fail(EXIT_USAGE, message)


def _fail(code: int, message: str) -> int:
    _say(message, sys.stderr)
    return code


def _say(text: str, err: TextIO) -> None:
    """One line on stderr; ``text`` may quote the server (close reasons, error messages)."""
    err.write(f"{PROG}: {printable(text)}\n")
    err.flush()


class _InertFormatter(logging.Formatter):
    """The client's warnings quote the server too: one escaped line each, like notices."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{PROG}: {printable(super().format(record))}"


def _log_to_stderr() -> None:
    """Warnings (as Python would print them anyway) through the escaping, unless the host
    process has set up logging of its own."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_InertFormatter())
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
