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
import shlex
import signal
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

from . import __version__
from .auth import HMAC_ALGORITHMS, mint
from .config import CHANNEL_NAME, MIN_SECRET_CHARS, ConfigError, Settings, load_file, validate
from .geo import packaged_data
from .tail import add_token_options, read_token

if TYPE_CHECKING:
    from .runner import Runner

EXIT_CONFIG = 2
# Every scope the server knows (docs/protocol.md, "Scopes"), besides channel:<name>.
SCOPES = ("channel:*", "alerts:ack", "events:sensitive", "admin", "ingest")
DEV_SCOPES = " ".join(SCOPES)

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
        help="development mode: websocket enabled, an HS secret (the configured one, else a "
        "throw-away one), TCP ingest on 127.0.0.1:1514 and country enrichment (with the geoip "
        "extra) unless configured; prints a ready token",
    )
    serve.add_argument("--demo", action="store_true", help="feed a synthetic honeypot stream")
    serve.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="processes serving the same ports, each a node of one feed; above 1 needs the "
        "Redis broker (default: server.workers)",
    )
    # A worker of a serve with several: its configuration comes on stdin (workers.py).
    serve.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    serve.add_argument(
        "--log-format", choices=("text", "json"), help="log format (default: server.log_format)"
    )
    serve.set_defaults(func=cmd_serve)

    token = sub.add_parser(
        "token",
        help="mint an HS token from the configured secret (dev)",
        description="Print a JWT signed with the HS secret of --config (or --secret), refused "
        "here when the server would refuse it: an algorithm outside the configuration's "
        "allowlist, an unknown scope or channel, a lifetime of 0 or less, a short secret.",
    )
    token.add_argument("--config", metavar="FILE", help="configuration holding the HS secret")
    token.add_argument(
        "--secret",
        help=f"HS secret, at least {MIN_SECRET_CHARS} characters (default: "
        "websocket.auth.jwt.secret of --config)",
    )
    token.add_argument("--sub", required=True, help="subject (sub claim)")
    token.add_argument(
        "--scope",
        default="channel:*",
        help='space-separated scopes (default "channel:*"): channel:NAME, ' + ", ".join(SCOPES),
    )
    token.add_argument(
        "--ttl", type=float, default=3600, help="lifetime in seconds, above 0 (default 3600)"
    )
    token.add_argument(
        "--alg",
        choices=sorted(HMAC_ALGORITHMS),
        help="signing algorithm (default: the first HS one websocket.auth.jwt.algorithms "
        "of --config allows, else HS256)",
    )
    token.set_defaults(func=cmd_token)

    check = sub.add_parser(
        "check-config",
        help="validate a configuration file and exit",
        description="Validate FILE as serve and the plugin do (exit 0 when it would start, 2 "
        "with the key and the reason when not); warnings go to stderr.",
    )
    check.add_argument("file", metavar="FILE", help="JSON configuration of dotted keys")
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
    add_token_options(revoke)
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
    """Mint, refusing what the server would refuse (exit 2 with the reason)."""
    settings = validate(_load(args.config)) if args.config else None
    secret = args.secret
    if secret is None and settings is not None:
        secret = settings.websocket.jwt.secret
    if not secret:
        raise ConfigError(
            "websocket.auth.jwt.secret", "no HS secret configured (use --config or --secret)"
        )
    try:
        algorithm = token_algorithm(args.alg, settings.websocket.jwt.algorithms if settings else ())
        channels = settings.websocket.node.channels if settings else None
        check_scopes(args.scope.split(), channels)
        if not args.ttl > 0:
            raise ValueError(f"--ttl must be above 0 seconds (got {args.ttl:g})")
        if len(secret) < MIN_SECRET_CHARS:
            raise ValueError(f"the secret must be at least {MIN_SECRET_CHARS} characters")
        print(mint(secret, args.sub, args.scope, args.ttl, algorithm=algorithm))
    except ValueError as exc:
        print(f"netsentinel-websocket token: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


def token_algorithm(asked: str | None, allowed: Sequence[str]) -> str:
    """The HS algorithm to sign with: ``asked`` if the allowlist (when known) takes it, else
    the allowlist's first HS one; ValueError when the server would refuse the token."""
    hs = [alg for alg in allowed if alg in HMAC_ALGORITHMS]
    if allowed and not hs:
        raise ValueError(
            f"websocket.auth.jwt.algorithms ({', '.join(allowed)}) allows no HS algorithm: "
            "the server would refuse any token signed with the secret"
        )
    if asked is None:
        return hs[0] if hs else "HS256"
    if allowed and asked not in allowed:
        raise ValueError(
            f"--alg {asked} is not in websocket.auth.jwt.algorithms ({', '.join(allowed)}): "
            "the server would refuse the token"
        )
    return asked


def check_scopes(scopes: Sequence[str], channels: Sequence[str] | None) -> None:
    """ValueError for a scope the server does not know (``chanel:*``), a bad channel name,
    or a channel the configuration (when known) does not declare."""
    if not scopes:
        raise ValueError("--scope names no scope")
    for scope in scopes:
        if scope in SCOPES:
            continue
        kind, _, name = scope.partition(":")
        if kind != "channel":
            raise ValueError(f"unknown scope {scope!r} (known: channel:NAME, {', '.join(SCOPES)})")
        if not CHANNEL_NAME.fullmatch(name):
            raise ValueError(f"bad channel name in scope {scope!r}")
        if channels is not None and name not in channels:
            raise ValueError(
                f"scope {scope!r}: channel {name!r} is not in websocket.channels "
                f"({', '.join(channels)})"
            )


def cmd_revoke(args: argparse.Namespace) -> int:
    """One call of the admin API; prints its JSON answer (control characters escaped)."""
    try:
        token = read_token(args)
    except ValueError as exc:
        print(f"netsentinel-websocket revoke: {exc}", file=sys.stderr)
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


@dataclass(frozen=True)
class DevMode:
    """What ``serve --dev`` added to the configuration, and the token it prints."""

    config: dict[str, Any]
    token: str
    algorithm: str
    generated: bool  # a throw-away secret (none was configured)


def dev_mode(config: dict[str, Any]) -> DevMode:
    """``--dev`` fills in only what is missing: the plugin enabled, TCP ingest on
    127.0.0.1:1514, country enrichment when the ``geoip`` extra's data file is installed (so
    the dashboard's map has something to show), an HS secret (a configured one is kept, so
    tokens from ``token --config`` keep working), an HS algorithm in the allowlist, and a
    dashboard token."""
    config = {**config, "websocket.enabled": True}
    config.setdefault("websocket.ingest.tcp", "127.0.0.1:1514")
    if packaged_data() is not None:
        config.setdefault("websocket.geoip.enabled", True)
    jwt = validate(config).websocket.jwt
    secret = jwt.secret or secrets.token_urlsafe(32)
    if jwt.secret is None:
        config["websocket.auth.jwt.secret"] = secret
    hs = [alg for alg in jwt.algorithms if alg in HMAC_ALGORITHMS]
    if not hs:
        config["websocket.auth.jwt.algorithms"] = [*jwt.algorithms, "HS256"]
    algorithm = hs[0] if hs else "HS256"
    token = mint(secret, "dev", DEV_SCOPES, 12 * 3600, algorithm=algorithm)
    config["websocket.dashboard.token"] = token
    return DevMode(config, token, algorithm, generated=jwt.secret is None)


def cmd_serve(args: argparse.Namespace) -> int:
    from .logs import setup_logging
    from .workers import read_config, tag_logs, worker_config

    worker = args.worker_index
    config = _load(args.config) if worker is None else read_config(sys.stdin.buffer)
    if args.workers is not None:
        config["server.workers"] = args.workers
    dev = dev_mode(config) if args.dev and worker is None else None
    if dev is not None:
        config = dev.config
    settings = validate(config)
    log_format = args.log_format or settings.server.log_format
    setup_logging(log_format)
    if not settings.websocket.enabled:
        raise ConfigError("websocket.enabled", "is false: nothing to serve (or use --dev)")
    if worker is None and settings.server.workers > 1:
        return _supervise(config, settings, args, log_format, dev)
    from .runner import Runner  # not in the parent of several workers: it serves nothing

    if worker is not None:
        tag_logs(worker, log_format)
        config = worker_config(config, worker)
    # its plugin logs the configuration's warnings
    runner = Runner(config, demo=args.demo, worker=worker)
    # The runner owns its process, so it may tune the collector (a host embedding the plugin
    # keeps its own settings): see docs/performance.md.
    gc.set_threshold(settings.server.gc_threshold, *gc.get_threshold()[1:])
    log.info("garbage collector thresholds %s", gc.get_threshold())
    return asyncio.run(_serve(runner, dev, worker is not None))


async def _serve(runner: Runner, dev: DevMode | None, worker: bool) -> int:
    """One process serving until SIGTERM/SIGINT (``worker``: one of several, which also stops
    when its supervisor goes and stops together with the others)."""
    from .workers import WorkerLink

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    link = WorkerLink(stop) if worker else None
    if link is not None:
        await link.start()
    await runner.start()
    token_file = None
    try:
        if link is None:
            token_file = _announce(runner.settings, runner.port, runner.ingest_port, dev)
        print(f"READY {runner.port} {runner.ingest_port or 0}", flush=True)
        await stop.wait()
        log.info("shutting down")
        await runner.stop(link.barrier if link is not None else None)
    finally:
        if token_file is not None:
            os.unlink(token_file)
        if link is not None:
            await link.close()
    return 0


def _announce(
    settings: Settings, port: int | None, ingest_port: int | None, dev: DevMode | None
) -> str | None:
    """Log where it serves and, with ``--dev``, print the banner; the dev token's file, which
    the caller removes when it stops."""
    server, path = settings.server, settings.websocket.http.path
    scheme = "https" if server.tls else "http"
    host = server.bind if server.bind not in ("", "0.0.0.0", "::") else "127.0.0.1"
    base = f"{scheme}://{host}:{port}"
    ws = base.replace("http", "ws", 1) + path
    log.info("serving on %s (websocket %s)", base, ws)
    if server.ingest_tcp is not None:
        log.info("TCP ingest on %s:%d", server.ingest_tcp.host, ingest_port)
    if dev is None:
        return None
    token_file = _write_token_file(dev.token)
    _print_dev_banner(base, ws, path, dev, token_file)
    return token_file


def _supervise(
    config: dict[str, Any],
    settings: Settings,
    args: argparse.Namespace,
    log_format: str,
    dev: DevMode | None,
) -> int:
    """``server.workers`` processes on the same ports (docs/scaling.md, "Several workers on one
    host"): hold the ports, start the workers, print READY once all serve, stop them as one."""
    from .workers import host_port, reserve

    server = settings.server
    held = reserve("server.port", server.bind, server.port)
    try:
        port, ingest_port = held[0].getsockname()[1], 0
        config = {**config, "server.port": port}
        if server.ingest_tcp is not None:
            tcp = server.ingest_tcp
            held += reserve("websocket.ingest.tcp", tcp.host, tcp.port)
            ingest_port = held[-1].getsockname()[1]
            config["websocket.ingest.tcp"] = host_port(tcp.host, ingest_port)
        return _run_workers(config, settings, args, log_format, dev, (port, ingest_port))
    finally:
        for sock in held:
            sock.close()


def _run_workers(
    config: dict[str, Any],
    settings: Settings,
    args: argparse.Namespace,
    log_format: str,
    dev: DevMode | None,
    ports: tuple[int, int],
) -> int:
    """The parent's life once the ports are held (``config`` names them)."""
    from .workers import Supervisor

    server = settings.server

    def argv(index: int) -> list[str]:
        demo = ["--demo"] if args.demo and index == 0 else []  # one synthetic feed, not N
        own = ["serve", "--worker-index", str(index), "--log-format", log_format, *demo]
        return [*own_command(), *own]

    supervisor = Supervisor(argv, config, server.workers, settings.websocket.node.shutdown_grace)
    token_file: list[str] = []

    def ready() -> None:
        found = _announce(settings, *ports, dev)
        token_file.extend([found] if found else [])
        log.info("%d workers serving (pids %s)", server.workers, supervisor.pids)
        print(f"READY {ports[0]} {ports[1]}", flush=True)

    async def run() -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, supervisor.stop)
        return await supervisor.run(ready)

    try:
        return asyncio.run(run())
    finally:
        for path in token_file:
            os.unlink(path)


