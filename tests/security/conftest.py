"""Keys, a local JWKS server and token helpers for the security suite."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from tornado.web import Application, RequestHandler


@dataclass(frozen=True)
class Keys:
    """Two RSA key pairs: ``rsa`` is the server's (its public half in ``pem_path``), ``other``
    is an attacker's or the next key of a rotation."""

    rsa: rsa.RSAPrivateKey
    other: rsa.RSAPrivateKey
    pem_path: Path

    @property
    def public_pem(self) -> str:
        return self.pem_path.read_text()


def rs256(
    key: rsa.RSAPrivateKey,
    sub: str | None = "tester",
    scope: str = "channel:*",
    ttl: float = 3600,
    headers: dict[str, Any] | None = None,
) -> str:
    """An RS256 token signed with ``key`` (``sub=None`` leaves the claim out)."""
    now = int(time.time())
    claims: dict[str, Any] = {"scope": scope, "iat": now, "exp": now + ttl}
    if sub is not None:
        claims["sub"] = sub
    return jwt.encode(claims, key, algorithm="RS256", headers=headers)


def public_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    jwk: dict[str, Any] = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwk.update(kid=kid, use="sig", alg="RS256")
    return jwk


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    def new() -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    key = new()
    path = tmp_path_factory.mktemp("keys") / "public.pem"
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return Keys(key, new(), path)


@dataclass
class JWKSServer:
    """What the local key service publishes; a test changes ``keys`` to rotate."""

    url: str = ""
    keys: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0


class _JWKSHandler(RequestHandler):
    def get(self) -> None:
        state: JWKSServer = self.settings["state"]
        state.requests += 1
        self.finish({"keys": state.keys})


@pytest.fixture
def jwks(io_loop: Any, keys: Keys) -> Iterator[JWKSServer]:
    """A JWKS endpoint on the test's loop publishing ``keys.rsa`` as kid ``k1``."""
    state = JWKSServer(keys=[public_jwk(keys.rsa, "k1")])
    sock, port = bind_unused_port()
    server = HTTPServer(Application([("/jwks", _JWKSHandler)], state=state))
    server.add_sockets([sock])
    state.url = f"http://127.0.0.1:{port}/jwks"
    yield state
    server.stop()
    io_loop.run_sync(server.close_all_connections)
