"""Configuration: the key schema, ``${ENV}`` expansion, validation and typed settings.

NetSentinel's configuration is one JSON object of flat dotted keys (the OpenCanary style). The
plugin owns the ``websocket.*`` keys and the runner the ``server.*`` keys; every other key belongs
to somebody else and is left alone. :func:`validate` is the one validation path of
``check-config``, ``serve`` and the plugin: a value that would stop the server at start-up
becomes a :class:`ConfigError` naming the key, never a traceback deep inside the server. It
returns :class:`Settings`, whose typed, frozen sections are what the components take; the dotted
names appear nowhere else.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import ssl
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .auth import ALL_ALGORITHMS, HMAC_ALGORITHMS, JWTSettings, TokenVerifier
from .errors import ConfigError as ConfigError  # raised here, re-exported for callers
from .events import SEVERITIES
from .globs import GlobError, compile_globs
from .redact import DEFAULT_REDACT
from .session import SessionSettings

OWN_PREFIXES = ("websocket.", "server.")

# The shortest HS secret accepted: shorter ones are guessable offline from any one token.
MIN_SECRET_CHARS = 16
# What a channel may be called (websocket.channels, and channel:<name> scopes).
CHANNEL_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")

DEFAULT_CHANNELS = ("threats", "alerts", "status", "metrics", "events", "network", "packets", "ml")

DEFAULT_ROUTES: tuple[dict[str, Any], ...] = (
    {"channel": "threats", "event_types": ["threat.*"]},
    {"channel": "alerts", "event_types": ["alert.*"]},
    {"channel": "status", "event_types": ["status.*", "system.*"]},
    {"channel": "metrics", "event_types": ["metrics.*"]},
    {"channel": "network", "event_types": ["network.*"]},
    {"channel": "packets", "event_types": ["packet.*"]},
    {"channel": "ml", "event_types": ["ml.*"]},
    {"channel": "events", "event_types": ["honeypot.*"]},
    {"channel": "threats", "min_severity": "high"},
)

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# ``$NAME`` not followed by braces: OpenCanary and this plugin expand only ``${NAME}``.
_BARE_REF = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True, slots=True)
class ConfigWarning:
    """A value that works but is probably not what was meant (printed by ``check-config``,
    logged by the plugin)."""

    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


@dataclass(frozen=True)
class Key:
    """One configuration key: its type (for docs), default, check and meaning."""

    name: str
    type: str
    default: Any
    check: Callable[[str, Any], Any]
    doc: str
    secret: bool = False


# --- checks: each takes (key, value) and returns the value to keep or raises ConfigError ---


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, f"must be true or false (got {_show(value)})")
    return value


def _int(lo: int, hi: int) -> Callable[[str, Any], int]:
    def check(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"must be an integer (got {_show(value)})")
        if not lo <= value <= hi:
            raise ConfigError(key, f"must be between {lo} and {hi} (got {value})")
        return value

    check.bounds = (lo, hi)  # type: ignore[attr-defined]  # for the docs table
    return check


def _number(lo: float, hi: float) -> Callable[[str, Any], float]:
    def check(key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"must be a number (got {_show(value)})")
        if not lo <= value <= hi:
            raise ConfigError(key, f"must be between {lo} and {hi} (got {value})")
        return float(value)

    check.bounds = (lo, hi)  # type: ignore[attr-defined]  # for the docs table
    return check


def _string(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(key, f"must be a string (got {_show(value)})")
    return value


def _secret_string(key: str, value: Any) -> str:
    """Like a string, but a wrong value is never echoed: it may be the secret itself."""
    if not isinstance(value, str):
        raise ConfigError(key, f"must be a string (got a {_json_type(value)}; value not shown)")
    return value


def _json_type(value: Any) -> str:
    return {bool: "boolean", int: "number", float: "number", list: "list", dict: "object"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def _optional(check: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    def optional(key: str, value: Any) -> Any:
        if value is None or value == "":
            return None
        return check(key, value)

    return optional


def _str_list(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(key, f"must be a list of strings (got {_show(value)})")
    return tuple(value)


def _path(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/") or " " in value:
        raise ConfigError(key, f"must be a URL path starting with '/' (got {_show(value)})")
    return value.rstrip("/") or "/"


def _algorithms(key: str, value: Any) -> tuple[str, ...]:
    algs = _str_list(key, value)
    if not algs:
        raise ConfigError(key, "must name at least one algorithm")
    for alg in algs:
        if alg not in ALL_ALGORITHMS:
            raise ConfigError(
                key, f"unsupported algorithm {alg!r} (allowed: {_names(ALL_ALGORITHMS)})"
            )
    return algs


def _readable_file(key: str, value: Any) -> str:
    path = _string(key, value)
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise ConfigError(key, f"file not found or not readable: {path}")
    return path


def _http_url(key: str, value: Any) -> str:
    url = _string(key, value)
    if not url.startswith(("http://", "https://")):
        raise ConfigError(key, "must be an http:// or https:// URL")
    return url


def _host_port(key: str, value: Any) -> tuple[str, int]:
    text = _string(key, value)
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(key, f"must be 'host:port' (got {_show(value)})")
    return host.strip("[]"), int(port)


def _broker(key: str, value: Any) -> str:
    text = _string(key, value)
    if text == "memory":
        return text
    if not text.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(key, "must be 'memory' or a redis:// / rediss:// address")
    try:
        urlsplit(text).port  # noqa: B018  # raises on a port that is not a number
    except ValueError:
        raise ConfigError(key, "the port of the address is not a number from 0 to 65535") from None
    if not _redis_installed():
        raise ConfigError(
            key,
            "a redis:// broker needs the redis package: pip install 'netsentinel-websocket[redis]'",
        )
    return text


def _redis_installed() -> bool:
    """Whether the optional redis package imports (RedisBroker cannot run without it)."""
    try:
        import redis.asyncio  # noqa: F401
    except ImportError:
        return False
    return True


def _channels(key: str, value: Any) -> tuple[str, ...]:
    names = _str_list(key, value)
    for name in names:
        if not CHANNEL_NAME.fullmatch(name):
            raise ConfigError(key, f"bad channel name {name!r} (lowercase letters, digits, _.-)")
    if not names:
        raise ConfigError(key, "must name at least one channel")
    return names


def _routes(key: str, value: Any) -> tuple[dict[str, Any], ...]:
    if not isinstance(value, list):
        raise ConfigError(key, f"must be a list of rule objects (got {_show(value)})")
    rules = []
    for i, rule in enumerate(value, 1):  # counted as people count: "rule 1" is the first
        if not isinstance(rule, dict):
            raise ConfigError(key, f"rule {i} must be an object")
        unknown = set(rule) - {"channel", "event_types", "min_severity"}
        if unknown:
            raise ConfigError(key, f"rule {i}: unknown field {sorted(unknown)[0]!r}")
        if not isinstance(rule.get("channel"), str):
            raise ConfigError(key, f"rule {i}: 'channel' must be a string")
        if "event_types" in rule:
            types = rule["event_types"]
            if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
                raise ConfigError(key, f"rule {i}: 'event_types' must be a list of strings")
            try:
                compile_globs(types)
            except GlobError as exc:
                raise ConfigError(key, f"rule {i}: 'event_types': {exc}") from None
        if "min_severity" in rule and rule["min_severity"] not in SEVERITIES:
            raise ConfigError(key, f"rule {i}: 'min_severity' must be one of {_names(SEVERITIES)}")
        rules.append(dict(rule))
    return tuple(rules)


def _redact_paths(key: str, value: Any) -> tuple[str, ...]:
    paths = _str_list(key, value)
    for path in paths:
        if not path or any(not part for part in path.split(".")):
            raise ConfigError(key, f"bad dotted path {path!r}")
    return paths


def _origins(key: str, value: Any) -> tuple[str, ...]:
    origins = _str_list(key, value)
    for origin in origins:
        if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
            raise ConfigError(key, f"bad origin {origin!r} (scheme://host[:port], no path)")
    return origins


def _cidrs(key: str, value: Any) -> tuple[str, ...]:
    import ipaddress

    cidrs = _str_list(key, value)
    for cidr in cidrs:
        try:
            ipaddress.ip_network(cidr, strict=True)
        except ValueError:
            raise ConfigError(key, f"bad CIDR {_show(cidr)} (e.g. 10.0.0.0/8, ::1/128)") from None
    return cidrs


FILE_FORMATS = ("auto", "opencanary", "cowrie", "netsentinel")


def _file_sources(key: str, value: Any) -> tuple[FileSource, ...]:
    if not isinstance(value, list):
        raise ConfigError(key, f"must be a list of {{path, format}} objects (got {_show(value)})")
    sources: list[FileSource] = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise ConfigError(key, f"entry {i} must be an object")
        unknown = set(item) - {"path", "format"}
        if unknown:
            raise ConfigError(key, f"entry {i}: unknown field {sorted(unknown)[0]!r}")
        path, fmt = item.get("path"), item.get("format", "auto")
        if not isinstance(path, str) or not os.path.isabs(path):
            raise ConfigError(key, f"entry {i}: 'path' must be an absolute file path")
        if fmt not in FILE_FORMATS:
            raise ConfigError(key, f"entry {i}: 'format' must be one of {', '.join(FILE_FORMATS)}")
        if any(s.path == os.path.normpath(path) for s in sources):
            raise ConfigError(key, f"entry {i}: {path} is listed twice")
        sources.append(FileSource(os.path.normpath(path), fmt))
    return tuple(sources)


def _writable_dir(key: str, value: Any) -> str:
    """A directory that exists and is writable, or that can be created (the runner does)."""
    path = os.path.abspath(_string(key, value))
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(key, f"not a writable directory: {existing}")
    return path


def _log_format(key: str, value: Any) -> str:
    if value not in ("text", "json"):
        raise ConfigError(key, "must be 'text' or 'json'")
    return str(value)


MIB = 1024 * 1024

KEYS: tuple[Key, ...] = (
    Key("websocket.enabled", "bool", False, _bool, "Turns the plugin on."),
    Key("websocket.path", "string", "/ws", _path, "Path of the WebSocket endpoint."),
    Key(
        "websocket.node_id",
        "string",
        "",
        _string,
        "Name of this node in `welcome` messages and logs; empty means hostname-pid.",
    ),
    Key(
        "websocket.auth.jwt.algorithms",
        "list of strings",
        ["HS256"],
        _algorithms,
        "Allowlist of JWT algorithms (HS256/384/512, RS*, PS*, ES*, EdDSA; never none).",
    ),
    Key(
        "websocket.auth.jwt.secret",
        "string",
        None,
        _optional(_secret_string),
        f"Secret for HS* tokens, usually `${{NETSENTINEL_WS_SECRET}}`; at least "
        f"{MIN_SECRET_CHARS} characters. Never logged.",
        secret=True,
    ),
    Key(
        "websocket.auth.jwt.public_key",
        "path",
        None,
        _optional(_readable_file),
        "PEM public key file for RS*/PS*/ES*/EdDSA tokens.",
    ),
    Key(
        "websocket.auth.jwt.jwks_url",
        "URL",
        None,
        _optional(_http_url),
        "JWKS address for asymmetric tokens; keys cached, refreshed on an unknown `kid` and "
        "when older than `websocket.auth.jwt.jwks_max_age`.",
    ),
    Key(
        "websocket.auth.jwt.jwks_max_age",
        "number (s)",
        300,
        _number(10, 86400),
        "Seconds a fetched JWKS is trusted; the next handshake after that refetches it, so a key "
        "the issuer withdrew is refused (a failed fetch keeps the cached keys).",
    ),
    Key(
        "websocket.auth.jwt.jwks_min_refresh",
        "number (s)",
        10,
        _number(1, 3600),
        "Least seconds between two JWKS fetches, whatever the handshakes ask for (a flood of "
        "unknown `kid`s must not hammer the key service).",
    ),
    Key(
        "websocket.auth.jwt.audience",
        "string",
        None,
        _optional(_string),
        "Required `aud` claim, checked when set.",
    ),
    Key(
        "websocket.auth.jwt.issuer",
        "string",
        None,
        _optional(_string),
        "Required `iss` claim, checked when set.",
    ),
    Key(
        "websocket.auth.jwt.leeway",
        "number (s)",
        0,
        _number(0, 300),
        "Clock skew allowed on `exp`/`nbf`/`iat`.",
    ),
    Key(
        "websocket.auth.timeout",
        "number (s)",
        5,
        _number(0.1, 120),
        "How long a connection may stay unauthenticated before 4001.",
    ),
    Key(
        "websocket.auth.allow_query_token",
        "bool",
        False,
        _bool,
        "Accept `?token=` in the URL (tokens in URLs end up in proxy logs: off by default).",
    ),
    Key(
        "websocket.allowed_origins",
        "list of strings",
        [],
        _origins,
        "Browser origins allowed to connect; empty means same-origin only; `*` allows any.",
    ),
    Key(
        "websocket.redact",
        "list of strings",
        list(DEFAULT_REDACT),
        _redact_paths,
        "Dotted event field paths replaced by `[redacted]` for clients without `events:sensitive`.",
    ),
    Key(
        "websocket.channels",
        "list of strings",
        list(DEFAULT_CHANNELS),
        _channels,
        "The channels clients may subscribe to.",
    ),
    Key(
        "websocket.routes",
        "list of rules",
        [dict(r) for r in DEFAULT_ROUTES],
        _routes,
        "Ordered routing rules `{channel, event_types (globs), min_severity}`; an event goes "
        "to every channel whose rule matches.",
    ),
    Key(
        "websocket.history.size",
        "int",
        100_000,
        _int(0, 10_000_000),
        "Events kept per channel for resume with `since`; `websocket.history.max_bytes` is "
        "the bound that usually applies first (100,000 events of 168 bytes fill it), so a "
        "burst of that size can still be resumed (docs/scaling.md, faults).",
    ),
    Key(
        "websocket.history.max_bytes",
        "int (bytes)",
        16 * MIB,
        _int(0, 64 * 1024 * MIB),
        "Per channel, the JSON bytes of the events kept for resume; the oldest go first when "
        "either this or `websocket.history.size` is reached (0: no byte bound).",
    ),
    Key(
        "websocket.limits.max_event_bytes",
        "int (bytes)",
        256 * 1024,
        _int(1024, 64 * MIB),
        "Largest event (its JSON) the pipeline may publish; larger ones are refused where they "
        'enter and counted (`netsentinel_ws_pipeline_rejected{reason="too_large"}`).',
    ),
    Key(
        "websocket.queue.max_bytes",
        "int (bytes)",
        MIB,
        _int(4096, 1024 * MIB),
        "Per-connection outbound bound; a client over it is closed with 4009.",
    ),
    Key(
        "websocket.queue.send_buffer",
        "int (bytes)",
        128 * 1024,
        _int(0, 64 * MIB),
        "`SO_SNDBUF` of each WebSocket and SSE subscriber's socket (Linux doubles it for its "
        "bookkeeping); 0 leaves it to the kernel, which grows it up to `net.ipv4.tcp_wmem`'s "
        "maximum (4 MiB by default). Kept small so that a burst waits in the outbox, where "
        "`websocket.backpressure` sees it, not in the kernel in front of live events; a "
        "client across a WAN gets at most about this much per round trip.",
    ),
    Key(
        "websocket.backpressure.behind_bytes",
        "int (bytes)",
        64 * 1024,
        _int(1024, 1024 * MIB),
        "A subscriber with more than this waiting or being written is behind "
        "(docs/performance.md, bursts beside live events).",
    ),
    Key(
        "websocket.backpressure.share",
        "number",
        0.01,
        _number(0, 1),
        "The runner's TCP and file ingest wait before their next read while more than this "
        "share of the connections (and at least one) are behind and still reading; a read "
        "under 4 KiB (live events, not a burst) is never held.",
    ),
    Key(
        "websocket.backpressure.stall",
        "number (s)",
        1.0,
        _number(0.01, 60),
        "A behind subscriber that has taken no write for this long stops counting, so a client "
        "that stopped reading cannot hold the ingest (it is closed with 4009 when its queue is "
        "full).",
    ),
    Key(
        "websocket.backpressure.max_wait",
        "number (s)",
        1.0,
        _number(0, 60),
        "Longest wait of an ingest connection or followed file before each read; the read "
        "goes ahead after it; 0 turns the backpressure off. Time held does not count toward "
        "`websocket.ingest.idle_timeout`.",
    ),
    Key(
        "websocket.compression",
        "bool",
        True,
        _bool,
        "Offer permessage-deflate to clients that ask for it (every browser does): each "
        "group's frame is compressed once, without server context takeover, and the same bytes "
        "go to every member; false: plain frames only.",
    ),
    Key(
        "websocket.limits.max_message_bytes",
        "int (bytes)",
        64 * 1024,
        _int(256, 16 * MIB),
        "Largest client frame; larger ones close the connection with 1009.",
    ),
    Key(
        "websocket.limits.max_connections",
        "int",
        10000,
        _int(1, 1_000_000),
        "Connections in all; over it: 4029.",
    ),
    Key(
        "websocket.limits.per_ip",
        "int",
        1000,
        _int(1, 1_000_000),
        "Connections per client address; over it: 4029.",
    ),
    Key(
        "websocket.limits.per_subject",
        "int",
        100,
        _int(1, 1_000_000),
        "Connections per token subject (`sub`); over it: 4029.",
    ),
    Key(
        "websocket.limits.messages_per_second",
        "number",
        50,
        _number(0.1, 100_000),
        "Client message rate (burst of the same size); over it `rate_limited`, at twice "
        "the rate: close 4008.",
    ),
    Key(
        "websocket.limits.max_subscriptions",
        "int",
        64,
        _int(1, 10_000),
        "Channels one connection may subscribe to at once.",
    ),
    Key(
        "websocket.heartbeat.interval",
        "number (s)",
        20,
        _number(0, 3600),
        "WebSocket ping interval (0 turns heartbeats off).",
    ),
    Key(
        "websocket.heartbeat.timeout",
        "number (s)",
        20,
        _number(0.1, 3600),
        "A connection that does not answer a ping within this time is closed.",
    ),
    Key(
        "websocket.sse.heartbeat",
        "number (s)",
        15,
        _number(0.05, 3600),
        "Comment line sent on every Server-Sent Events stream this often, so proxies do not "
        "close an idle stream.",
    ),
    Key(
        "websocket.shutdown.grace",
        "number (s)",
        5,
        _number(0, 120),
        "On shutdown, time given to flush queued data before clients are closed with 1001.",
    ),
    Key(
        "websocket.revocation.max_age",
        "number (s)",
        86400,
        _number(60, 366 * 86400),
        "How long a revocation by `jti` lasts when the revoker gave no `exp`: set it to your "
        "longest token lifetime. Revocations by subject last until lifted. See docs/security.md.",
    ),
    Key(
        "websocket.broker",
        "string",
        "memory",
        _broker,
        "`memory`, or `redis://[:password@]host:port/db` (`rediss://` for TLS) to share "
        "one feed between nodes; `?prefix=` sets the key prefix (default `netsentinel:ws:`). "
        "See docs/scaling.md.",
    ),
    Key(
        "websocket.broker.buffer",
        "int",
        10000,
        _int(0, 10_000_000),
        "Redis broker: events kept for the stream while Redis is unreachable (they are "
        "delivered locally at once; beyond this bound they are not kept, and counted).",
    ),
    Key(
        "websocket.geoip.enabled",
        "bool",
        False,
        _bool,
        "Add the country of `data.src_ip` as `data.src_geo` (`country`: ISO 3166 alpha-2, "
        "`name`) from offline data; never a network lookup. See docs/opencanary.md.",
    ),
    Key(
        "websocket.geoip.database",
        "path",
        None,
        _optional(_readable_file),
        "MaxMind-format country database (e.g. GeoLite2-Country.mmdb); unset: the data "
        "shipped by the `geoip` extra (`geoip2fast`).",
    ),
    Key(
        "websocket.ingest.tcp",
        "host:port",
        None,
        _optional(_host_port),
        "Runner: listen for newline-delimited JSON (OpenCanary's SocketJSONHandler).",
    ),
    Key(
        "websocket.ingest.max_line_bytes",
        "int (bytes)",
        MIB,
        _int(1024, 256 * MIB),
        "Runner: longest TCP ingest line (longer ones are dropped and counted) and largest "
        "`POST /ingest` body once its token is accepted (larger: 413).",
    ),
    Key(
        "websocket.ingest.tcp_allow",
        "list of CIDRs",
        ["127.0.0.0/8", "::1/128"],
        _cidrs,
        "Runner: client addresses the TCP ingest accepts (it has no token); connections from "
        "elsewhere are closed at once and counted.",
    ),
    Key(
        "websocket.ingest.max_connections",
        "int",
        64,
        _int(1, 100_000),
        "Runner: TCP ingest connections at once; more are closed at once and counted. With "
        "`websocket.ingest.max_line_bytes` it bounds the memory of partial lines.",
    ),
    Key(
        "websocket.ingest.idle_timeout",
        "number (s)",
        300,
        _number(1, 86400),
        "Runner: a TCP ingest connection that sends nothing for this long is closed (a sender "
        "such as OpenCanary's SocketJSONHandler reconnects on its next record).",
    ),
    Key(
        "websocket.ingest.max_uploads",
        "int",
        4,
        _int(1, 10_000),
        "Runner: `POST /ingest` bodies being received at once; more are answered 503.",
    ),
    Key(
        "websocket.ingest.files",
        "list of files",
        [],
        _file_sources,
        'Runner: JSON-lines log files to follow, `{"path": "/abs/path", "format": "auto"}` '
        "(`auto`, `opencanary`, `cowrie` or `netsentinel`), across growth, rotation and "
        "truncation; each line becomes exactly one event. Needs `websocket.ingest.state_dir`. "
        "See docs/opencanary.md.",
    ),
    Key(
        "websocket.ingest.state_dir",
        "path",
        None,
        _optional(_writable_dir),
        "Runner: directory (created if missing) where file ingest keeps each file's read "
        "position, so a restart, even `kill -9`, neither loses nor repeats a line.",
    ),
    Key(
        "websocket.ingest.poll_interval",
        "number (s)",
        0.25,
        _number(0.01, 60),
        "Runner: how often file ingest looks at its files for new lines (one `stat` per file "
        "when nothing changed).",
    ),
    Key(
        "websocket.dashboard.token",
        "string",
        None,
        _optional(_secret_string),
        "Development only: a token the dashboard page hands to the browser without asking "
        "(`serve --dev` sets it). Never set it on a shared server.",
        secret=True,
    ),
    Key("server.bind", "string", "127.0.0.1", _string, "Runner: address to listen on."),
    Key("server.port", "int", 8082, _int(0, 65535), "Runner: HTTP/WebSocket port."),
    Key(
        "server.tls.cert",
        "path",
        None,
        _optional(_readable_file),
        "Runner: PEM certificate (TLS on when set, with `server.tls.key`).",
    ),
    Key(
        "server.tls.key",
        "path",
        None,
        _optional(_readable_file),
        "Runner: PEM private key for `server.tls.cert`.",
    ),
    Key("server.backlog", "int", 4096, _int(1, 65535), "Runner: listen backlog."),
    Key(
        "server.workers",
        "int",
        1,
        _int(1, 64),
        "Runner: processes serving the same ports (`SO_REUSEPORT`: the kernel spreads the "
        "connections), each a node of one feed; more than 1 needs the Redis broker "
        "(`websocket.broker`). `serve --workers` overrides it. See docs/scaling.md, "
        '"Several workers on one host".',
    ),
    Key(
        "server.max_body_bytes",
        "int (bytes)",
        64 * 1024,
        _int(1024, 256 * MIB),
        "Runner: largest request body on every route but `POST /ingest` (which allows "
        "`websocket.ingest.max_line_bytes` once its token is accepted); larger ones get 413 "
        "before they are read.",
    ),
    Key(
        "server.idle_timeout",
        "number (s)",
        10,
        _number(0.5, 3600),
        "Runner: an HTTP connection that has not sent a whole request head within this time, "
        "or sits idle between requests, is closed (slowloris).",
    ),
    Key(
        "server.body_timeout",
        "number (s)",
        30,
        _number(0.5, 3600),
        "Runner: time a request body may take to arrive.",
    ),
    Key(
        "server.max_pending",
        "int",
        4096,
        _int(1, 1_000_000),
        "Runner: HTTP connections that are not (yet) WebSocket connections, in all; more are "
        "closed at accept.",
    ),
    Key(
        "server.max_pending_per_ip",
        "int",
        256,
        _int(1, 1_000_000),
        "Runner: HTTP connections from one address that are not (yet) WebSocket connections; "
        "more are closed at accept. Room for a NAT's or a proxy's clients reconnecting at once "
        "after a restart; each pending connection holds at most a 16 KiB request head.",
    ),
    Key("server.log_format", "string", "text", _log_format, "Runner: `text` or `json` logs."),
    Key(
        "server.gc_threshold",
        "int",
        50000,
        _int(0, 10_000_000),
        "Runner: allocations between passes of the garbage collector's youngest generation "
        "(Python's own default is 700, or 2000 from 3.13). Raised so that thousands of "
        "connections' objects are not rescanned many times a second, which cost a fifth of "
        "the connect rate at 10,000 subscribers; 0 turns automatic collection off.",
    ),
)

KEYS_BY_NAME = {k.name: k for k in KEYS}
SECRET_KEYS = frozenset(k.name for k in KEYS if k.secret)

# The bare names of the own prefixes: a nested object under one of them would be ignored.
OWN_NAMES = tuple(prefix.rstrip(".") for prefix in OWN_PREFIXES)

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# --- the typed sections: exactly what each component reads, built only by validate() ---------


@dataclass(frozen=True, slots=True)
class Limits:
    """The caps the node admits connections with (over one: close 4029)."""

    max_connections: int
    per_ip: int
    per_subject: int


@dataclass(frozen=True, slots=True)
class PressureSettings:
    """``websocket.backpressure.*``: when the runner's ingest waits for subscribers
    (:mod:`.pressure`)."""

    behind_bytes: int  # a connection with more than this waiting or in flight is behind
    share: float  # producers wait while more than this share of the connections count
    stall: float  # seconds without a completed write after which a behind one stops counting
    max_wait: float  # seconds a producer waits at most per read; 0: never


@dataclass(frozen=True, slots=True)
class NodeSettings:
    """What :class:`~.node.Node` reads: channels, routes, redaction, history, broker, caps."""

    node_id: str  # empty: hostname-pid
    channels: tuple[str, ...]
    routes: tuple[dict[str, Any], ...]
    redact: tuple[str, ...]
    history_size: int
    history_max_bytes: int
    broker: str = field(repr=False)  # a redis:// address may hold a password
    broker_buffer: int
    max_event_bytes: int
    limits: Limits
    shutdown_grace: float
    allowed_origins: tuple[str, ...]
    geoip: GeoSettings
    revocation_max_age: float
    pressure: PressureSettings


@dataclass(frozen=True, slots=True)
class GeoSettings:
    """Country enrichment (:mod:`.geo`): on or off, and the database (None: packaged data)."""

    enabled: bool
    database: str | None


@dataclass(frozen=True, slots=True)
class EndpointSettings:
    """The Tornado settings of the WebSocket handler (:mod:`.connection`)."""

    ping_interval: float | None  # None: no heartbeats
    ping_timeout: float
    max_message_bytes: int
    queue_max_bytes: int
    send_buffer: int  # SO_SNDBUF of each subscriber's socket; 0: the kernel's autotuning
    sse_heartbeat: float  # seconds between two comment lines on an SSE stream
    compression: bool  # offer permessage-deflate


@dataclass(frozen=True, slots=True)
class PageSettings:
    """What the HTTP handlers (:mod:`.http`) read: where they are mounted, the dev token."""

    path: str
    dashboard_token: str | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class WebSocketSettings:
    """The plugin's ``websocket.*`` keys, one section per component the node serves with."""

    enabled: bool
    node: NodeSettings
    jwt: JWTSettings  # auth's own settings, the PEM file already read
    session: SessionSettings
    endpoint: EndpointSettings
    http: PageSettings


