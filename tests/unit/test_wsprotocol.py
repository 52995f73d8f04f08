"""The handshake's rules (RFC 6455 section 4.2, RFC 7692 section 7) as plain functions.

Each answer of :func:`negotiate_deflate` is pinned as the exact header value a client reads.
"""

from __future__ import annotations

import base64
import hashlib

import pytest

from netsentinel_websocket.wsprotocol import Deflate, accept_value, negotiate_deflate, refusal

BAD_UPGRADE = (400, 'Can "Upgrade" only to "WebSocket".')
BAD_CONNECTION = (400, '"Connection" must be "Upgrade".')
BAD_VERSION = (426, "Upgrade Required")
MISSING = (400, "Missing/Invalid WebSocket headers")
NO_TAKEOVER = "server_no_context_takeover"


def upgrade(**changes: str | None) -> dict[str, str]:
    """A valid upgrade request's headers, with ``changes`` (None removes a header; ``_``
    in a name is ``-``)."""
    headers = {
        "Host": "feed.example",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    for name, value in changes.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name)
        else:
            headers[name] = value
    return headers


# --- refusal ---------------------------------------------------------------------------------


def test_valid_upgrade_is_not_refused():
    assert refusal(upgrade()) is None


@pytest.mark.parametrize("value", ["websocket", "WebSocket", "WEBSOCKET", "webSocket"])
def test_upgrade_is_case_insensitive(value):
    assert refusal(upgrade(Upgrade=value)) is None


@pytest.mark.parametrize("value", [None, "", "h2c", "websocket2", " web socket"])
def test_missing_or_wrong_upgrade(value):
    assert refusal(upgrade(Upgrade=value)) == BAD_UPGRADE


@pytest.mark.parametrize(
    "value",
    ["Upgrade", "upgrade", "UPGRADE", "keep-alive, Upgrade", "Upgrade,keep-alive", " upgrade "],
)
def test_connection_lists_accepted(value):
    assert refusal(upgrade(Connection=value)) is None


@pytest.mark.parametrize(
    "value", [None, "", "keep-alive", "close", "Upgrade2", "keep-alive; Upgrade", "Up grade"]
)
def test_connection_without_upgrade(value):
    assert refusal(upgrade(Connection=value)) == BAD_CONNECTION


@pytest.mark.parametrize("value", [None, "", "8", "12", "14", " 13", "13, 8", "013"])
def test_version_other_than_13(value):
    assert refusal(upgrade(Sec_WebSocket_Version=value)) == BAD_VERSION


@pytest.mark.parametrize("name", ["Host", "Sec_WebSocket_Key"])
@pytest.mark.parametrize("value", [None, ""])
def test_missing_host_or_key(name, value):
    assert refusal(upgrade(**{name: value})) == MISSING


def test_checks_come_in_order():
    """The first broken rule is the one reported."""
    assert refusal({}) == BAD_UPGRADE
    assert refusal({"Upgrade": "websocket"}) == BAD_CONNECTION
    assert refusal({"Upgrade": "websocket", "Connection": "upgrade"}) == BAD_VERSION
    only_version = {"Upgrade": "websocket", "Connection": "upgrade", "Sec-WebSocket-Version": "13"}
    assert refusal(only_version) == MISSING


# --- accept_value ----------------------------------------------------------------------------


def test_accept_value_of_rfc_6455_example():
    assert accept_value("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_accept_value_matches_the_definition():
    for key in ("", "x3JJHMbDL1EzLkh9GBhXDw==", "AQIDBAUGBwgJCgsMDQ4PEA==", "é"):
        digest = hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode("latin-1"))
        assert accept_value(key) == base64.b64encode(digest.digest()).decode()
        assert type(accept_value(key)) is str


# --- negotiate_deflate -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "answer", "bits", "client_bits", "client_takeover"),
    [
        (
            "permessage-deflate",
            "permessage-deflate; server_no_context_takeover",
            15,
            15,
            True,
        ),
        (
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=10; server_no_context_takeover",
            10,
            15,
            True,
        ),
        (
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_no_context_takeover",
            15,
            15,
            True,
        ),
        (
            "permessage-deflate; client_max_window_bits=12",
            "permessage-deflate; client_max_window_bits=12; server_no_context_takeover",
            15,
            12,
            True,
        ),
        (
            "permessage-deflate; client_max_window_bits=8",
            "permessage-deflate; client_max_window_bits=8; server_no_context_takeover",
            15,
            8,
            True,
        ),
        (
            "permessage-deflate; client_no_context_takeover",
            "permessage-deflate; client_no_context_takeover; server_no_context_takeover",
            15,
            15,
            False,
        ),
        (
            "permessage-deflate; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover",
            15,
            15,
            True,
        ),
        (
            "permessage-deflate; server_max_window_bits=9",
            "permessage-deflate; server_max_window_bits=9; server_no_context_takeover",
            9,
            15,
            True,
        ),
        (
            "permessage-deflate; server_max_window_bits=15",
            "permessage-deflate; server_max_window_bits=15; server_no_context_takeover",
            15,
            15,
            True,
        ),
        (
            'permessage-deflate; server_max_window_bits="11"; client_max_window_bits="9"',
            "permessage-deflate; client_max_window_bits=9; server_max_window_bits=11; "
            "server_no_context_takeover",
            11,
            9,
            True,
        ),
        (
            "permessage-deflate; client_max_window_bits; server_max_window_bits=12; "
            "client_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=12; "
            "server_no_context_takeover",
            12,
            15,
            False,
        ),
        (
            "  permessage-deflate ;  server_max_window_bits = 13 ; client_max_window_bits = 14 ",
            "permessage-deflate; client_max_window_bits=14; server_max_window_bits=13; "
            "server_no_context_takeover",
            13,
            14,
            True,
        ),
    ],
)
def test_accepted_offers(header, answer, bits, client_bits, client_takeover):
    assert negotiate_deflate(header) == Deflate(bits, answer, client_bits, client_takeover)


