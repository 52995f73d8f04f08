"""JWKS keys fetched over HTTP from a real local Tornado server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from tornado.web import Application, RequestHandler

from netsentinel_websocket import auth
from netsentinel_websocket.auth import AuthError, JWTSettings, Principal, TokenVerifier

NOW = 1_700_000_000.0
SECRET = "k" * 64


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class JWKS:
    """What the server answers, changed by the test while it runs; counts the requests.

    With ``hold()`` the server answers only once the test calls ``release()``; ``arrived`` is
    set when a request came in, so a test waits for events, never for a time."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.keys = keys
        self.status = 200
        self.body: bytes | None = None  # raw body instead of {"keys": ...}
        self.requests = 0
        self.accept: list[str | None] = []  # the Accept header of each request
        self.arrived = asyncio.Event()
        self._gate: asyncio.Event | None = None

    def hold(self) -> None:
        self._gate = asyncio.Event()

    def release(self) -> None:
        if self._gate is not None:
            self._gate.set()

    async def answer(self, handler: RequestHandler) -> None:
        self.requests += 1
        self.accept.append(handler.request.headers.get("Accept"))
        self.arrived.set()
        if self._gate is not None:
            await self._gate.wait()
        handler.set_status(self.status)
        handler.finish(self.body if self.body is not None else {"keys": self.keys})


class JWKSHandler(RequestHandler):
    async def get(self) -> None:
        jwks: JWKS = self.settings["jwks"]
        await jwks.answer(self)


@asynccontextmanager
async def jwks_server(jwks: JWKS) -> AsyncIterator[str]:
    sock, port = bind_unused_port()
    server = HTTPServer(Application([("/jwks", JWKSHandler)], jwks=jwks))
    server.add_sockets([sock])
    try:
        yield f"http://127.0.0.1:{port}/jwks"
    finally:
        jwks.release()
        server.stop()
        await server.close_all_connections()


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


def rsa_key() -> Any:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(private: Any, kid: str, alg: str | None) -> dict[str, Any]:
    to_jwk = {
        rsa.RSAPrivateKey: RSAAlgorithm.to_jwk,
        ec.EllipticCurvePrivateKey: ECAlgorithm.to_jwk,
        ed25519.Ed25519PrivateKey: OKPAlgorithm.to_jwk,
    }
    converter = next(f for cls, f in to_jwk.items() if isinstance(private, cls))
    jwk: dict[str, Any] = converter(private.public_key(), as_dict=True)
    jwk.update(kid=kid, use="sig")
    if alg is not None:
        jwk["alg"] = alg
    return jwk


def signed(private: Any, alg: str, kid: str | None, sub: str = "alice") -> str:
    claims = {"sub": sub, "scope": "channel:*", "exp": int(NOW) + 3600}
    return jwt.encode(claims, private, algorithm=alg, headers={"kid": kid} if kid else None)


def make_verifier(url: str, clock: Clock, *algs: str, **options: Any) -> TokenVerifier:
    settings = JWTSettings(algorithms=algs or ("RS256",), jwks_url=url, **options)
    return TokenVerifier(settings, clock=clock)


