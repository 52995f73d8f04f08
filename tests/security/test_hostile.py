"""Hostile clients, one table: each case asserts the exact outcome (close code and reason, error
code and request id, or HTTP status), then that the same server still serves a good client
(it connects, subscribes, and receives a published event).

Before a token is accepted the server must send nothing but a close frame: every refusal at
the handshake or on the first message is read with ``silent_close``, which fails on any message.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
import orjson
import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from ..conftest import SECRET, Server, WSClient, event, make_token
from .conftest import JWKSServer, Keys, public_jwk, rs256

# --- outcomes ---


@dataclass(frozen=True)
class Closed:
    """The server closed: ``code`` None means the TCP connection was dropped without a frame."""

    code: int | None
    reason: str | None


@dataclass(frozen=True)
class Error:
    """An ``error`` reply; the connection stays open (checked with a ping after it)."""

    code: str
    id: Any = None


@dataclass(frozen=True)
class Refused:
    """The handshake itself was refused with this HTTP status."""

    status: int


Outcome = Closed | Error | Refused


@dataclass
class Ctx:
    server: Server
    keys: Keys
    jwks: JWKSServer


Attack = Callable[[Ctx], Awaitable[Outcome]]


@dataclass(frozen=True)
class Case:
    name: str
    attack: Attack
    expect: Outcome
    config: dict[str, Any] = field(default_factory=dict)


# --- tokens ---

NOW = int(time.time())
FORGED = "an-attacker's-own-secret-" + "x" * 64
PEM = "<pem>"  # placeholders in Case.config, filled in from the fixtures
JWKS = "<jwks>"
WITH_PEM = {
    "websocket__auth__jwt__algorithms": ["HS256", "RS256"],
    "websocket__auth__jwt__public_key": PEM,
}
RS256_PEM_ONLY = {
    "websocket__auth__jwt__algorithms": ["RS256"],
    "websocket__auth__jwt__public_key": PEM,
}
RS256_JWKS = {
    "websocket__auth__jwt__algorithms": ["HS256", "RS256"],
    "websocket__auth__jwt__jwks_url": JWKS,
}


def hs(
    claims: dict[str, Any], key: str | bytes = SECRET, alg: str = "HS256", **headers: Any
) -> str:
    """A token with exactly these claims (nothing added)."""
    return jwt.encode(claims, key, algorithm=alg, headers=headers or None)


def valid(**overrides: Any) -> dict[str, Any]:
    return {"sub": "mallory", "scope": "channel:*", "exp": NOW + 3600, **overrides}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(alg: str) -> str:
    """An unsigned token claiming ``alg`` (the classic ``none`` attack)."""
    header = b64(orjson.dumps({"alg": alg, "typ": "JWT"}))
    return f"{header}.{b64(orjson.dumps(valid()))}."


def pem_as_hmac_secret(keys: Keys) -> str:
    """Algorithm confusion: HS256 signed with the server's public key as the HMAC secret."""
    header = b64(orjson.dumps({"alg": "HS256", "typ": "JWT"}))
    body = b64(orjson.dumps(valid()))
    mac = hmac.new(keys.public_pem.encode(), f"{header}.{body}".encode(), hashlib.sha256)
    return f"{header}.{body}.{b64(mac.digest())}"


def attacker_jwk_header(keys: Keys) -> str:
    """RS256 signed by the attacker, who also embeds the matching public key in the header."""
    return rs256(keys.other, headers={"jwk": public_jwk(keys.other, "evil")})


# --- the client side of an attack ---


async def silent_close(client: WSClient, timeout: float = 5.0) -> Closed:
    """Wait for the close; any message before it is a leak and fails the test."""
    frame = await asyncio.wait_for(client.conn.read_message(), timeout)
    assert frame is None, f"server sent {frame!r} before accepting a token"
    return Closed(client.conn.close_code, client.conn.close_reason)


async def reply_or_close(client: WSClient) -> Outcome:
    """The next reply; an error is followed by a ping to prove the connection stays open."""
    try:
        msg = await client.recv()
        while msg["type"] in ("event", "unsubscribed") and "id" not in msg:
            msg = await client.recv()
    except ConnectionError:
        return Closed(client.conn.close_code, client.conn.close_reason)
    assert msg["type"] == "error", msg
    pong = await client.request({"type": "ping", "id": "still-open"})
    assert pong["type"] == "pong"
    return Error(msg["code"], msg["id"])