def test_client_bits_is_an_int():
    deflate = negotiate_deflate("permessage-deflate; client_max_window_bits=10")
    assert deflate is not None
    assert deflate.client_bits == 10
    assert type(deflate.client_bits) is int
    assert type(deflate.bits) is int


@pytest.mark.parametrize(
    "header",
    [
        "",
        ",",
        " , ; ",
        "x-webkit-deflate-frame",
        "permessage-deflate2",
        "Permessage-Deflate",
        "permessage-deflate; mystery",  # unknown parameter
        "permessage-deflate; mystery=1",
        "permessage-deflate;",  # an empty parameter is unknown too
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",  # repeated
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
        "permessage-deflate; server_max_window_bits=8",  # under zlib's smallest raw window
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=09",  # not as RFC 7692 writes it
        "permessage-deflate; server_max_window_bits=+9",
        "permessage-deflate; server_max_window_bits=1" + "0" * 5000,
        "permessage-deflate; server_max_window_bits=\u00b9\u2075",  # other scripts' digits
        "permessage-deflate; server_max_window_bits",  # a value is required
        "permessage-deflate; server_max_window_bits=",
        'permessage-deflate; server_max_window_bits=""',
        'permessage-deflate; server_max_window_bits="10',  # an unbalanced quote
        'permessage-deflate; server_max_window_bits=10"',
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=",
        'permessage-deflate; client_max_window_bits="',
        "permessage-deflate; client_max_window_bits=x",
        "permessage-deflate; client_no_context_takeover=",  # these take no value
        "permessage-deflate; client_no_context_takeover=1",
        "permessage-deflate; server_no_context_takeover=true",
        'permessage-deflate; server_no_context_takeover=""',
    ],
)
def test_declined_offers(header):
    assert negotiate_deflate(header) is None


@pytest.mark.parametrize("bits", range(9, 16))
def test_every_server_window_from_9_to_15(bits):
    deflate = negotiate_deflate(f"permessage-deflate; server_max_window_bits={bits}")
    assert deflate is not None
    assert deflate.bits == bits
    assert f"server_max_window_bits={bits}" in deflate.answer


@pytest.mark.parametrize("bits", range(8, 16))
def test_every_client_window_from_8_to_15(bits):
    deflate = negotiate_deflate(f"permessage-deflate; client_max_window_bits={bits}")
    assert deflate is not None
    assert deflate.client_bits == bits
    assert deflate.bits == 15


def test_first_acceptable_of_several_offers():
    header = (
        "permessage-deflate; server_max_window_bits=8, "
        "permessage-deflate; client_max_window_bits=10; client_no_context_takeover, "
        "permessage-deflate"
    )
    assert negotiate_deflate(header) == Deflate(
        15,
        "permessage-deflate; client_max_window_bits=10; client_no_context_takeover; "
        "server_no_context_takeover",
        10,
        False,
    )


def test_another_extension_before_the_offer():
    header = "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=12"
    assert negotiate_deflate(header) == Deflate(
        12, "permessage-deflate; server_max_window_bits=12; server_no_context_takeover", 15, True
    )


@pytest.mark.parametrize(
    "header", [", permessage-deflate", " ,, permessage-deflate", "x-ext, ;, permessage-deflate"]
)
def test_empty_list_elements_are_skipped(header):
    """An empty element of the header's list is ignored (RFC 9110 5.6.1), not the end."""
    assert negotiate_deflate(header) == Deflate(
        15, "permessage-deflate; server_no_context_takeover", 15, True
    )


def test_another_extension_only():
    assert negotiate_deflate("x-webkit-deflate-frame; no_context_takeover") is None
    assert negotiate_deflate("client_max_window_bits=10") is None


def test_client_no_context_takeover_of_a_declined_offer_does_not_leak():
    """Each offer is read alone: the accepted one decides the client's takeover."""
    header = "permessage-deflate; client_no_context_takeover; mystery, permessage-deflate"
    assert negotiate_deflate(header) == Deflate(
        15, "permessage-deflate; server_no_context_takeover", 15, True
    )


def test_repeated_no_context_takeover_spelled_differently_is_declined():
    header = "permessage-deflate; server_no_context_takeover; server_no_context_takeover"
    assert negotiate_deflate(header) is None


@pytest.mark.parametrize("version", ["HTTP/1.0", "HTTP/0.9", "HTTP/2.0"])
def test_an_upgrade_needs_http_1_1(version):
    """RFC 6455 4.2.1; an HTTP/1.0 connection would be closed right after its 101."""
    assert refusal(upgrade(), version) == (400, "WebSocket upgrades need HTTP/1.1")
    assert refusal(upgrade(), "HTTP/1.1") is None