async def reason(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(AuthError) as caught:
        await verifier.verify(token)
    return caught.value.reason


KEY_MAKERS = {
    "RS256": rsa_key,
    "PS256": rsa_key,
    "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ES384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "EdDSA": ed25519.Ed25519PrivateKey.generate,
}


@pytest.mark.parametrize("alg", sorted(KEY_MAKERS))
def test_jwks_key_accepted_and_cached(alg: str) -> None:
    private = KEY_MAKERS[alg]()

    async def test() -> None:
        jwks = JWKS([public_jwk(private, "k1", alg)])
        async with jwks_server(jwks) as url:
            verifier = make_verifier(url, Clock(), alg)
            token = signed(private, alg, "k1")
            expected = Principal("alice", frozenset({"channel:*"}), NOW + 3600)
            assert await verifier.verify(token) == expected
            assert await verifier.verify(token) == expected
            assert verifier.verify_local(token) == expected
            assert jwks.requests == 1
            assert await reason(verifier, signed(KEY_MAKERS[alg](), alg, "k1")) == "bad signature"

    run(test)


def test_jwk_without_alg_serves_the_token_algorithm_of_its_family() -> None:
    private = rsa_key()

    async def test() -> None:
        async with jwks_server(JWKS([public_jwk(private, "k1", None)])) as url:
            verifier = make_verifier(url, Clock(), "RS256", "PS256", "ES256")
            assert (await verifier.verify(signed(private, "PS256", "k1"))).subject == "alice"
            assert (await verifier.verify(signed(private, "RS256", "k1"))).subject == "alice"
            es_token = signed(ec.generate_private_key(ec.SECP256R1()), "ES256", "k1")
            assert await reason(verifier, es_token) == "algorithm not allowed"

    run(test)


def test_jwk_published_for_another_algorithm_refused() -> None:
    private = rsa_key()

    async def test() -> None:
        async with jwks_server(JWKS([public_jwk(private, "k1", "RS256")])) as url:
            verifier = make_verifier(url, Clock(), "RS256", "PS256")
            assert await reason(verifier, signed(private, "PS256", "k1")) == "algorithm not allowed"

    run(test)


def test_ec_jwk_on_another_curve_than_alg_refused() -> None:
    private = ec.generate_private_key(ec.SECP384R1())

    async def test() -> None:
        async with jwks_server(JWKS([public_jwk(private, "k1", None)])) as url:
            verifier = make_verifier(url, Clock(), "ES256", "ES384")
            _, payload, signature = signed(private, "ES384", "k1").split(".")
            header = jwt.utils.base64url_encode(b'{"alg":"ES256","kid":"k1"}').decode()
            forged = f"{header}.{payload}.{signature}"
            assert await reason(verifier, forged) == "algorithm not allowed"
            assert (await verifier.verify(signed(private, "ES384", "k1"))).subject == "alice"

    run(test)


def test_key_rotation() -> None:
    old, new = rsa_key(), rsa_key()

    async def test() -> None:
        jwks = JWKS([public_jwk(old, "k1", "RS256")])
        async with jwks_server(jwks) as url:
            clock = Clock()
            verifier = make_verifier(url, clock)
            assert (await verifier.verify(signed(old, "RS256", "k1"))).subject == "alice"
            jwks.keys = [public_jwk(new, "k2", "RS256")]
            clock.now += 10
            assert (await verifier.verify(signed(new, "RS256", "k2", "bob"))).subject == "bob"
            assert jwks.requests == 2
            # k1 went away with the refresh; another refresh now would be too soon
            assert await reason(verifier, signed(old, "RS256", "k1")) == "unknown key"
            assert jwks.requests == 2

    run(test)


def test_refresh_replaces_a_reused_kid() -> None:
    old, new, other = rsa_key(), rsa_key(), rsa_key()

    async def test() -> None:
        jwks = JWKS([public_jwk(old, "k1", "RS256")])
        async with jwks_server(jwks) as url:
            clock = Clock()
            verifier = make_verifier(url, clock)
            assert (await verifier.verify(signed(old, "RS256", "k1"))).subject == "alice"
            jwks.keys = [public_jwk(new, "k1", "RS256"), public_jwk(other, "k2", "RS256")]
            clock.now += 10
            assert (await verifier.verify(signed(other, "RS256", "k2"))).subject == "alice"
            assert (await verifier.verify(signed(new, "RS256", "k1"))).subject == "alice"
            assert await reason(verifier, signed(old, "RS256", "k1")) == "bad signature"
            assert jwks.requests == 2

    run(test)


def test_refresh_rate_limited() -> None:
    private, ghost = rsa_key(), rsa_key()

    async def test() -> None:
        jwks = JWKS([public_jwk(private, "k1", "RS256")])
        async with jwks_server(jwks) as url:
            clock = Clock()
            verifier = make_verifier(url, clock, jwks_min_refresh=10.0)
            ghost_token = signed(ghost, "RS256", "ghost")
            assert await reason(verifier, ghost_token) == "unknown key"
            assert jwks.requests == 1
            clock.now += 9.9
            for _ in range(5):
                assert await reason(verifier, ghost_token) == "unknown key"
            assert jwks.requests == 1
            # the known key still works without any fetch
            assert (await verifier.verify(signed(private, "RS256", "k1"))).subject == "alice"
            assert jwks.requests == 1
            clock.now += 0.1
            assert await reason(verifier, ghost_token) == "unknown key"
            assert jwks.requests == 2

    run(test)


def test_new_kid_refused_until_the_refresh_interval_passed() -> None:
    old, new = rsa_key(), rsa_key()

    async def test() -> None:
        jwks = JWKS([public_jwk(old, "k1", "RS256")])
        async with jwks_server(jwks) as url:
            clock = Clock()
            verifier = make_verifier(url, clock, jwks_min_refresh=30.0)
            assert (await verifier.verify(signed(old, "RS256", "k1"))).subject == "alice"
            jwks.keys.append(public_jwk(new, "k2", "RS256"))
            clock.now += 29
            assert await reason(verifier, signed(new, "RS256", "k2")) == "unknown key"
            clock.now += 1
            assert (await verifier.verify(signed(new, "RS256", "k2"))).subject == "alice"
            assert (await verifier.verify(signed(old, "RS256", "k1"))).subject == "alice"
            assert jwks.requests == 2

    run(test)


def test_concurrent_unknown_kids_share_one_fetch() -> None:
    private = rsa_key()

    async def test() -> None:
        jwks = JWKS([public_jwk(private, "k1", "RS256")])
        jwks.hold()
        async with jwks_server(jwks) as url:
            verifier = make_verifier(url, Clock())
            tokens = [signed(private, "RS256", "k1", f"user{i}") for i in range(20)]
            waiting = asyncio.gather(*(verifier.verify(t) for t in tokens))
            await jwks.arrived.wait()  # every verify has started by now, the fetch is held
            jwks.release()
            principals = await waiting
            assert [p.subject for p in principals] == [f"user{i}" for i in range(20)]
            assert jwks.requests == 1
            assert jwks.accept == ["application/json"]

    run(test)


def test_cancelled_waiter_does_not_cancel_the_shared_fetch() -> None:
    private = rsa_key()

    async def test() -> None:
        jwks = JWKS([public_jwk(private, "k1", "RS256")])
        jwks.hold()
        async with jwks_server(jwks) as url:
            verifier = make_verifier(url, Clock())
            token = signed(private, "RS256", "k1")
            first = asyncio.ensure_future(verifier.verify(token))
            second = asyncio.ensure_future(verifier.verify(token))
            await jwks.arrived.wait()  # both wait on the one fetch, which the server holds
            first.cancel()
            jwks.release()
            assert (await second).subject == "alice"
            assert first.cancelled() is True
            assert jwks.requests == 1

    run(test)


def test_jwks_server_down() -> None:
    private = rsa_key()

    async def test() -> None:
        sock, port = bind_unused_port()
        sock.close()  # nothing listens there any more
        clock = Clock()
        verifier = make_verifier(f"http://127.0.0.1:{port}/jwks", clock)
        token = signed(private, "RS256", "k1")
        assert await reason(verifier, token) == "key service unavailable"
        assert await reason(verifier, token) == "key service unavailable"  # paced, not refetched
        with pytest.raises(AuthError) as caught:
            verifier.verify_local(token)
        assert caught.value.reason == "unknown key"

    run(test)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, None),
        (404, None),
        (200, b"not json"),
        (200, b"[1, 2]"),
        (200, b'{"keys": "nope"}'),
        (200, b'{"keys": [{"kty": "RSA", "kid": "k1", "n": "AQAB"}]}'),
        (200, b'{"keys": [{"kty": "oct", "kid": "k1", "k": "c2VjcmV0"}]}'),
    ],
)
def test_bad_jwks_answer_refuses(status: int, body: bytes | None) -> None:
    private = rsa_key()

    async def test() -> None:
        jwks = JWKS([public_jwk(private, "k1", "RS256")])
        jwks.status, jwks.body = status, body
        async with jwks_server(jwks) as url:
            verifier = make_verifier(url, Clock())
            assert await reason(verifier, signed(private, "RS256", "k1")) == (
                "key service unavailable"
            )
            assert jwks.requests == 1

    run(test)