@dataclass(frozen=True, slots=True)
class HTTPServerSettings:
    """The runner's bounds on HTTP connections (:class:`~.httpserver.GuardedHTTPServer`)."""

    idle_timeout: float
    body_timeout: float
    max_body_bytes: int
    max_pending: int
    max_pending_per_ip: int


@dataclass(frozen=True, slots=True)
class TCPIngestSettings:
    """The runner's TCP JSON-lines listener (:class:`~.ingest.IngestServer`)."""

    host: str
    port: int
    max_line_bytes: int
    allow: tuple[IpNetwork, ...]
    max_connections: int
    idle_timeout: float


@dataclass(frozen=True, slots=True)
class FileSource:
    """One followed file of ``websocket.ingest.files``."""

    path: str
    format: str  # one of FILE_FORMATS


@dataclass(frozen=True, slots=True)
class FileIngestSettings:
    """The runner's file followers (:class:`~.fileingest.FileIngest`)."""

    files: tuple[FileSource, ...]
    state_dir: str
    poll_interval: float
    max_line_bytes: int


@dataclass(frozen=True, slots=True)
class TLSFiles:
    """``server.tls.cert`` and ``server.tls.key`` (set together or not at all)."""

    cert: str
    key: str

    def context(self) -> ssl.SSLContext:
        """The runner's server context; files that do not load are a ConfigError naming the one
        at fault (validate() calls this too, so ``check-config`` finds what ``serve`` would)."""
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(self.cert)
        except ssl.SSLError as exc:
            raise ConfigError(
                "server.tls.cert", f"holds no PEM certificate ({exc.reason})"
            ) from None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(self.cert, self.key, password=_no_passphrase)
        except ssl.SSLError as exc:
            raise ConfigError(
                "server.tls.key", f"is not the PEM private key of server.tls.cert ({exc.reason})"
            ) from None
        return context


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """What the standalone runner reads: ``server.*`` and the runner's ``websocket.ingest.*``."""

    bind: str
    port: int
    backlog: int
    workers: int  # processes on the same ports (SO_REUSEPORT), each a node of one feed
    tls: TLSFiles | None
    log_format: str
    gc_threshold: int
    http: HTTPServerSettings
    ingest_tcp: TCPIngestSettings | None  # None: no TCP listener
    ingest_files: FileIngestSettings | None  # None: no file followed
    max_uploads: int  # POST /ingest bodies being received at once
    max_upload_bytes: int  # of one POST /ingest body, once its token is accepted


