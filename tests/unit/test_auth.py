"""Pure token logic of netsentinel_websocket.auth (no network)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from netsentinel_websocket.auth import (
    ALL_ALGORITHMS,
    AuthError,
    JWTSettings,
    Principal,
    TokenVerifier,
    mint,
    parse_scopes,
)

NOW = 1_700_000_000.0
SECRET = "k" * 64  # long enough for HS512, so PyJWT does not warn about key length
OTHER_SECRET = "o" * 64


def clock() -> float:
    return NOW


def verifier(**options: Any) -> TokenVerifier:
    options.setdefault("secret", SECRET)
    return TokenVerifier(JWTSettings(**options), clock=clock)


def token(ttl: float = 3600, *, scopes: Any = "channel:threats", **extra: Any) -> str:
    return mint(SECRET, "alice", scopes, ttl, extra=extra, now=NOW)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_signed(header: dict[str, Any], claims: dict[str, Any], key: bytes) -> str:
    """An HS256 token built without PyJWT, which refuses to sign with some keys."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def refused(v: TokenVerifier, tok: Any) -> AuthError:
    with pytest.raises(AuthError) as caught:
        v.verify_local(tok)
    return caught.value


def pem(public_key: Any) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


CLAIMS = {"sub": "alice", "scope": "channel:threats", "exp": int(NOW) + 3600}


# --- HS* ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_hs_token_accepted(alg: str) -> None:
    tok = mint(SECRET, "alice", "channel:threats alerts:ack", algorithm=alg, now=NOW)
    principal = verifier(algorithms=(alg,)).verify_local(tok)
    assert principal == Principal("alice", frozenset({"channel:threats", "alerts:ack"}), NOW + 3600)


def test_async_verify_accepts_a_local_token() -> None:
    principal = asyncio.run(verifier().verify(token()))
    assert principal == Principal("alice", frozenset({"channel:threats"}), NOW + 3600)


def test_expired_token() -> None:
    error = refused(verifier(), mint(SECRET, "alice", "", 60, now=NOW - 120))
    assert (error.reason, error.expired) == ("token expired", True)


def test_exp_equal_to_now_is_expired_and_one_second_later_is_not() -> None:
    assert refused(verifier(), token(exp=int(NOW))).reason == "token expired"
    assert verifier().verify_local(token(exp=int(NOW) + 1)).expires_at == NOW + 1


def test_nbf_in_the_future() -> None:
    error = refused(verifier(), token(nbf=NOW + 60))
    assert (error.reason, error.expired) == ("token not yet valid", False)


def test_iat_in_the_future() -> None:
    assert refused(verifier(), token(iat=NOW + 60)).reason == "token not yet valid"


def test_nbf_in_the_past_accepted() -> None:
    assert verifier().verify_local(token(nbf=NOW - 1)).subject == "alice"


def test_leeway_admits_a_slightly_expired_token_and_no_more() -> None:
    lenient = verifier(leeway=30)
    assert lenient.verify_local(token(exp=int(NOW) - 29)).expires_at == NOW - 29
    error = refused(lenient, token(exp=int(NOW) - 30))
    assert (error.reason, error.expired) == ("token expired", True)


def test_leeway_admits_a_slightly_early_nbf() -> None:
    assert verifier(leeway=30).verify_local(token(nbf=NOW + 30)).subject == "alice"
    assert refused(verifier(leeway=30), token(nbf=NOW + 31)).reason == "token not yet valid"


def test_wrong_secret() -> None:
    error = refused(verifier(), mint(OTHER_SECRET, "alice", "", now=NOW))
    assert (error.reason, error.expired) == ("bad signature", False)


def test_tampered_payload() -> None:
    header, _, signature = token().split(".")
    forged = dict(CLAIMS, scope="channel:*")
    tampered = f"{header}.{b64(json.dumps(forged).encode())}.{signature}"
    assert refused(verifier(), tampered).reason == "bad signature"