def handshake(
    token: str | Callable[[Keys], str] | None = None,
    *,
    headers: dict[str, str] | None = None,
    subprotocols: list[str] | None = None,
    query: str = "",
) -> Attack:
    """Connect with these credentials and expect a refusal before any message."""

    async def attack(ctx: Ctx) -> Outcome:
        tok = token(ctx.keys) if callable(token) else token
        client = await ctx.server.connect(
            tok, headers=headers, subprotocols=subprotocols, query=query, authenticate=False
        )
        return await silent_close(client)

    return attack


def first(message: Any) -> Attack:
    """Connect without credentials and send ``message`` (str, bytes or JSON) first."""

    async def attack(ctx: Ctx) -> Outcome:
        client = await ctx.server.connect(authenticate=False)
        client.conn.write_message(
            message if isinstance(message, str | bytes) else orjson.dumps(message).decode(),
            binary=isinstance(message, bytes),
        )
        return await silent_close(client)

    return attack


def session(*messages: Any, scope: str = "channel:*", sub: str = "mallory") -> Attack:
    """Authenticate properly, then send ``messages``; the outcome of the last one counts."""

    async def attack(ctx: Ctx) -> Outcome:
        client = await ctx.server.connect(make_token(sub, scope))
        assert (await client.recv())["type"] == "welcome"
        for message in messages[:-1]:
            await client.request(message)
        client.send(messages[-1])
        return await reply_or_close(client)

    return attack


def raw(*frames: bytes | tuple[bool, int, bytes]) -> Attack:
    """Authenticate, then write frames Tornado's client would never produce: ``(fin, opcode,
    payload)`` tuples are framed and masked by it, bytes go to the socket as they are."""

    async def attack(ctx: Ctx) -> Outcome:
        client = await ctx.server.connect()
        assert (await client.recv())["type"] == "welcome"
        protocol = client.conn.protocol
        for frame in frames:
            if isinstance(frame, bytes):
                await protocol.stream.write(frame)
            else:
                await protocol._write_frame(*frame)
        return await reply_or_close(client)

    return attack


async def flood(ctx: Ctx) -> Outcome:
    """Ignore ``rate_limited`` and keep sending: refused first, then closed with 4008."""
    client = await ctx.server.connect()
    assert (await client.recv())["type"] == "welcome"
    for i in range(40):
        client.send({"type": "ping", "id": i})
    replies = []
    try:
        while True:
            replies.append(await client.recv())
    except ConnectionError:
        pass
    limited = [r for r in replies if r["type"] == "error"]
    assert limited and {r["code"] for r in limited} == {"rate_limited"}
    assert all(isinstance(r["id"], int) for r in limited)  # every reply names its request
    assert len(replies) < 40
    return Closed(client.conn.close_code, client.conn.close_reason)


def caps(sub: str, keep: int) -> Attack:
    """Open ``keep`` connections, then one more; all are closed before the good client comes."""

    async def attack(ctx: Ctx) -> Outcome:
        held = [await ctx.server.connect(make_token(sub)) for _ in range(keep)]
        for client in held:
            assert (await client.recv())["type"] == "welcome"
        extra = await ctx.server.connect(make_token(sub))
        outcome = await silent_close(extra)
        for client in held:
            client.close()
            await client.closed()
        await until(lambda: not ctx.server.node.connections)
        return outcome

    return attack


def refresh(token: Callable[[Keys], str]) -> Attack:
    """A good session that refreshes with ``token``."""

    async def attack(ctx: Ctx) -> Outcome:
        client = await ctx.server.subscriber(["threats"], make_token("mallory"))
        client.send({"type": "auth", "id": 9, "token": token(ctx.keys)})
        return await reply_or_close(client)

    return attack


def origin(value: str | Callable[[Server], str]) -> Attack:
    """A browser handshake (valid token) from ``value``."""

    async def attack(ctx: Ctx) -> Outcome:
        header = value(ctx.server) if callable(value) else value
        request = HTTPRequest(
            ctx.server.url, headers={"Origin": header, "Authorization": f"Bearer {make_token()}"}
        )
        try:
            conn = await websocket_connect(request)
        except HTTPClientError as exc:
            return Refused(exc.code)
        conn.close()
        raise AssertionError(f"origin {header!r} was accepted")

    return attack


async def outlive_token(ctx: Ctx) -> Outcome:
    """Hold a connection past ``exp`` without refreshing: the timer closes it, unprompted."""
    client = await ctx.server.connect(make_token(ttl=2))
    assert (await client.recv())["type"] == "welcome"
    return Closed(*(await client.closed(timeout=5)))


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Yield to the loop until ``condition`` holds (server-side bookkeeping after a close)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


def bad_field(**message: Any) -> Attack:
    """A session message with one field of the wrong type or value."""
    return session({"id": 7, **message})


