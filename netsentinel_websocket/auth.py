"""JWT verification for subscribers: a token in, a `Principal` or a safe refusal out.

Everything here is pure except the JWKS fetch. Keys are chosen by the algorithm family taken
from the configured allowlist (HS* only ever sees the secret, asymmetric algorithms only ever
see a PEM key or a JWKS key), so a token cannot pick how its own signature is checked.
Tokens and secrets are never logged.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

import jwt
import orjson
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import HMACAlgorithm
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from .errors import NetSentinelError

logger = logging.getLogger(__name__)

#: The algorithms that sign with the shared secret (everything else is asymmetric).
HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
ALL_ALGORITHMS: frozenset[str] = HMAC_ALGORITHMS | frozenset(
    {
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
        "ES256",
        "ES384",
        "ES512",
        "EdDSA",
    }
)
_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "ES256": ec.SECP256R1,
    "ES384": ec.SECP384R1,
    "ES512": ec.SECP521R1,
}
JWKS_TIMEOUT = 5.0  # seconds; a slow key service must not hold handshakes for long


@dataclass(frozen=True)
class JWTSettings:
    """What `TokenVerifier` needs from `websocket.auth.jwt.*` (the PEM already read)."""

    algorithms: tuple[str, ...] = ("HS256",)
    secret: str | None = field(default=None, repr=False)  # kept out of repr: never logged
    public_key: str | None = None
    jwks_url: str | None = None
    audience: str | None = None
    issuer: str | None = None
    leeway: float = 0.0
    jwks_min_refresh: float = 10.0
    jwks_max_age: float = 300.0
    max_token_bytes: int = 8192


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified token speaks for and what it may do; a connection keeps only this."""

    subject: str
    scopes: frozenset[str]
    expires_at: float
    # Which token it came from, for revocation (:mod:`.revocation`); not part of what it grants.
    issued_at: float | None = field(default=None, compare=False)
    token_id: str | None = field(default=None, compare=False)

    def can_subscribe(self, channel: str) -> bool:
        """`channel:<name>` grants one channel, `channel:*` grants them all."""
        return "channel:*" in self.scopes or f"channel:{channel}" in self.scopes

    def allowed_channels(self, channels: Iterable[str]) -> list[str]:
        """The subscribable subset of `channels`, in their order (for `welcome`)."""
        return [channel for channel in channels if self.can_subscribe(channel)]

    @property
    def sensitive(self) -> bool:
        """`events:sensitive` lifts redaction of fields such as attempted passwords."""
        return "events:sensitive" in self.scopes

    def has(self, scope: str) -> bool:
        """Exact scope check (`alerts:ack`, `admin`, `ingest`): no scope implies another."""
        return scope in self.scopes