def _write_token_file(token: str) -> str:
    """The dev token in a file only its owner reads (mkstemp: 0600), for ``tail --token-file``:
    a token on a command line is visible to every user in the process list."""
    fd, path = tempfile.mkstemp(prefix="netsentinel-dev-token-", suffix=".jwt")
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(token + "\n")
    return path


def own_command() -> list[str]:
    """This program as a command that works without an activated venv: the console script
    by its absolute path, or this interpreter with ``-m``."""
    script = os.path.abspath(sys.argv[0])
    if os.path.basename(script) == "netsentinel-websocket" and os.access(script, os.X_OK):
        return [script]
    return [sys.executable, "-m", "netsentinel_websocket"]


def _print_dev_banner(base: str, ws: str, path: str, dev: DevMode, token_file: str) -> None:
    bar = "!" * 78
    if dev.generated:
        secret = f"a throw-away {dev.algorithm} secret was generated: tokens die with the process"
    else:
        secret = f"tokens are signed ({dev.algorithm}) with the configured secret"
    tail = [*own_command(), "tail", ws, "--token-file", token_file, "--channel", "events"]
    print(
        f"{bar}\n"
        f"!! DEVELOPMENT MODE: {secret}.\n"
        "!! Never use --dev on a shared or exposed server.\n"
        f"{bar}\n"
        f"WebSocket: {ws}\n"
        f"Dashboard: {base}{'' if path == '/' else path}/dashboard\n"
        f"Token (sub=dev, scope={DEV_SCOPES!r}, 12 h), also in {token_file} until the server "
        f"stops:\n{dev.token}\n"
        f"Try: {shlex.join(tail)}\n",
        flush=True,
    )