def test_failed_refresh_keeps_the_cached_keys() -> None:
    private, other = rsa_key(), rsa_key()

    async def test() -> None:
        jwks = JWKS([public_jwk(private, "k1", "RS256")])
        async with jwks_server(jwks) as url:
            clock = Clock()
            verifier = make_verifier(url, clock)
            assert (await verifier.verify(signed(private, "RS256", "k1"))).subject == "alice"
            jwks.status = 503
            clock.now += 10
            assert await reason(verifier, signed(other, "RS256", "k2")) == "key service unavailable"
            assert (await verifier.verify(signed(private, "RS256", "k1"))).subject == "alice"
            jwks.status = 200
            jwks.keys.append(public_jwk(other, "k2", "RS256"))
            clock.now += 10
            assert (await verifier.verify(signed(other, "RS256", "k2"))).subject == "alice"
            assert jwks.requests == 3

    run(test)


def test_token_without_kid_does_not_fetch() -> None:
    private = rsa_key()

    async def test() -> None:
        jwks = JWKS([public_jwk(private, "k1", "RS256")])
        async with jwks_server(jwks) as url:
            verifier = make_verifier(url, Clock())
            assert await reason(verifier, signed(private, "RS256", None)) == "unknown key"
            assert jwks.requests == 0

    run(test)