def refused(reason: str) -> Closed:
    return Closed(4001, reason)


# --- the table ---

SUB = {"type": "subscribe", "channels": ["threats"]}
BAD_REQUEST = Error("bad_request", 7)

CASES = [
    # forged and broken tokens at the handshake
    Case(
        "forged signature",
        handshake(hs(valid(), FORGED)),
        refused("bad signature"),
    ),
    Case("expired", handshake(hs(valid(exp=NOW - 60))), refused("token expired")),
    Case(
        "expired beyond leeway",
        handshake(hs(valid(exp=NOW - 60))),
        refused("token expired"),
        {"websocket__auth__jwt__leeway": 30},
    ),
    # minted when the case runs: a whole suite can take longer than a margin counted from import
    Case(
        "not yet valid (nbf)",
        handshake(lambda _: hs(valid(nbf=int(time.time()) + 600))),
        refused("token not yet valid"),
    ),
    Case(
        "issued in the future (iat)",
        handshake(lambda _: hs(valid(iat=int(time.time()) + 600))),
        refused("token not yet valid"),
    ),
    Case(
        "wrong audience",
        handshake(hs(valid(aud="billing"))),
        refused("wrong audience"),
        {"websocket__auth__jwt__audience": "soc"},
    ),
    Case(
        "missing audience",
        handshake(hs(valid())),
        refused("wrong audience"),
        {"websocket__auth__jwt__audience": "soc"},
    ),
    Case(
        "wrong issuer",
        handshake(hs(valid(iss="https://evil.example"))),
        refused("wrong issuer"),
        {"websocket__auth__jwt__issuer": "https://idp.example"},
    ),
    Case(
        "missing sub",
        handshake(hs({"scope": "channel:*", "exp": NOW + 3600})),
        refused("missing sub"),
    ),
    Case("blank sub", handshake(hs(valid(sub="  "))), refused("missing sub")),
    Case("sub not a string", handshake(hs(valid(sub=42))), refused("missing sub")),
    Case(
        "missing exp",
        handshake(hs({"sub": "mallory", "scope": "channel:*"})),
        refused("missing exp"),
    ),
    Case("exp not a number", handshake(hs(valid(exp="tomorrow"))), refused("malformed token")),
    Case("alg none", handshake(unsigned("none")), refused("algorithm not allowed")),
    Case("alg NoNe", handshake(unsigned("NoNe")), refused("algorithm not allowed")),
    Case(
        "alg not in the allowlist",
        handshake(hs(valid(), FORGED, alg="HS512")),
        refused("algorithm not allowed"),
    ),
    Case(
        "algorithm confusion: public key as HMAC secret",
        handshake(pem_as_hmac_secret),
        refused("bad signature"),
        WITH_PEM,
    ),
    Case(
        "algorithm confusion: HS256 where only RS256 is allowed",
        handshake(pem_as_hmac_secret),
        refused("algorithm not allowed"),
        RS256_PEM_ONLY,
    ),
    Case(
        "RS256 signed by another key",
        handshake(lambda k: rs256(k.other)),
        refused("bad signature"),
        WITH_PEM,
    ),
    Case(
        "embedded jwk header is ignored",
        handshake(attacker_jwk_header),
        refused("bad signature"),
        WITH_PEM,
    ),
    Case(
        "unknown kid",
        handshake(lambda k: rs256(k.other, headers={"kid": "nope"})),
        refused("unknown key"),
        RS256_JWKS,
    ),
    Case(
        "known kid, other key",
        handshake(lambda k: rs256(k.other, headers={"kid": "k1"})),
        refused("bad signature"),
        RS256_JWKS,
    ),
    Case("oversized token", handshake(hs(valid(pad="x" * 9000))), refused("token too large")),
    Case("garbage base64", handshake("!!!.@@@.###"), refused("malformed token")),
    Case("not a JWT", handshake("hello"), refused("malformed token")),
    Case(
        "header not an object",
        handshake(f"{b64(b'[]')}.{b64(b'{}')}.x"),
        refused("malformed token"),
    ),
    Case(
        "empty bearer",
        handshake(headers={"Authorization": "Bearer "}),
        refused("malformed authorization header"),
    ),
    Case(
        "basic auth",
        handshake(headers={"Authorization": "Basic bWFsbG9yeTpodW50ZXIy"}),
        refused("malformed authorization header"),
    ),
    Case(
        "query token when disabled",
        handshake(query=f"?token={make_token()}"),
        refused("query token not allowed"),
    ),
    Case(
        "forged query token",
        handshake(query=f"?token={hs(valid(), FORGED)}"),
        refused("bad signature"),
        {"websocket__auth__allow_query_token": True},
    ),
    Case(
        "forged subprotocol token",
        handshake(subprotocols=["netsentinel.v1", "bearer." + hs(valid(), FORGED)]),
        refused("bad signature"),
    ),
    Case(
        "empty subprotocol token",
        handshake(subprotocols=["netsentinel.v1", "bearer."]),
        refused("missing token"),
    ),
    Case(
        "silent until the auth timeout",
        handshake(),
        refused("auth timeout"),
        {"websocket__auth__timeout": 0.2},
    ),
    # messages before authentication
    Case("ping before auth", first({"type": "ping", "id": 1}), refused("authentication required")),
    Case("subscribe before auth", first(SUB), refused("authentication required")),
    Case("not JSON before auth", first("hello?"), refused("authentication required")),
    Case(
        "auth token of the wrong type",
        first({"type": "auth", "token": 1}),
        refused("authentication required"),
    ),
    Case(
        "forged auth message",
        first({"type": "auth", "token": hs(valid(), FORGED)}),
        refused("bad signature"),
    ),
    Case("non-ASCII token", first({"type": "auth", "token": "é.é.é"}), refused("malformed token")),
    Case("binary before auth", first(b"\x00\x01"), Closed(1003, "binary frames are not accepted")),
    Case(
        "huge frame before auth",
        first("x" * 4096),
        Closed(1009, "message too big"),
        {"websocket__limits__max_message_bytes": 1024},
    ),
    # malformed messages in a session: an error, and the connection stays open
    Case("not JSON", session("{nope"), Error("bad_request")),
    Case("JSON array", session("[1, 2]"), Error("bad_request")),
    Case("deeply nested JSON", session("[" * 30000 + "]" * 30000), Error("bad_request")),
    Case("unknown type", session({"type": "shutdown", "id": 7}), Error("unknown_type", 7)),
    Case("type not a string", bad_field(type=["ping"]), BAD_REQUEST),
    Case("unknown field", bad_field(type="ping", admin=True), BAD_REQUEST),
    Case("id an object", session({"type": "ping", "id": {"$gt": 0}}), Error("bad_request")),
    Case("id a boolean", session({"type": "ping", "id": True}), Error("bad_request")),
    Case("channels a string", bad_field(type="subscribe", channels="threats"), BAD_REQUEST),
    Case("channel a number", bad_field(type="subscribe", channels=[1]), BAD_REQUEST),
    Case("filter a list", bad_field(**SUB, filter=[]), BAD_REQUEST),
    Case("unknown filter key", bad_field(**SUB, filter={"severity": "high"}), BAD_REQUEST),
    Case("min_severity a number", bad_field(**SUB, filter={"min_severity": 5}), BAD_REQUEST),
    Case("event_types a string", bad_field(**SUB, filter={"event_types": "threat.*"}), BAD_REQUEST),
    Case("bad glob", bad_field(**SUB, filter={"event_types": ["threat.["]}), BAD_REQUEST),
    Case("bad CIDR", bad_field(**SUB, filter={"src_ip": ["10.0.0.0/33"]}), BAD_REQUEST),
    Case("tags of numbers", bad_field(**SUB, filter={"tags": [1, 2]}), BAD_REQUEST),
    Case("since a string", bad_field(**SUB, since="latest"), BAD_REQUEST),
    Case(
        "since offset a string",
        bad_field(**SUB, since={"threats": {"epoch": "E", "offset": "1"}}),
        BAD_REQUEST,
    ),
    Case("unsubscribe channels an object", bad_field(type="unsubscribe", channels={}), BAD_REQUEST),
    Case("refresh token a number", bad_field(type="auth", token=1), BAD_REQUEST),
    Case("alert_id a list", bad_field(type="ack", alert_id=[]), BAD_REQUEST),
    Case("note a number", bad_field(type="ack", alert_id="A-1", note=1), BAD_REQUEST),
    # scopes
    Case(
        "channel outside the scope",
        session({"type": "subscribe", "id": 7, "channels": ["alerts"]}, scope="channel:threats"),
        Error("forbidden", 7),
    ),
    Case(
        "one channel outside the scope",
        session(
            {"type": "subscribe", "id": 7, "channels": ["threats", "alerts"]},
            scope="channel:threats",
        ),
        Error("forbidden", 7),
    ),
    Case("no scope at all", session({**SUB, "id": 7}, scope=""), Error("forbidden", 7)),
    Case(
        "unknown channel",
        session({"type": "subscribe", "id": 7, "channels": ["secrets"]}),
        Error("unknown_channel", 7),
    ),
    Case(
        "ack without alerts:ack",
        session({"type": "ack", "id": 7, "alert_id": "A-1"}),
        Error("forbidden", 7),
    ),
    Case(
        "too many subscriptions",
        session({"type": "subscribe", "id": 7, "channels": ["threats", "alerts", "status"]}),
        Error("too_many_subscriptions", 7),
        {"websocket__limits__max_subscriptions": 2},
    ),
    # refresh
    Case(
        "refresh with another subject",
        refresh(lambda k: make_token("eve")),
        refused("subject changed"),
    ),
    Case(
        "refresh with an expired token",
        refresh(lambda k: hs(valid(sub="mallory", exp=NOW - 60))),
        refused("token expired"),
    ),
    Case(
        "refresh with a forged token",
        refresh(lambda k: hs(valid(sub="mallory"), FORGED)),
        refused("bad signature"),
    ),
    Case("holding on past exp", outlive_token, Closed(4004, "token expired")),
    # frames and floods
    Case(
        "flood",
        flood,
        Closed(4008, "message rate exceeded"),
        {"websocket__limits__messages_per_second": 5},
    ),
    Case(
        "huge frame",
        session("x" * 4096),
        Closed(1009, "message too big"),
        {"websocket__limits__max_message_bytes": 1024},
    ),
    Case(
        "huge message in small fragments",
        raw((False, 0x1, b"[" * 700), (True, 0x0, b"]" * 700)),
        Closed(1009, "message too big"),
        {"websocket__limits__max_message_bytes": 1024},
    ),
    Case(
        "frame header claiming 8 EiB",
        raw(b"\x81\xff" + struct.pack("!Q", 2**63) + b"\0\0\0\0"),
        Closed(1009, "message too big"),
    ),
    Case("binary frame", raw((True, 0x2, b"{}")), Closed(1003, "binary frames are not accepted")),
    Case("invalid UTF-8 in a text frame", raw((True, 0x1, b'{"type":"\xff"}')), Closed(None, None)),
    # origin
    Case("foreign origin", origin("https://evil.example"), Refused(403)),
    Case("null origin", origin("null"), Refused(403)),
    Case(
        "look-alike origin",
        origin(lambda s: f"http://127.0.0.1:{s.port}.evil.example"),
        Refused(403),
    ),
    Case(
        "origin not in the list",
        origin("https://evil.example"),
        Refused(403),
        {"websocket__allowed_origins": ["https://soc.example"]},
    ),
    Case(
        "same host, other port",
        origin(lambda s: f"http://127.0.0.1:{s.port + 1}"),
        Refused(403),
    ),
    # connection caps
    Case(
        "too many connections",
        caps("mallory", 2),
        Closed(4029, "too many connections"),
        {"websocket__limits__max_connections": 2},
    ),
    Case(
        "too many from one address",
        caps("mallory", 1),
        Closed(4029, "too many connections from this address"),
        {"websocket__limits__per_ip": 1},
    ),
    Case(
        "too many for one subject",
        caps("mallory", 1),
        Closed(4029, "too many connections for this subject"),
        {"websocket__limits__per_subject": 1},
    ),
]