class AuthError(NetSentinelError):
    """A refused token. `reason` is short and safe to send as a close reason; it never holds
    token content. `expired` tells an expired token apart (4004 during a session)."""

    def __init__(self, reason: str, *, expired: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.expired = expired


class TokenVerifier:
    """Verifies bearer tokens against the configured allowlist, keys and claims."""

    def __init__(self, settings: JWTSettings, *, clock: Callable[[], float] = time.time) -> None:
        """Refuse a configuration that could never be safe (`none`, an unknown algorithm, a PEM
        posing as a secret, a key that fits no allowed algorithm) now rather than per token.
        `clock` gives epoch seconds for `exp`/`nbf`/`iat` and paces JWKS refreshes."""
        algorithms = frozenset(settings.algorithms)
        if not algorithms:
            raise ValueError("jwt algorithms: the allowlist is empty")
        if any(alg.lower() == "none" for alg in algorithms):
            raise ValueError("jwt algorithms: 'none' is never allowed")
        if algorithms - ALL_ALGORITHMS:
            unknown = ", ".join(sorted(algorithms - ALL_ALGORITHMS))
            raise ValueError(f"jwt algorithms: not supported: {unknown}")
        asymmetric = algorithms - HMAC_ALGORITHMS
        if settings.secret is not None:
            if not settings.secret:
                raise ValueError("jwt secret is empty")
            try:
                HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(settings.secret)
            except jwt.InvalidKeyError:
                raise ValueError("jwt secret is a public key; configure it as public_key") from None
        self._pem_key: Any = None
        self._pem_algs: frozenset[str] = frozenset()
        if settings.public_key is not None:
            try:
                key = serialization.load_pem_public_key(settings.public_key.encode())
            except (ValueError, UnsupportedAlgorithm):
                raise ValueError("jwt public_key is not a PEM public key") from None
            self._pem_algs = frozenset(alg for alg in asymmetric if _key_fits(key, alg))
            if not self._pem_algs:
                raise ValueError("jwt public_key fits none of the allowed algorithms")
            self._pem_key = key
        if settings.jwks_url is not None and not asymmetric:
            raise ValueError("jwt jwks_url is set but no asymmetric algorithm is allowed")
        self._settings = settings
        self._clock = clock
        self._algorithms = algorithms
        self._configured = bool(
            (settings.secret is not None and algorithms & HMAC_ALGORITHMS)
            or self._pem_algs
            or settings.jwks_url
        )
        self._jwks: dict[str, dict[str, Any]] = {}  # kid -> raw JWK, replaced on each refresh
        self._jwk_objects: dict[tuple[str, str], jwt.PyJWK] = {}  # (kid, alg) -> bound key
        self._last_refresh: float | None = None  # when a fetch last started
        self._fetched_at: float | None = None  # when the cached keys were fetched
        self._refresh_ok = True
        self._refresh: asyncio.Future[bool] | None = None

    @property
    def configured(self) -> bool:
        """False without any usable secret or key: then every token is refused."""
        return self._configured

    async def verify(self, token: str) -> Principal:
        """Verify `token`, fetching the JWKS when its `kid` is not cached yet or the cached set
        is older than `jwks_max_age` (so a key the issuer withdrew stops working)."""
        with _only_auth_errors():
            alg, kid = self._header(token)
            if kid is not None and alg not in HMAC_ALGORITHMS and self._jwks_stale():
                await self._fetch_jwks()  # a failed fetch keeps the cached keys
            key = self._local_key(alg, kid)
            if key is None:  # only a JWKS lookup by `kid` comes back empty
                key = await self._refreshed_key(cast(str, kid), alg)
            return self._decode(token, key, alg)

    def verify_local(self, token: str) -> Principal:
        """Verify `token` without I/O (secret, PEM or already cached JWKS keys)."""
        with _only_auth_errors():
            alg, kid = self._header(token)
            key = self._local_key(alg, kid)
            if key is None:
                raise AuthError("unknown key")
            return self._decode(token, key, alg)

    def _header(self, token: str) -> tuple[str, str | None]:
        """Cheap checks before any signature work: size, shape, allowlisted `alg`."""
        if not isinstance(token, str):
            raise AuthError("malformed token")
        if not token:
            raise AuthError("missing token")
        if not self._configured:
            raise AuthError("no key configured")
        if len(token) > self._settings.max_token_bytes:
            raise AuthError("token too large")
        if not token.isascii():  # so that characters == bytes for the size cap
            raise AuthError("malformed token")
        header = _peek_header(token)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise AuthError("algorithm not allowed")
        return alg, header.get("kid")

    def _local_key(self, alg: str, kid: str | None) -> Any:
        """The key of `alg`'s family, or None when a JWKS key must be fetched first.

        A token with a `kid` is checked against the JWKS when one is configured; otherwise the
        PEM key is used."""
        if alg in HMAC_ALGORITHMS:
            if self._settings.secret is None:
                raise AuthError("no key configured")
            return self._settings.secret
        if kid is not None and self._settings.jwks_url is not None:
            return self._cached_jwk(kid, alg)
        if alg in self._pem_algs:
            return self._pem_key
        raise AuthError("unknown key" if self._settings.jwks_url else "no key configured")

    def _cached_jwk(self, kid: str, alg: str) -> jwt.PyJWK | None:
        """The JWKS key `kid` bound to `alg`; a key published for another algorithm refuses."""
        raw = self._jwks.get(kid)
        if raw is None:
            return None
        key = self._jwk_objects.get((kid, alg))
        if key is None:
            if raw.get("alg", alg) != alg:
                raise AuthError("algorithm not allowed")
            try:
                key = jwt.PyJWK(raw, algorithm=alg)
            except jwt.PyJWTError:
                raise AuthError("algorithm not allowed") from None
            self._jwk_objects[(kid, alg)] = key
        return key

    def _jwks_stale(self) -> bool:
        fetched = self._fetched_at
        return fetched is not None and self._clock() - fetched >= self._settings.jwks_max_age

    async def _refreshed_key(self, kid: str, alg: str) -> jwt.PyJWK:
        """The key for an unknown `kid`, after refetching the JWKS if that is allowed now."""
        ok = await self._fetch_jwks()
        key = self._cached_jwk(kid, alg)
        if key is None:
            raise AuthError("unknown key" if ok else "key service unavailable")
        return key

    async def _fetch_jwks(self) -> bool:
        """Refetch the JWKS at most once per `jwks_min_refresh` seconds, one fetch shared by
        every caller waiting for it; False when the key service failed (now, or last time)."""
        if self._refresh is None:
            now = self._clock()
            last = self._last_refresh
            if last is not None and abs(now - last) < self._settings.jwks_min_refresh:
                return self._refresh_ok
            self._last_refresh = now
            self._refresh = asyncio.ensure_future(self._refresh_jwks())
        # shield: a cancelled caller (a closed connection) must not cancel the others' fetch
        return await asyncio.shield(self._refresh)

    async def _refresh_jwks(self) -> bool:
        """Replace the cached keys; on any failure keep the old ones and report False."""
        url = self._settings.jwks_url
        assert url is not None
        try:
            response = await AsyncHTTPClient().fetch(
                url,
                connect_timeout=JWKS_TIMEOUT,
                request_timeout=JWKS_TIMEOUT,
                headers={"Accept": "application/json"},
            )
            keys = _parse_jwks(response.body)
        except (HTTPClientError, OSError, TypeError, ValueError) as error:  # refuse, keep keys
            logger.warning(
                "JWKS fetch from %s failed: %s: %s",
                urlsplit(url).hostname,
                type(error).__name__,
                error,
            )
            self._refresh_ok = False
        else:
            self._jwks, self._jwk_objects = keys, {}
            self._refresh_ok = True
            self._fetched_at = self._clock()
            logger.info("JWKS from %s: %d signing keys", urlsplit(url).hostname, len(keys))
        finally:
            self._refresh = None
        return self._refresh_ok

    def _decode(self, token: str, key: Any, alg: str) -> Principal:
        """Check the signature (with `alg`, already allowlisted and matched to `key`'s family),
        `aud` and `iss`; then the claims PyJWT cannot check against our clock."""
        settings = self._settings
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=settings.audience,
                issuer=settings.issuer,
                options={
                    "verify_aud": settings.audience is not None,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_sub": False,
                    "verify_jti": False,
                },
            )
        except jwt.PyJWTError as error:
            raise AuthError(_reason(error)) from None
        return self._principal(claims)

    def _principal(self, claims: dict[str, Any]) -> Principal:
        exp = _numeric_date(claims, "exp")
        if exp is None:
            raise AuthError("missing exp")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject.strip():
            raise AuthError("missing sub")
        now = self._clock()
        leeway = self._settings.leeway
        if exp <= now - leeway:
            raise AuthError("token expired", expired=True)
        for name in ("nbf", "iat"):
            start = _numeric_date(claims, name)
            if start is not None and start > now + leeway:
                raise AuthError("token not yet valid")
        jti = claims.get("jti")
        return Principal(
            subject=subject,
            scopes=parse_scopes(claims.get("scope")),
            expires_at=exp,
            issued_at=_numeric_date(claims, "iat"),
            token_id=jti if isinstance(jti, str) else None,
        )