def test_symmetric_jwks_key_never_verifies_hs_tokens() -> None:
    """An `oct` key published in the JWKS must not stand in for the configured secret."""
    published = "p" * 64

    async def test() -> None:
        k = jwt.utils.base64url_encode(published.encode()).decode()
        jwks = JWKS([{"kty": "oct", "kid": "sym", "k": k}])
        async with jwks_server(jwks) as url:
            verifier = make_verifier(url, Clock(), "RS256", "HS256", secret=SECRET)
            claims = {"sub": "mallory", "exp": int(NOW) + 60}
            token = jwt.encode(claims, published, algorithm="HS256", headers={"kid": "sym"})
            assert await reason(verifier, token) == "bad signature"
            assert jwks.requests == 0

    run(test)


def test_withdrawn_key_refused_once_the_cache_is_older_than_max_age() -> None:
    private, other = rsa_key(), rsa_key()

    async def test() -> None:
        jwks = JWKS([public_jwk(private, "k1", "RS256")])
        async with jwks_server(jwks) as url:
            clock = Clock()
            verifier = make_verifier(url, clock, jwks_max_age=60.0)
            token = signed(private, "RS256", "k1")
            assert (await verifier.verify(token)).subject == "alice"
            jwks.keys = [public_jwk(other, "k2", "RS256")]  # the issuer withdraws k1
            clock.now += 59.9
            assert (await verifier.verify(token)).subject == "alice"  # cached: no fetch yet
            assert jwks.requests == 1
            clock.now += 0.1
            assert await reason(verifier, token) == "unknown key"
            assert jwks.requests == 2
            # A failed refetch of an old set keeps the cached keys (and is paced).
            jwks.status = 503
            clock.now += 60
            assert (await verifier.verify(signed(other, "RS256", "k2"))).subject == "alice"
            assert jwks.requests == 3
            assert (await verifier.verify(signed(other, "RS256", "k2"))).subject == "alice"
            assert jwks.requests == 3  # within jwks_min_refresh of the failed fetch

    run(test)


def test_a_key_service_that_does_not_answer_is_given_up_after_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(auth, "JWKS_TIMEOUT", 0.2)
    private = rsa_key()

    async def test() -> None:
        jwks = JWKS([public_jwk(private, "k1", "RS256")])
        jwks.hold()  # never released while the verifier waits
        async with jwks_server(jwks) as url:
            verifier = make_verifier(url, Clock())
            token = signed(private, "RS256", "k1")
            outcome = await asyncio.wait_for(reason(verifier, token), 10)
            assert outcome == "key service unavailable"

    run(test)