def test_auth_error_text_is_its_reason() -> None:
    error = refused(verifier(), token(exp=int(NOW)))
    assert (str(error), error.reason, error.expired) == ("token expired", "token expired", True)
    assert (str(AuthError("bad signature")), AuthError("x").expired) == ("bad signature", False)


@pytest.mark.parametrize("jti", [42, ["a"], {"id": 1}, None, "j-1"])
def test_jti_of_any_type_is_left_alone(jti: Any) -> None:
    assert verifier().verify_local(token(jti=jti)).subject == "alice"


# --- iat and jti: which token a principal came from (for revocation) -------------------------


def test_principal_carries_the_tokens_iat_and_jti() -> None:
    principal = verifier().verify_local(token(jti="j-1"))
    assert (principal.issued_at, principal.token_id) == (1_700_000_000.0, "j-1")
    assert type(principal.issued_at) is float  # an integer iat becomes a float, as exp does
    # not part of what it grants: a principal without them compares equal
    assert principal == Principal("alice", frozenset({"channel:threats"}), NOW + 3600)


def test_a_fractional_iat_is_kept_as_it_is() -> None:
    assert verifier().verify_local(token(iat=1_699_999_999.25)).issued_at == 1_699_999_999.25


def test_a_token_without_iat_or_jti_gives_none_for_both() -> None:
    tok = hand_signed({"alg": "HS256", "typ": "JWT"}, CLAIMS, SECRET.encode())
    principal = verifier().verify_local(tok)
    assert (principal.subject, principal.issued_at, principal.token_id) == ("alice", None, None)


def test_a_null_iat_counts_as_absent() -> None:
    principal = verifier().verify_local(token(iat=None, jti="j-2"))
    assert (principal.issued_at, principal.token_id) == (None, "j-2")


@pytest.mark.parametrize("jti", [42, 4.5, True, ["a"], {"id": 1}, None])
def test_a_jti_that_is_not_a_string_is_no_token_id(jti: Any) -> None:
    principal = verifier().verify_local(token(jti=jti))
    assert (principal.issued_at, principal.token_id) == (1_700_000_000.0, None)


@pytest.mark.parametrize("jti", ["", " ", "JTI-1"])
def test_a_string_jti_is_the_token_id_as_it_is(jti: str) -> None:
    assert verifier().verify_local(token(jti=jti)).token_id == jti


@pytest.mark.parametrize("iat", ["yesterday", "1700000000", True, [1], {"t": 1}, 10**400])
def test_an_iat_of_the_wrong_type_is_a_malformed_token(iat: Any) -> None:
    error = refused(verifier(), token(iat=iat))
    assert (error.reason, error.expired) == ("malformed token", False)


@pytest.mark.parametrize("segment", [b"[1]", b'"alg"', b"7", b"null"])
def test_header_that_is_not_an_object(segment: bytes) -> None:
    _, claims, signature = token().split(".")
    assert refused(verifier(), f"{b64(segment)}.{claims}.{signature}").reason == "malformed token"


# --- the real clock: the fixed NOW above cannot show what the wall clock does ---------------


def real_clock_verifier(**options: Any) -> TokenVerifier:
    """A verifier on its default clock, the wall clock."""
    return TokenVerifier(JWTSettings(secret=SECRET, **options))


def test_default_clock_is_the_wall_clock() -> None:
    fresh = mint(SECRET, "alice", "channel:threats", 60)
    assert real_clock_verifier().verify_local(fresh).subject == "alice"
    # valid for an hour from 2023-11-14: long expired by the wall clock
    error = refused(real_clock_verifier(), token())
    assert (error.reason, error.expired) == ("token expired", True)


def test_mint_without_now_stamps_the_wall_clock() -> None:
    before = int(time.time())
    claims = jwt.decode(mint(SECRET, "alice", "", 60), options={"verify_signature": False})
    after = int(time.time())
    assert before <= claims["iat"] <= after
    assert claims["exp"] == claims["iat"] + 60


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_leeway_applies_to_nbf_and_iat_by_the_wall_clock(claim: str) -> None:
    """PyJWT's own nbf/iat checks (no leeway, its own clock) must stay off: ours rule."""
    early = mint(SECRET, "alice", "", 600, extra={claim: int(time.time()) + 20})
    assert real_clock_verifier(leeway=60).verify_local(early).subject == "alice"
    assert refused(real_clock_verifier(), early).reason == "token not yet valid"
    too_early = mint(SECRET, "alice", "", 600, extra={claim: int(time.time()) + 120})
    assert refused(real_clock_verifier(leeway=60), too_early).reason == "token not yet valid"