def good_token(ctx: Ctx) -> str:
    """A token the server accepts, for the check that it still serves everyone else."""
    settings = ctx.server.runner.settings
    if "HS256" not in settings["websocket.auth.jwt.algorithms"]:
        return rs256(ctx.keys.rsa, "good-client")
    claims = {
        "aud": settings["websocket.auth.jwt.audience"],
        "iss": settings["websocket.auth.jwt.issuer"],
    }
    return make_token("good-client", **{k: v for k, v in claims.items() if v})


async def serves_a_good_client(ctx: Ctx) -> None:
    client = await ctx.server.subscriber(["events"], good_token(ctx))
    await ctx.server.publish(event(99))
    [got] = await client.events(1)
    assert got["event"]["data"]["n"] == 99
    client.close()


def test_there_are_enough_hostile_cases():
    assert len(CASES) >= 40
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
@pytest.mark.gen_test(timeout=15)
async def test_hostile_client(case: Case, server_factory, keys: Keys, jwks: JWKSServer):
    placeholders = {PEM: str(keys.pem_path), JWKS: jwks.url}
    config = {
        k: placeholders.get(v, v) if isinstance(v, str) else v for k, v in case.config.items()
    }
    ctx = Ctx(await server_factory(**config), keys, jwks)
    assert await case.attack(ctx) == case.expect
    await serves_a_good_client(ctx)