def test_odd_entries_before_a_valid_key_are_skipped() -> None:
    private, other = rsa_key(), rsa_key()
    valid = public_jwk(private, "k1", "RS256")
    no_use = {k: v for k, v in public_jwk(other, "k2", "RS256").items() if k != "use"}
    odd: list[Any] = [
        5,
        "key",
        None,
        {k: v for k, v in valid.items() if k != "kid"},
        dict(valid, kid=7),
        {"kty": "oct", "kid": "sym", "k": "c2VjcmV0c2VjcmV0c2VjcmV0"},
        dict(public_jwk(other, "enc", "RS256"), use="enc"),
        {"kty": "RSA", "kid": "broken", "n": "AQAB"},
    ]

    async def test() -> None:
        jwks = JWKS([*odd, valid, no_use])
        async with jwks_server(jwks) as url:
            clock = Clock()
            verifier = make_verifier(url, clock)
            assert (await verifier.verify(signed(private, "RS256", "k1"))).subject == "alice"
            assert (await verifier.verify(signed(other, "RS256", "k2", "bob"))).subject == "bob"
            clock.now += 10  # a refresh is allowed again: the enc key is still not a signing key
            assert await reason(verifier, signed(other, "RS256", "enc")) == "unknown key"
            assert jwks.requests == 2

    run(test)


def test_a_jwks_of_encryption_keys_only_refuses() -> None:
    private = rsa_key()

    async def test() -> None:
        jwks = JWKS([dict(public_jwk(private, "k1", "RS256"), use="enc")])
        async with jwks_server(jwks) as url:
            verifier = make_verifier(url, Clock())
            assert await reason(verifier, signed(private, "RS256", "k1")) == (
                "key service unavailable"
            )

    run(test)


@pytest.mark.parametrize(
    ("status", "body", "logged"),
    [
        (200, b'{"keys": "nope"}', "TypeError: JWKS has no 'keys' list"),
        (200, b"[1, 2]", "TypeError: JWKS has no 'keys' list"),
        (
            200,
            b'{"keys": [{"kty": "oct", "kid": "s"}]}',
            "ValueError: JWKS has no usable signing key",
        ),
        (503, None, "HTTPClientError: HTTP 503: Service Unavailable"),
    ],
)
def test_a_failed_fetch_is_logged_with_host_and_cause_only(
    caplog: pytest.LogCaptureFixture, status: int, body: bytes | None, logged: str
) -> None:
    private = rsa_key()

    async def test() -> None:
        jwks = JWKS([])
        jwks.status, jwks.body = status, body
        async with jwks_server(jwks) as url:
            verifier = make_verifier(url + "?api_key=hush", Clock())
            with caplog.at_level(logging.INFO, logger="netsentinel_websocket.auth"):
                await reason(verifier, signed(private, "RS256", "k1"))

    run(test)
    assert [(r.levelname, r.getMessage()) for r in caplog.records if r.name == auth.__name__] == [
        ("WARNING", f"JWKS fetch from 127.0.0.1 failed: {logged}")
    ]


def test_a_fetch_is_logged_with_host_and_key_count(caplog: pytest.LogCaptureFixture) -> None:
    one, two = rsa_key(), rsa_key()

    async def test() -> None:
        jwks = JWKS([public_jwk(one, "k1", "RS256"), public_jwk(two, "k2", None)])
        async with jwks_server(jwks) as url:
            verifier = make_verifier(url + "?api_key=hush", Clock())
            with caplog.at_level(logging.INFO, logger="netsentinel_websocket.auth"):
                assert (await verifier.verify(signed(one, "RS256", "k1"))).subject == "alice"

    run(test)
    assert [(r.levelname, r.getMessage()) for r in caplog.records if r.name == auth.__name__] == [
        ("INFO", "JWKS from 127.0.0.1: 2 signing keys")
    ]
