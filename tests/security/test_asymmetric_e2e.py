"""RS256 end to end over WebSocket: a PEM public key file, and a JWKS endpoint with a key
rotation (the JWKS is served by a real local Tornado server)."""

from __future__ import annotations

import time

import pytest

from ..conftest import WSClient, event
from .conftest import JWKSServer, Keys, public_jwk, rs256


async def receives_events(client: WSClient, server) -> None:
    assert (await client.recv())["type"] == "welcome"
    assert (await client.request({"type": "subscribe", "id": 1, "channels": ["events"]}))[
        "type"
    ] == "subscribed"
    await server.publish(event(7))
    assert (await client.events(1))[0]["event"]["data"]["n"] == 7


@pytest.mark.gen_test(timeout=10)
async def test_rs256_with_a_pem_public_key(server_factory, keys: Keys):
    server = await server_factory(
        websocket__auth__jwt__algorithms=["RS256"],
        websocket__auth__jwt__secret=None,
        websocket__auth__jwt__public_key=str(keys.pem_path),
    )
    await receives_events(await server.connect(rs256(keys.rsa, "soc")), server)
    forged = await server.connect(rs256(keys.other, "soc"))
    assert await forged.closed() == (4001, "bad signature")


@pytest.mark.gen_test(timeout=10)
async def test_rs256_with_jwks_and_a_key_rotation(server_factory, keys: Keys, jwks: JWKSServer):
    server = await server_factory(
        websocket__auth__jwt__algorithms=["RS256"],
        websocket__auth__jwt__secret=None,
        websocket__auth__jwt__jwks_url=jwks.url,
    )
    old = await server.connect(rs256(keys.rsa, "soc", headers={"kid": "k1"}))
    await receives_events(old, server)
    assert jwks.requests == 1

    # the identity provider rotates: k2 replaces k1. Unknown kids refetch the JWKS at most
    # every few seconds (a kid flood must not hammer the key service): let that time pass.
    jwks.keys = [public_jwk(keys.other, "k2")]
    verifier = server.node.verifier
    verifier._clock = lambda: time.time() + 60  # private, but no wall-clock wait in tests

    new = await server.connect(rs256(keys.other, "soc", headers={"kid": "k2"}))
    await receives_events(new, server)
    assert jwks.requests == 2
    # the session opened with k1 lives on, and refreshes with a token of the new key
    reply = await old.request(
        {"type": "auth", "id": 2, "token": rs256(keys.other, "soc", headers={"kid": "k2"})}
    )
    assert reply["type"] == "auth_ok"
    # the retired key no longer opens anything
    retired = await server.connect(rs256(keys.rsa, "soc", headers={"kid": "k1"}))
    assert await retired.closed() == (4001, "unknown key")