class Settings(Mapping[str, Any]):
    """The validated configuration: every own key's value (defaults filled in), read like a dict
    by ``check-config`` and tests, and the typed sections the components are built from
    (``settings.websocket.node.limits.per_ip``). Only :func:`validate` makes one."""

    def __init__(
        self, values: Mapping[str, Any], jwt: JWTSettings, warnings: Sequence[ConfigWarning]
    ) -> None:
        self._values = dict(values)
        self.warnings = tuple(warnings)
        self.websocket = _websocket_settings(self._values, jwt)
        self.server = _server_settings(self._values)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        shown = {k: _masked(k, v) for k, v in self._values.items()}
        return f"Settings({shown!r})"


def expand_env(key: str, value: Any, environ: Mapping[str, str]) -> Any:
    """Expand ``${NAME}`` in strings (also inside lists); an unset variable is an error.

    OpenCanary leaves unknown references as they are; for a secret that would silently make the
    literal text ``${NETSENTINEL_WS_SECRET}`` the key, so here it is refused instead.
    """
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in environ:
                raise ConfigError(key, f"environment variable {name} is not set")
            return environ[name]

        return _ENV_REF.sub(sub, value)
    if isinstance(value, list):
        return [expand_env(key, v, environ) for v in value]
    return value


def validate(config: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """The one validation path of ``check-config``, ``serve`` and the plugin: check every own
    key, fill in defaults, and try now what start-up would trip over (route globs, key material,
    the TLS pair, the redis package), so a configuration that passes here starts."""
    if not isinstance(config, Mapping):
        raise ConfigError("(config)", "must be a JSON object of dotted keys")
    env = os.environ if environ is None else environ
    values = {k.name: k.check(k.name, _copy(k.default)) for k in KEYS}
    warnings: list[ConfigWarning] = []
    for key, raw in config.items():
        if key in OWN_NAMES:
            raise ConfigError(key, _flat_keys_hint(key, raw))
        if not isinstance(key, str) or not key.startswith(OWN_PREFIXES):
            continue
        spec = KEYS_BY_NAME.get(key)
        if spec is None:
            raise ConfigError(key, _unknown_key_hint(key, raw))
        warnings.extend(_bare_references(spec, raw))
        values[key] = spec.check(key, expand_env(key, raw, env))
    _cross_checks(values)
    if not values["websocket.enabled"]:
        warnings.append(
            ConfigWarning("websocket.enabled", "is false: the plugin does nothing (no endpoint)")
        )
    elif not any(values[f"websocket.auth.jwt.{k}"] for k in ("secret", "public_key", "jwks_url")):
        warnings.append(
            ConfigWarning(
                "websocket.auth.jwt.secret",
                "unset, and no .public_key or .jwks_url either: every connection is refused "
                "(4001 no key configured)",
            )
        )
    return Settings(values, _jwt_settings(values), warnings)


# TokenVerifier is given each key's material alone (the allowlist was checked already), so what
# it refuses is about that key.
_JWT_MATERIAL = (
    ("secret", "websocket.auth.jwt.secret"),
    ("public_key", "websocket.auth.jwt.public_key"),
    ("jwks_url", "websocket.auth.jwt.jwks_url"),
)


def _jwt_settings(v: Mapping[str, Any]) -> JWTSettings:
    """auth's settings with the PEM file read; key material the verifier would refuse at
    start-up (a PEM as the secret, a key that fits no allowed algorithm) names its key."""
    path = v["websocket.auth.jwt.public_key"]
    try:
        public_key = None if path is None else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("websocket.auth.jwt.public_key", f"cannot read: {exc}") from None
    settings = JWTSettings(
        algorithms=v["websocket.auth.jwt.algorithms"],
        secret=v["websocket.auth.jwt.secret"],
        public_key=public_key,
        jwks_url=v["websocket.auth.jwt.jwks_url"],
        audience=v["websocket.auth.jwt.audience"],
        issuer=v["websocket.auth.jwt.issuer"],
        leeway=v["websocket.auth.jwt.leeway"],
        jwks_min_refresh=v["websocket.auth.jwt.jwks_min_refresh"],
        jwks_max_age=v["websocket.auth.jwt.jwks_max_age"],
    )
    allowlist_only = JWTSettings(algorithms=settings.algorithms)
    for name, key in _JWT_MATERIAL:
        material = getattr(settings, name)
        if material is not None:
            try:
                TokenVerifier(dataclasses.replace(allowlist_only, **{name: material}))
            except ValueError as exc:
                raise ConfigError(key, str(exc)) from None
    return settings


def _websocket_settings(v: Mapping[str, Any], jwt: JWTSettings) -> WebSocketSettings:
    return WebSocketSettings(
        enabled=v["websocket.enabled"],
        node=NodeSettings(
            node_id=v["websocket.node_id"],
            channels=v["websocket.channels"],
            routes=v["websocket.routes"],
            redact=v["websocket.redact"],
            history_size=v["websocket.history.size"],
            history_max_bytes=v["websocket.history.max_bytes"],
            broker=v["websocket.broker"],
            broker_buffer=v["websocket.broker.buffer"],
            max_event_bytes=v["websocket.limits.max_event_bytes"],
            limits=Limits(
                max_connections=v["websocket.limits.max_connections"],
                per_ip=v["websocket.limits.per_ip"],
                per_subject=v["websocket.limits.per_subject"],
            ),
            shutdown_grace=v["websocket.shutdown.grace"],
            allowed_origins=v["websocket.allowed_origins"],
            geoip=GeoSettings(v["websocket.geoip.enabled"], v["websocket.geoip.database"]),
            revocation_max_age=v["websocket.revocation.max_age"],
            pressure=PressureSettings(
                behind_bytes=v["websocket.backpressure.behind_bytes"],
                share=v["websocket.backpressure.share"],
                stall=v["websocket.backpressure.stall"],
                max_wait=v["websocket.backpressure.max_wait"],
            ),
        ),
        jwt=jwt,
        session=SessionSettings(
            auth_timeout=v["websocket.auth.timeout"],
            allow_query_token=v["websocket.auth.allow_query_token"],
            leeway=v["websocket.auth.jwt.leeway"],
            messages_per_second=v["websocket.limits.messages_per_second"],
            max_subscriptions=v["websocket.limits.max_subscriptions"],
        ),
        endpoint=EndpointSettings(
            ping_interval=v["websocket.heartbeat.interval"] or None,
            ping_timeout=v["websocket.heartbeat.timeout"],
            max_message_bytes=v["websocket.limits.max_message_bytes"],
            queue_max_bytes=v["websocket.queue.max_bytes"],
            send_buffer=v["websocket.queue.send_buffer"],
            sse_heartbeat=v["websocket.sse.heartbeat"],
            compression=v["websocket.compression"],
        ),
        http=PageSettings(path=v["websocket.path"], dashboard_token=v["websocket.dashboard.token"]),
    )


def _server_settings(v: Mapping[str, Any]) -> ServerSettings:
    cert, key, tcp = v["server.tls.cert"], v["server.tls.key"], v["websocket.ingest.tcp"]
    files = FileIngestSettings(  # state_dir is set whenever files are (_cross_checks)
        files=v["websocket.ingest.files"],
        state_dir=v["websocket.ingest.state_dir"],
        poll_interval=v["websocket.ingest.poll_interval"],
        max_line_bytes=v["websocket.ingest.max_line_bytes"],
    )
    return ServerSettings(
        bind=v["server.bind"],
        port=v["server.port"],
        backlog=v["server.backlog"],
        workers=v["server.workers"],
        tls=TLSFiles(cert, key) if cert else None,
        log_format=v["server.log_format"],
        gc_threshold=v["server.gc_threshold"],
        http=HTTPServerSettings(
            idle_timeout=v["server.idle_timeout"],
            body_timeout=v["server.body_timeout"],
            max_body_bytes=v["server.max_body_bytes"],
            max_pending=v["server.max_pending"],
            max_pending_per_ip=v["server.max_pending_per_ip"],
        ),
        ingest_tcp=None
        if tcp is None
        else TCPIngestSettings(
            host=tcp[0],
            port=tcp[1],
            max_line_bytes=v["websocket.ingest.max_line_bytes"],
            allow=tuple(ipaddress.ip_network(c) for c in v["websocket.ingest.tcp_allow"]),
            max_connections=v["websocket.ingest.max_connections"],
            idle_timeout=v["websocket.ingest.idle_timeout"],
        ),
        ingest_files=files if files.files else None,
        max_uploads=v["websocket.ingest.max_uploads"],
        max_upload_bytes=v["websocket.ingest.max_line_bytes"],
    )


def keys_markdown() -> str:
    """The keys table of docs/configuration.md, made from :data:`KEYS` (a test checks that
    the docs hold exactly this): ``python -c 'from netsentinel_websocket.config import
    keys_markdown; print(keys_markdown())'``."""
    rows = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for key in KEYS:
        if key.default is None:
            default = "unset"
        elif isinstance(key.default, list) and len(json.dumps(key.default)) > 40:
            # the section "### Default `key`" under the table, by its anchor
            default = f"[see below](#default-{key.name.replace('.', '')})"
        else:
            default = f"`{json.dumps(key.default)}`"
        doc = key.doc
        bounds = getattr(key.check, "bounds", None)
        if bounds is not None:
            lo, hi = (_number_text(b) for b in bounds)
            doc += f" From {lo} to {hi}."
        rows.append(f"| `{key.name}` | {key.type} | {default} | {doc} |")
    return "\n".join(rows)


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def load_file(path: str) -> dict[str, Any]:
    """Read a configuration file; problems become a ConfigError naming the file."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise ConfigError(path, f"cannot read: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(path, f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(path, "must hold a JSON object of dotted keys")
    return data


def _cross_checks(values: dict[str, Any]) -> None:
    channels = set(values["websocket.channels"])
    defaults = values["websocket.routes"] == DEFAULT_ROUTES
    for i, rule in enumerate(values["websocket.routes"], 1):
        if rule["channel"] in channels:
            continue
        if defaults:  # the user wrote channels only: blame what they wrote, say what to do
            raise ConfigError(
                "websocket.channels",
                f"does not declare {rule['channel']!r}, which the default websocket.routes "
                "send events to: declare it, or set websocket.routes to rules of your own",
            )
        raise ConfigError(
            "websocket.routes",
            f"rule {i}: channel {rule['channel']!r} is not declared in websocket.channels",
        )
    if bool(values["server.tls.cert"]) != bool(values["server.tls.key"]):
        key = "server.tls.key" if values["server.tls.cert"] else "server.tls.cert"
        raise ConfigError(key, "server.tls.cert and server.tls.key go together")
    if values["server.workers"] > 1 and values["websocket.broker"] == "memory":
        raise ConfigError(
            "server.workers",
            f"is {values['server.workers']}: several workers (server.workers, serve --workers) "
            "need the Redis broker "
            "(websocket.broker = redis://...), since a memory broker cannot share one feed "
            "between processes",
        )
    if values["websocket.ingest.files"] and values["websocket.ingest.state_dir"] is None:
        raise ConfigError(
            "websocket.ingest.state_dir",
            "must be set when websocket.ingest.files is (read positions)",
        )
    if values["server.tls.cert"]:
        TLSFiles(values["server.tls.cert"], values["server.tls.key"]).context()
    if values["websocket.geoip.enabled"]:
        _check_geoip(values["websocket.geoip.database"])
    algs = values["websocket.auth.jwt.algorithms"]
    if (
        values["websocket.auth.jwt.secret"] is not None
        and len(values["websocket.auth.jwt.secret"]) < MIN_SECRET_CHARS
    ):
        raise ConfigError(
            "websocket.auth.jwt.secret", f"must be at least {MIN_SECRET_CHARS} characters"
        )
    asym = [a for a in algs if a not in HMAC_ALGORITHMS]
    if (
        asym
        and values["websocket.auth.jwt.public_key"] is None
        and not values["websocket.auth.jwt.jwks_url"]
    ):
        raise ConfigError(
            "websocket.auth.jwt.algorithms",
            f"{asym[0]} needs websocket.auth.jwt.public_key or websocket.auth.jwt.jwks_url",
        )


def _check_geoip(database: str | None) -> None:
    """Enabled enrichment needs data: the named database must open, or the packaged data be
    installed (found, not loaded: that takes a second)."""
    from .geo import GeoError, MaxMindBackend, packaged_data

    key = "websocket.geoip.database"
    if database is None:
        if packaged_data() is None:
            raise ConfigError(
                key,
                "unset, and no packaged country data is installed: name a MaxMind-format "
                "database or pip install 'netsentinel-websocket[geoip]'",
            )
        return
    try:
        MaxMindBackend(database).close()
    except GeoError as exc:
        raise ConfigError(key, str(exc)) from None


def _no_passphrase() -> str:
    """OpenSSL would prompt on the terminal for an encrypted key's passphrase: refuse instead."""
    raise ConfigError("server.tls.key", "is encrypted: start-up cannot ask for its passphrase")


def _flat_keys_hint(name: str, value: Any) -> str:
    """Why a bare ``websocket``/``server`` entry is refused: the plugin would never read it."""
    if isinstance(value, dict):
        return _nested_hint(name, value)
    return f'is not a key: the plugin reads flat dotted keys such as "{name}.enabled"'


def _unknown_key_hint(key: str, value: Any) -> str:
    if isinstance(value, dict):
        return _nested_hint(key, value)
    hint = _close_match(key)
    return "unknown key" + (f" (did you mean {hint}?)" if hint else "")


def _nested_hint(name: str, value: dict[Any, Any]) -> str:
    """The flat keys a nested object meant (names only: values may be secrets)."""
    meant = [f'"{key}"' for key in _flattened(name, value)][:3]
    example = ", ".join(meant) or f'"{name}.enabled"'
    return f"nested objects are not read: write flat dotted keys ({example})"


def _flattened(prefix: str, value: dict[Any, Any]) -> Iterator[str]:
    for name, inner in value.items():
        dotted = f"{prefix}.{name}"
        if isinstance(inner, dict) and inner:
            yield from _flattened(dotted, inner)
        else:
            yield dotted


def _bare_references(spec: Key, raw: Any) -> list[ConfigWarning]:
    """``$NAME`` stays literal text; ``${NAME}`` was probably meant."""
    texts = raw if isinstance(raw, list) else [raw]
    names = [m.group(1) for t in texts if isinstance(t, str) for m in _BARE_REF.finditer(t)]
    if not names:
        return []
    if spec.secret:  # the name may be part of the secret itself
        message = "holds '$' before a name, taken literally (${NAME} expands; value not shown)"
    else:
        message = f"${names[0]} is taken literally: did you mean ${{{names[0]}}}?"
    return [ConfigWarning(spec.name, message)]


def _masked(key: str, value: Any) -> Any:
    """A value as a repr may show it: secrets hidden, a broker address without its password."""
    if key in SECRET_KEYS:
        return "***" if value else value
    if key == "websocket.broker" and value != "memory":
        from .broker_redis import redact_url

        return redact_url(value)
    return value


def _close_match(key: str) -> str | None:
    import difflib

    found = difflib.get_close_matches(key, KEYS_BY_NAME, n=1, cutoff=0.8)
    return found[0] if found else None


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _names(items: Any) -> str:
    return ", ".join(sorted(items))


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