def mint(
    secret: str,
    subject: str,
    scopes: Iterable[str] | str,
    ttl: float = 3600,
    *,
    algorithm: str = "HS256",
    extra: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> str:
    """Sign an HS* token from the shared secret (the `token` command, demos and tests).

    `extra` claims are applied last, so they may override the standard ones."""
    if algorithm not in HMAC_ALGORITHMS:
        raise ValueError(
            f"mint signs with a secret: algorithm must be one of {sorted(HMAC_ALGORITHMS)}"
        )
    if not subject:
        raise ValueError("subject must not be empty")
    names = scopes.split() if isinstance(scopes, str) else list(scopes)
    if any(name.split() != [name] for name in names):
        raise ValueError("each scope must be one non-empty word")
    issued = time.time() if now is None else now
    claims: dict[str, Any] = {
        "sub": subject,
        "scope": " ".join(names),
        "iat": int(issued),
        "exp": int(issued + ttl),
    }
    claims.update(extra or {})
    return jwt.encode(claims, secret, algorithm=algorithm)


def bearer_token(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value; None for any other form."""
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def parse_scopes(claim: object) -> frozenset[str]:
    """Read the `scope` claim (space-separated string or list of strings). Anything else grants
    nothing: a malformed claim must not widen access nor fail an otherwise valid token."""
    if isinstance(claim, str):
        return frozenset(claim.split())
    if isinstance(claim, list | tuple) and all(isinstance(item, str) for item in claim):
        return frozenset(word for item in claim for word in item.split())
    return frozenset()


@contextmanager
def _only_auth_errors() -> Iterator[None]:
    """Callers rely on AuthError alone: a library surprise must refuse, not crash a handshake."""
    try:
        yield
    except AuthError:
        raise
    except Exception as error:  # noqa: BLE001 - the one place that must catch everything
        logger.warning("token verification failed unexpectedly: %s", type(error).__name__)
        raise AuthError("invalid token") from None


def _reason(error: jwt.PyJWTError) -> str:
    if isinstance(error, jwt.InvalidSignatureError):
        return "bad signature"
    if isinstance(error, jwt.InvalidAudienceError):
        return "wrong audience"
    if isinstance(error, jwt.InvalidIssuerError):
        return "wrong issuer"
    if isinstance(error, jwt.MissingRequiredClaimError):  # only aud/iss are required by PyJWT
        return "wrong audience" if error.claim == "aud" else "wrong issuer"
    if isinstance(error, jwt.InvalidAlgorithmError | jwt.InvalidKeyError):
        return "algorithm not allowed"  # e.g. a JWKS key on another curve than `alg` names
    return "malformed token"


def _peek_header(token: str) -> dict[str, Any]:
    """The unverified JOSE header, to pick `alg` and `kid` before any signature work.

    Only the first segment is decoded: ``jwt.get_unverified_header`` decodes and strictly checks
    all three, which ``jwt.decode`` does again anyway (a third of a connect's token cost)."""
    head, dot, _ = token.partition(".")
    if not dot:
        raise AuthError("malformed token")
    try:
        header = orjson.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except ValueError:  # binascii.Error and orjson.JSONDecodeError are ValueErrors
        raise AuthError("malformed token") from None
    if not isinstance(header, dict) or not isinstance(header.get("kid", ""), str):
        raise AuthError("malformed token")
    return header


def _numeric_date(claims: dict[str, Any], name: str) -> float | None:
    """A NumericDate claim as a finite float, None when absent; anything else is malformed."""
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AuthError("malformed token")
    try:
        number = float(value)
    except OverflowError:
        raise AuthError("malformed token") from None
    if not math.isfinite(number):
        raise AuthError("malformed token")
    return number


def _key_fits(key: Any, alg: str) -> bool:
    """Whether a PEM public key can verify `alg` (type, and curve for ES*)."""
    if alg.startswith(("RS", "PS")):
        return isinstance(key, rsa.RSAPublicKey)
    if alg in _CURVES:
        return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, _CURVES[alg])
    return isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)  # EdDSA


def _parse_jwks(body: bytes) -> dict[str, dict[str, Any]]:
    """Usable signing keys of a JWKS by `kid`. Symmetric (`oct`) and encryption keys are
    skipped: HS* tokens are only ever checked with the configured secret."""
    document = orjson.loads(body)
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise TypeError("JWKS has no 'keys' list")
    usable: dict[str, dict[str, Any]] = {}
    for raw in keys:
        if not isinstance(raw, dict) or not isinstance(raw.get("kid"), str):
            continue
        if raw.get("kty") == "oct" or raw.get("use", "sig") != "sig":
            continue
        try:
            jwt.PyJWK(raw)
        except jwt.PyJWTError:
            continue
        usable[raw["kid"]] = raw
    if not usable:
        raise ValueError("JWKS has no usable signing key")
    return usable
