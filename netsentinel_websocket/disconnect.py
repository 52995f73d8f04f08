"""Close codes as values: a code and its reason together, defined once.

The server closes with these, metrics label closes with their codes, the client decides from
the code whether to resume, and docs/protocol.md lists them. A reason is never turned back
into a code: whoever decides to close picks the value.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Disconnect:
    """One way a connection ends: the close code and the short reason sent with it."""

    code: int
    reason: str

    def because(self, reason: str) -> Disconnect:
        """The same code with a more precise reason (``4001 token expired``)."""
        return Disconnect(self.code, reason)


NORMAL = Disconnect(1000, "")
PING_TIMEOUT = Disconnect(1000, "ping timed out")  # no pong in websocket.heartbeat.timeout
SHUTDOWN = Disconnect(1001, "server shutting down")
PROTOCOL_ERROR = Disconnect(1002, "invalid close frame")
UNMASKED = Disconnect(1002, "unmasked frame")
RESERVED_BITS = Disconnect(1002, "reserved bits set")  # RFC 6455 5.2, RFC 7692 6.1
BAD_DEFLATE = Disconnect(1002, "invalid compressed data")  # does not inflate
BINARY = Disconnect(1003, "binary frames are not accepted")
TOO_BIG = Disconnect(1009, "message too big")
TOO_BIG_INFLATED = Disconnect(1009, "message too big after decompression")
UNAUTHENTICATED = Disconnect(4001, "authentication required")  # .because(why) for the rest
REVOKED = Disconnect(4003, "revoked")  # the token was revoked (contract section 13)
DISCONNECTED = Disconnect(4003, "disconnected by an operator")  # POST /ws/admin/disconnect
TOKEN_EXPIRED = Disconnect(4004, "token expired")
RATE_EXCEEDED = Disconnect(4008, "message rate exceeded")
SLOW_CONSUMER = Disconnect(4009, "slow consumer")
TOO_MANY = Disconnect(4029, "too many connections")

#: Codes a closed connection is counted under in metrics; any other (a client may send any
#: code) is counted as ``other``, so clients cannot mint new series.
COUNTED_CODES = frozenset(
    {1000, 1001, 1002, 1003, 1005, 1006, 1008, 1009, 1011, 4001, 4003, 4004, 4008, 4009, 4029}
)