# --- algorithms --------------------------------------------------------------------------------


def test_alg_none_token_refused() -> None:
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    unsigned = f"{header}.{b64(json.dumps(CLAIMS).encode())}."
    assert refused(verifier(), unsigned).reason == "algorithm not allowed"


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_none_in_allowlist_refused_at_construction(alg: str) -> None:
    with pytest.raises(ValueError, match=r"^jwt algorithms: 'none' is never allowed$"):
        verifier(algorithms=("HS256", alg))


def test_unknown_algorithm_refused_at_construction() -> None:
    with pytest.raises(ValueError, match=r"^jwt algorithms: not supported: HS257$"):
        verifier(algorithms=("HS257",))
    with pytest.raises(ValueError, match=r"^jwt algorithms: not supported: HS257, XS1$"):
        verifier(algorithms=("XS1", "HS256", "HS257"))


def test_empty_allowlist_refused_at_construction() -> None:
    with pytest.raises(ValueError, match=r"^jwt algorithms: the allowlist is empty$"):
        verifier(algorithms=())


def test_all_algorithms() -> None:
    assert {
        *("HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
        *("ES256", "ES384", "ES512", "EdDSA"),
    } == ALL_ALGORITHMS


def test_alg_not_in_allowlist() -> None:
    tok = mint(SECRET, "alice", "", algorithm="HS384", now=NOW)
    assert refused(verifier(algorithms=("HS256",)), tok).reason == "algorithm not allowed"


def test_rs256_token_refused_by_hs_only_verifier(rsa_key: rsa.RSAPrivateKey) -> None:
    tok = jwt.encode(CLAIMS, rsa_key, algorithm="RS256")
    assert refused(verifier(), tok).reason == "algorithm not allowed"


def test_algorithm_confusion_with_both_keys_configured(rsa_key: rsa.RSAPrivateKey) -> None:
    public_pem = pem(rsa_key.public_key())
    v = verifier(algorithms=("RS256", "HS256"), public_key=public_pem)
    forged = hand_signed({"alg": "HS256", "typ": "JWT"}, CLAIMS, public_pem.encode())
    assert refused(v, forged).reason == "bad signature"
    assert v.verify_local(jwt.encode(CLAIMS, rsa_key, algorithm="RS256")).subject == "alice"


def test_algorithm_confusion_with_only_the_public_key(rsa_key: rsa.RSAPrivateKey) -> None:
    public_pem = pem(rsa_key.public_key())
    v = verifier(algorithms=("RS256", "HS256"), secret=None, public_key=public_pem)
    forged = hand_signed({"alg": "HS256", "typ": "JWT"}, CLAIMS, public_pem.encode())
    assert refused(v, forged).reason == "no key configured"


def test_pem_as_secret_refused_at_construction(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(
        ValueError, match=r"^jwt secret is a public key; configure it as public_key$"
    ):
        verifier(secret=pem(rsa_key.public_key()))


def test_empty_secret_refused_at_construction() -> None:
    with pytest.raises(ValueError, match=r"^jwt secret is empty$"):
        verifier(secret="")


def test_secret_not_in_repr() -> None:
    assert SECRET not in repr(JWTSettings(secret=SECRET))


# --- required and checked claims ---------------------------------------------------------------


def test_missing_sub() -> None:
    tok = jwt.encode({"exp": int(NOW) + 60}, SECRET, algorithm="HS256")
    assert refused(verifier(), tok).reason == "missing sub"


@pytest.mark.parametrize("sub", ["", "   ", 42, None, ["alice"]])
def test_empty_or_non_string_sub(sub: Any) -> None:
    tok = jwt.encode({"sub": sub, "exp": int(NOW) + 60}, SECRET, algorithm="HS256")
    assert refused(verifier(), tok).reason == "missing sub"


def test_missing_exp() -> None:
    tok = jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256")
    assert refused(verifier(), tok).reason == "missing exp"


@pytest.mark.parametrize("exp", ["tomorrow", True, [1], 10**400])
def test_non_numeric_exp(exp: Any) -> None:
    tok = jwt.encode({"sub": "alice", "exp": exp}, SECRET, algorithm="HS256")
    assert refused(verifier(), tok).reason == "malformed token"


def test_infinite_exp() -> None:
    tok = hand_signed({"alg": "HS256"}, {"sub": "alice", "exp": float("inf")}, SECRET.encode())
    assert refused(verifier(), tok).reason == "malformed token"


def test_float_exp_accepted() -> None:
    assert verifier().verify_local(token(exp=NOW + 0.5)).expires_at == NOW + 0.5


def test_audience() -> None:
    v = verifier(audience="netsentinel")
    assert v.verify_local(token(aud="netsentinel")).subject == "alice"
    assert v.verify_local(token(aud=["other", "netsentinel"])).subject == "alice"
    assert refused(v, token(aud="other")).reason == "wrong audience"
    assert refused(v, token()).reason == "wrong audience"


def test_audience_not_checked_when_not_configured() -> None:
    assert verifier().verify_local(token(aud="anything")).subject == "alice"


def test_issuer() -> None:
    v = verifier(issuer="https://idp.example")
    assert v.verify_local(token(iss="https://idp.example")).subject == "alice"
    assert refused(v, token(iss="https://evil.example")).reason == "wrong issuer"
    assert refused(v, token()).reason == "wrong issuer"


# --- malformed input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    ["not-a-jwt", "a.b.c", "!!!.@@@.###", "....", "eyJhbGciOiJIUzI1NiJ9", "é.é.é", "a.b"],
)
def test_garbage(garbage: str) -> None:
    assert refused(verifier(), garbage).reason == "malformed token"


def test_missing_token() -> None:
    assert refused(verifier(), "").reason == "missing token"


def test_non_string_token() -> None:
    assert refused(verifier(), None).reason == "malformed token"


def test_signed_payload_that_is_not_an_object() -> None:
    tok = jwt.api_jws.encode(b"[1, 2]", SECRET, algorithm="HS256")
    assert refused(verifier(), tok).reason == "malformed token"


def test_non_string_kid() -> None:
    tok = hand_signed({"alg": "HS256", "kid": 7}, CLAIMS, SECRET.encode())
    assert refused(verifier(), tok).reason == "malformed token"


def test_token_too_large() -> None:
    tok = token()
    assert verifier(max_token_bytes=len(tok)).verify_local(tok).subject == "alice"
    assert refused(verifier(max_token_bytes=len(tok) - 1), tok).reason == "token too large"


def test_huge_token_refused_before_decoding() -> None:
    assert refused(verifier(), "a" * 1_000_000).reason == "token too large"


def test_unconfigured_verifier_refuses_everything() -> None:
    v = TokenVerifier(JWTSettings(), clock=clock)
    assert v.configured is False
    assert refused(v, token()).reason == "no key configured"
    with pytest.raises(AuthError) as caught:
        asyncio.run(v.verify(token()))
    assert caught.value.reason == "no key configured"


def test_secret_without_hs_algorithm_is_not_configured(rsa_key: rsa.RSAPrivateKey) -> None:
    v = verifier(algorithms=("RS256",), jwks_url="http://127.0.0.1:9/jwks")
    assert v.configured is True
    assert refused(v, token()).reason == "algorithm not allowed"
    assert TokenVerifier(JWTSettings(algorithms=("RS256",), secret=SECRET)).configured is False


def test_jwks_key_not_cached_is_unknown_without_io(rsa_key: rsa.RSAPrivateKey) -> None:
    v = verifier(algorithms=("RS256",), secret=None, jwks_url="http://127.0.0.1:9/jwks")
    with_kid = jwt.encode(CLAIMS, rsa_key, algorithm="RS256", headers={"kid": "k1"})
    assert refused(v, with_kid).reason == "unknown key"
    assert refused(v, jwt.encode(CLAIMS, rsa_key, algorithm="RS256")).reason == "unknown key"


def test_jwks_url_without_asymmetric_algorithm_refused_at_construction() -> None:
    with pytest.raises(
        ValueError, match=r"^jwt jwks_url is set but no asymmetric algorithm is allowed$"
    ):
        verifier(jwks_url="http://127.0.0.1:9/jwks")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_only_ever_raises_auth_error(text: str) -> None:
    with pytest.raises(AuthError) as caught:
        verifier().verify_local(text)
    assert len(caught.value.reason.encode()) <= 100


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
CLAIM_VALUES = st.fixed_dictionaries(
    {},
    optional={name: JSON for name in ("sub", "exp", "nbf", "iat", "aud", "iss", "scope")},
)


@settings(max_examples=300, deadline=None)
@given(CLAIM_VALUES, st.dictionaries(st.sampled_from(["kid", "crit", "b64", "typ"]), JSON))
def test_signed_arbitrary_claims_give_a_principal_or_auth_error(
    claims: dict[str, Any], header: dict[str, Any]
) -> None:
    tok = hand_signed({**header, "alg": "HS256"}, claims, SECRET.encode())
    v = verifier(audience="netsentinel", issuer="idp", leeway=5)
    try:
        principal = v.verify_local(tok)
    except AuthError as error:
        assert len(error.reason.encode()) <= 100
    else:
        assert principal.subject == claims["sub"]
        assert principal.expires_at > NOW - 5


# --- asymmetric keys from PEM ------------------------------------------------------------------


def _rsa(_: str) -> Any:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


PRIVATE_KEYS = {
    "RS256": _rsa,
    "RS384": _rsa,
    "RS512": _rsa,
    "PS256": _rsa,
    "PS384": _rsa,
    "PS512": _rsa,
    "ES256": lambda _: ec.generate_private_key(ec.SECP256R1()),
    "ES384": lambda _: ec.generate_private_key(ec.SECP384R1()),
    "ES512": lambda _: ec.generate_private_key(ec.SECP521R1()),
    "EdDSA": lambda _: ed25519.Ed25519PrivateKey.generate(),
}


@pytest.mark.parametrize("alg", sorted(PRIVATE_KEYS))
def test_asymmetric_token_from_pem(alg: str) -> None:
    private = PRIVATE_KEYS[alg](alg)
    v = verifier(algorithms=(alg,), secret=None, public_key=pem(private.public_key()))
    tok = jwt.encode(dict(CLAIMS, scope=["channel:*"]), private, algorithm=alg)
    assert v.verify_local(tok) == Principal("alice", frozenset({"channel:*"}), NOW + 3600)
    assert asyncio.run(v.verify(tok)).subject == "alice"
    impostor = PRIVATE_KEYS[alg](alg)
    assert refused(v, jwt.encode(CLAIMS, impostor, algorithm=alg)).reason == "bad signature"


def test_ed448_pem_for_eddsa() -> None:
    private = ed448.Ed448PrivateKey.generate()
    v = verifier(algorithms=("EdDSA",), secret=None, public_key=pem(private.public_key()))
    assert v.verify_local(jwt.encode(CLAIMS, private, algorithm="EdDSA")).subject == "alice"


def test_pem_key_used_only_for_the_algorithms_it_fits(rsa_key: rsa.RSAPrivateKey) -> None:
    v = verifier(algorithms=("RS256", "ES256"), secret=None, public_key=pem(rsa_key.public_key()))
    es_token = jwt.encode(CLAIMS, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")
    assert refused(v, es_token).reason == "no key configured"


def test_pem_on_the_wrong_curve_refused_at_construction() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    with pytest.raises(ValueError, match=r"^jwt public_key fits none of the allowed algorithms$"):
        verifier(algorithms=("ES256",), public_key=pem(p384))


def test_pem_with_only_hs_allowed_refused_at_construction(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ValueError, match=r"^jwt public_key fits none of the allowed algorithms$"):
        verifier(public_key=pem(rsa_key.public_key()))


def test_not_a_pem_refused_at_construction(rsa_key: rsa.RSAPrivateKey) -> None:
    private_pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    for text in ("not a pem", private_pem):
        with pytest.raises(ValueError, match=r"^jwt public_key is not a PEM public key$"):
            verifier(algorithms=("RS256",), public_key=text)


# --- scopes and Principal ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claim", "expected"),
    [
        ("channel:threats  alerts:ack\tadmin", {"channel:threats", "alerts:ack", "admin"}),
        (["channel:threats", "ingest"], {"channel:threats", "ingest"}),
        (("admin",), {"admin"}),
        (["channel:a channel:b", ""], {"channel:a", "channel:b"}),
        ("", set()),
        ([], set()),
        (None, set()),
        (42, set()),
        ({"channel:*": True}, set()),
        (["admin", 1], set()),
    ],
)
def test_parse_scopes(claim: object, expected: set[str]) -> None:
    assert parse_scopes(claim) == frozenset(expected)


def test_scopes_from_token_as_list_and_garbage() -> None:
    assert verifier().verify_local(token(scopes=["admin", "ingest"])).scopes == {"admin", "ingest"}
    assert verifier().verify_local(token(scope={"admin": 1})).scopes == frozenset()


def test_principal_permissions() -> None:
    p = Principal("bob", frozenset({"channel:threats", "channel:alerts", "alerts:ack"}), NOW)
    assert p.can_subscribe("threats") is True
    assert p.can_subscribe("metrics") is False
    assert p.allowed_channels(["metrics", "alerts", "threats"]) == ["alerts", "threats"]
    assert p.sensitive is False
    assert p.has("alerts:ack") is True
    assert p.has("admin") is False


def test_principal_wildcard_and_sensitive() -> None:
    p = Principal("bob", frozenset({"channel:*", "events:sensitive"}), NOW)
    assert p.allowed_channels(["threats", "ml"]) == ["threats", "ml"]
    assert p.sensitive is True
    assert p.has("channel:threats") is False


# --- mint --------------------------------------------------------------------------------------


def test_mint_claims() -> None:
    tok = mint(SECRET, "alice", ["channel:threats", "admin"], 60, extra={"aud": "x"}, now=NOW)
    assert jwt.get_unverified_header(tok) == {"alg": "HS256", "typ": "JWT"}
    assert jwt.decode(tok, options={"verify_signature": False}) == {
        "sub": "alice",
        "scope": "channel:threats admin",
        "iat": int(NOW),
        "exp": int(NOW) + 60,
        "aud": "x",
    }


def test_mint_scope_string_is_normalized() -> None:
    tok = mint(SECRET, "alice", "  admin   ingest ", now=NOW)
    assert jwt.decode(tok, options={"verify_signature": False})["scope"] == "admin ingest"


def test_mint_refuses_bad_input() -> None:
    with pytest.raises(
        ValueError,
        match=r"^mint signs with a secret: algorithm must be one of \['HS256', 'HS384', 'HS512'\]$",
    ):
        mint(SECRET, "alice", "", algorithm="RS256")
    with pytest.raises(ValueError, match=r"^subject must not be empty$"):
        mint(SECRET, "", "")
    with pytest.raises(ValueError, match=r"^each scope must be one non-empty word$"):
        mint(SECRET, "alice", ["channel:a channel:b"])
    with pytest.raises(ValueError, match=r"^each scope must be one non-empty word$"):
        mint(SECRET, "alice", [""])


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc.def.ghi", "abc.def.ghi"),
        ("bearer  abc ", "abc"),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer", None),
        ("Bearer   ", None),
        ("", None),
    ],
)
def test_bearer_token_parses_only_the_bearer_form(header: str, token: str | None) -> None:
    from netsentinel_websocket.auth import bearer_token

    assert bearer_token(header) == token
