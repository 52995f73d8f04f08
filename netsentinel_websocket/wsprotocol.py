"""The WebSocket handshake's rules (RFC 6455 section 4.2, RFC 7692 section 7), without I/O.

:func:`refusal` says whether an upgrade request can be answered with a 101 at all;
:func:`accept_value` is the answer's ``Sec-WebSocket-Accept``; :func:`negotiate_deflate` reads
the client's ``Sec-WebSocket-Extensions`` offers, which an attacker wrote: every answer it can
give is pinned by ``tests/security/test_hostile_deflate.py``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3


def refusal(headers: Mapping[str, str], version: str = "HTTP/1.1") -> tuple[int, str] | None:
    """The HTTP status and message refusing an upgrade request, None when it is one.
    ``version``: the request line's; an upgrade needs HTTP/1.1 (RFC 6455 4.2.1), and an
    HTTP/1.0 connection is closed once its answer is written."""
    if version != "HTTP/1.1":
        return 400, "WebSocket upgrades need HTTP/1.1"
    if headers.get("Upgrade", "").lower() != "websocket":
        return 400, 'Can "Upgrade" only to "WebSocket".'
    if "upgrade" not in (part.strip().lower() for part in headers.get("Connection", "").split(",")):
        return 400, '"Connection" must be "Upgrade".'
    if headers.get("Sec-WebSocket-Version") != "13":
        return 426, "Upgrade Required"
    if not headers.get("Host") or not headers.get("Sec-WebSocket-Key"):
        return 400, "Missing/Invalid WebSocket headers"
    return None


def accept_value(key: str) -> str:
    """``Sec-WebSocket-Accept`` for the client's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(key.encode("latin-1") + _GUID).digest()).decode()


@dataclass(frozen=True, slots=True)
class Deflate:
    """permessage-deflate as agreed with one client."""

    #: The window bits of the compressed frames the client takes (:mod:`.frames`).
    bits: int
    #: The answer's ``Sec-WebSocket-Extensions`` value.
    answer: str
    #: The window bits the client compresses with, and whether it may refer to earlier
    #: messages (it did not offer ``client_no_context_takeover``).
    client_bits: int
    client_takeover: bool


def negotiate_deflate(header: str) -> Deflate | None:
    """The first permessage-deflate offer in ``header`` we accept, with
    ``server_no_context_takeover`` added to the answer (RFC 7692 7.1.1.1 lets the server add
    it); None: no offer we accept, plain frames.

    Without context takeover every compressed message stands alone, which is what lets one
    compressed frame serve a whole group (:mod:`.frames`). Offers we cannot honour are
    declined, not failed: unknown or repeated parameters, a value where none belongs, a window
    size that is not one of ``8``..``15`` as written, and a ``server_max_window_bits`` under 9
    (zlib's smallest raw window). A ``client_max_window_bits`` offered without a value is not
    echoed (the client then compresses with up to 15 bits)."""
    for name, params in _extension_offers(header):
        offer = dict(params)
        # A parameter named twice: declined (RFC 7692 section 7).
        bits = _acceptable_deflate(name, offer) if len(offer) == len(params) else None
        if bits is None:
            continue
        agreed = {**offer, "server_no_context_takeover": None}
        client_bits = agreed.get("client_max_window_bits")
        if "client_max_window_bits" in agreed and client_bits is None:
            del agreed["client_max_window_bits"]
        answer = "; ".join(
            [name, *(k if v is None else f"{k}={v}" for k, v in sorted(agreed.items()))]
        )
        return Deflate(
            bits, answer, int(client_bits or 15), "client_no_context_takeover" not in offer
        )
    return None


_DEFLATE_PARAMETERS = frozenset(
    {
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
    }
)


def _extension_offers(header: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """``Sec-WebSocket-Extensions`` as (name, parameters) offers, in order, each parameter as
    (name, value) as written (repeats kept, so they can be declined); a parameter without a
    value has None (Tornado's own parser drops those, which loses
    ``client_no_context_takeover``), a quoted-string value is unquoted."""
    offers: list[tuple[str, list[tuple[str, str | None]]]] = []
    for element in header.split(","):
        name, *params = (part.strip() for part in element.split(";"))
        if not name:
            continue
        offer: list[tuple[str, str | None]] = []
        for param in params:
            key, sep, value = param.partition("=")
            offer.append((key.strip(), _unquote(value.strip()) if sep else None))
        offers.append((name, offer))
    return offers


def _unquote(value: str) -> str:
    """A quoted-string's content; anything else as it is (an unbalanced quote stays and makes
    the value invalid)."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _acceptable_deflate(name: str, offer: dict[str, str | None]) -> int | None:
    """The server window bits to compress with under a permessage-deflate offer, or None when
    it is another extension or an offer we decline (RFC 7692 section 7.1)."""
    if name != "permessage-deflate" or not offer.keys() <= _DEFLATE_PARAMETERS:
        return None
    if any(offer.get(f"{side}_no_context_takeover") is not None for side in ("server", "client")):
        return None  # these take no value, not even an empty one
    if not _window_bits_ok(offer.get("client_max_window_bits"), optional=True):
        return None
    server_bits = offer.get("server_max_window_bits")
    if server_bits is None:
        return None if "server_max_window_bits" in offer else 15
    return int(server_bits) if _window_bits_ok(server_bits) and server_bits != "8" else None


#: Window sizes as RFC 7692 section 7.1.2 writes them: decimal, no leading zero, 8 to 15.
#: Compared as strings, never through ``int()``: that takes other scripts' digits ("\u00b2"
#: passes ``str.isdigit`` and fails ``int``) and refuses over 4300 digits with a ValueError.
_WINDOW_BITS = frozenset(str(bits) for bits in range(8, 16))


def _window_bits_ok(value: str | None, optional: bool = False) -> bool:
    """An offered window size: 8 to 15 (or absent, where the parameter may have no value)."""
    if value is None:
        return optional
    return value in _WINDOW_BITS
