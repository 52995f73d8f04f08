"""The ``netsentinel-websocket`` command: ``serve``, ``token``, ``tail``, ``check-config``,
``revoke``.

Exit codes: 0 success, 1 runtime failure, 2 bad configuration or usage (with a message naming
the key, never a traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import secrets
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

from . import __version__
from .auth import HMAC_ALGORITHMS, mint
from .config import ConfigError, load_file, validate
from .tail import TOKEN_ENV

if TYPE_CHECKING:
    from .runner import Runner

EXIT_CONFIG = 2
DEV_SCOPES = "channel:* alerts:ack events:sensitive admin ingest"

log = logging.getLogger("netsentinel_websocket.cli")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"netsentinel-websocket: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"netsentinel-websocket: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netsentinel-websocket",
        description="Real-time WebSocket feed of NetSentinel / OpenCanary events.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the standalone host (plugin, ingest, web server)")
    serve.add_argument("--config", metavar="FILE", help="JSON configuration of dotted keys")
    serve.add_argument(
        "--dev",
        action="store_true",
        help="development mode: throw-away secret, websocket enabled, TCP ingest on "
        "127.0.0.1:1514 unless configured; prints a ready token",
    )
    serve.add_argument("--demo", action="store_true", help="feed a synthetic honeypot stream")
    serve.add_argument(
        "--log-format", choices=("text", "json"), help="log format (default: server.log_format)"
    )
    serve.set_defaults(func=cmd_serve)

    token = sub.add_parser("token", help="mint an HS token from the configured secret (dev)")
    token.add_argument("--config", metavar="FILE", help="configuration holding the HS secret")
    token.add_argument("--secret", help="HS secret (default: websocket.auth.jwt.secret)")
    token.add_argument("--sub", required=True, help="subject (sub claim)")
    token.add_argument(
        "--scope", default="channel:*", help='space-separated scopes (default "channel:*")'
    )
    token.add_argument("--ttl", type=float, default=3600, help="lifetime in seconds (default 3600)")
    token.add_argument("--alg", default="HS256", choices=sorted(HMAC_ALGORITHMS))
    token.set_defaults(func=cmd_token)

    check = sub.add_parser("check-config", help="validate a configuration file and exit")
    check.add_argument("file", metavar="FILE")
    check.set_defaults(func=cmd_check_config)

    revoke = sub.add_parser(
        "revoke",
        help="revoke tokens on every node, list or lift revocations (admin API)",
        description="Revoke a subject's tokens issued until now, or one token by its jti: "
        "its live connections are closed with 4003 on every node and new ones refused. "
        "Needs a token with the admin scope.",
    )
    revoke.add_argument(
        "--url",
        required=True,
        help="the server: http(s)://host:port, or its WebSocket URL ws(s)://host:port/ws",
    )
    revoke.add_argument("--token", help=f"admin token (default: ${TOKEN_ENV})")
    what = revoke.add_mutually_exclusive_group(required=True)
    what.add_argument("--sub", help="revoke the subject's tokens issued before now")
    what.add_argument("--jti", help="revoke the one token with this jti claim")
    what.add_argument("--list", action="store_true", help="list the revocations in force")
    what.add_argument("--lift", metavar="ID", help="lift the revocation with this id")
    revoke.add_argument("--reason", default="", help="why (kept with the revocation)")
    revoke.add_argument(
        "--exp", type=float, help="with --jti: the token's exp (the revocation ends with it)"
    )
    revoke.set_defaults(func=cmd_revoke)

    from .tail import add_parser as add_tail

    add_tail(sub)
    return parser


def _load(path: str | None) -> dict[str, Any]:
    return load_file(path) if path else {}


def cmd_check_config(args: argparse.Namespace) -> int:
    """The validation ``serve`` and the plugin run, so a file that passes here starts."""
    settings = validate(load_file(args.file))
    for warning in settings.warnings:
        print(f"netsentinel-websocket: warning: {warning}", file=sys.stderr)
    state = "enabled" if settings.websocket.enabled else "disabled"
    jwt = settings.websocket.jwt
    configured = any((jwt.secret, jwt.public_key, jwt.jwks_url))
    auth = "configured" if configured else "NOT configured: every connection is refused"
    print(f"{args.file}: OK (websocket {state}; authentication {auth})")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    secret = args.secret
    if secret is None:
        secret = validate(_load(args.config)).websocket.jwt.secret
    if not secret:
        raise ConfigError(
            "websocket.auth.jwt.secret", "no HS secret configured (use --config or --secret)"
        )
    try:
        print(mint(secret, args.sub, args.scope, args.ttl, algorithm=args.alg))
    except ValueError as exc:
        print(f"netsentinel-websocket token: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    """One call of the admin API; prints its JSON answer (control characters escaped)."""
    token = args.token or os.environ.get(TOKEN_ENV)
    if not token:
        print(f"netsentinel-websocket revoke: no token (--token or ${TOKEN_ENV})", file=sys.stderr)
        return EXIT_CONFIG
    admin = _admin_url(args.url)
    if admin is None:
        print(
            f"netsentinel-websocket revoke: not an http(s) or ws(s) URL: {args.url!r}",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    body: dict[str, Any] | None = None
    if args.list:
        method, path = "GET", "/revocations"
    elif args.lift:
        method, path = "DELETE", "/revocations/" + quote(args.lift, safe="")
    else:
        method, path = "POST", "/revoke"
        body = {"sub": args.sub} if args.sub else {"jti": args.jti}
        if args.reason:
            body["reason"] = args.reason
        if args.exp is not None:
            body["exp"] = args.exp
    request = urllib.request.Request(
        admin + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            print(json.dumps(json.loads(response.read()), indent=2))
            return 0
    except urllib.error.HTTPError as exc:
        answer = exc.read().decode("utf-8", "replace")
        print(
            f"netsentinel-websocket revoke: HTTP {exc.code}: {json.dumps(answer)}", file=sys.stderr
        )
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"netsentinel-websocket revoke: {json.dumps(str(exc))}", file=sys.stderr)
    return 1


def _admin_url(url: str) -> str | None:
    """The admin API's base from the server's address (path ``/ws`` unless one is given)."""
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    if scheme not in ("http", "https") or not parts.netloc:
        return None
    path = parts.path.rstrip("/") or "/ws"
    return urlunsplit((scheme, parts.netloc, path + "/admin", "", ""))


def cmd_serve(args: argparse.Namespace) -> int:
    from .logs import setup_logging
    from .runner import Runner

    config = _load(args.config)
    dev_token = None
    if args.dev:
        secret = secrets.token_urlsafe(32)
        config = {
            **config,
            "websocket.enabled": True,
            "websocket.auth.jwt.algorithms": ["HS256"],
            "websocket.auth.jwt.secret": secret,
        }
        config.setdefault("websocket.ingest.tcp", "127.0.0.1:1514")
        dev_token = mint(secret, "dev", DEV_SCOPES, 12 * 3600)
        config["websocket.dashboard.token"] = dev_token
    settings = validate(config)
    setup_logging(args.log_format or settings.server.log_format)
    if not settings.websocket.enabled:
        raise ConfigError("websocket.enabled", "is false: nothing to serve (or use --dev)")
    runner = Runner(config, demo=args.demo)  # its plugin logs the configuration's warnings
    # The runner owns its process, so it may tune the collector (a host embedding the plugin
    # keeps its own settings): see docs/performance.md.
    gc.set_threshold(settings.server.gc_threshold, *gc.get_threshold()[1:])
    log.info("garbage collector thresholds %s", gc.get_threshold())
    return asyncio.run(_serve(runner, dev_token))


async def _serve(runner: Runner, dev_token: str | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await runner.start()
    server, path = runner.settings.server, runner.settings.websocket.http.path
    scheme = "https" if server.tls else "http"
    host = server.bind if server.bind not in ("", "0.0.0.0", "::") else "127.0.0.1"
    base = f"{scheme}://{host}:{runner.port}"
    ws = base.replace("http", "ws", 1) + path
    log.info("serving on %s (websocket %s)", base, ws)
    if server.ingest_tcp is not None:
        log.info("TCP ingest on %s:%d", server.ingest_tcp.host, runner.ingest_port)
    if dev_token is not None:
        _print_dev_banner(base, ws, path, dev_token)
    print(f"READY {runner.port} {runner.ingest_port or 0}", flush=True)
    await stop.wait()
    log.info("shutting down")
    await runner.stop()
    return 0


def _print_dev_banner(base: str, ws: str, path: str, token: str) -> None:
    bar = "!" * 78
    print(
        f"{bar}\n"
        "!! DEVELOPMENT MODE: a throw-away HS256 secret was generated for this run.\n"
        "!! Tokens die with the process. Never use --dev on a shared or exposed server.\n"
        f"{bar}\n"
        f"WebSocket: {ws}\n"
        f"Dashboard: {base}{'' if path == '/' else path}/dashboard\n"
        f"Token (sub=dev, scope={DEV_SCOPES!r}, 12 h):\n{token}\n"
        f"Try: netsentinel-websocket tail {ws} --token <token> --channel events\n",
        flush=True,
    )
