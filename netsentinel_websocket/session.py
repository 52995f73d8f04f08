"""One client's protocol on ``/ws`` without I/O: what arrives and the time in, actions out.

:class:`Session` decides everything protocol v1 says about a connection: which token of the
handshake counts, that nothing but ``auth`` is accepted before a token, the message rate,
parsing, scopes and channel checks, the rules of a refresh, the auth and expiry timers, every
reply and every close. It never touches a socket, a timer, the hub or the token verifier: each
call returns a list of actions, and the caller (``connection.WebSocketEndpoint``, a thin
Tornado adapter) carries them out in order, feeding results back:

- :class:`Verify`: check the token (may await a JWKS fetch), then call :meth:`Session.verified`
  with the principal, or :meth:`Session.refused` with the error's reason;
- :class:`Send` a server message; :class:`Fail` with an ``error`` reply (counted by its code);
- :class:`Close` with a :class:`~.disconnect.Disconnect` (nothing is sent after it);
- :class:`Join` the hub with a subscribe request (the hub writes the ``subscribed`` reply);
  :class:`Leave` channels; :class:`Regroup` after the redaction class changed;
- :class:`Acknowledge` an alert through the host, then call :meth:`Session.acknowledged`;
- :class:`Arm` the single timer (``None`` cancels it) and call :meth:`Session.timer` when it
  fires.

The session mirrors which channels it is subscribed to, so its checks (the subscription limit,
the channels a refresh takes away) need no look into the hub.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import disconnect, protocol
from .auth import Principal, bearer_token
from .disconnect import Disconnect
from .protocol import Ack, Auth, Ping, ProtocolError, Request, RequestId, Subscribe, Unsubscribe
from .ratelimit import TokenBucket, Verdict


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """What a session needs of the configuration (built by ``config.validate``)."""

    auth_timeout: float
    allow_query_token: bool
    leeway: float
    messages_per_second: float
    max_subscriptions: int


@dataclass(frozen=True, slots=True)
class Send:
    message: bytes


@dataclass(frozen=True, slots=True)
class Fail:
    error: ProtocolError


@dataclass(frozen=True, slots=True)
class Close:
    disconnect: Disconnect


@dataclass(frozen=True, slots=True)
class Verify:
    token: str
    request_id: RequestId


@dataclass(frozen=True, slots=True)
class Join:
    request: Subscribe


@dataclass(frozen=True, slots=True)
class Leave:
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Regroup:
    pass


@dataclass(frozen=True, slots=True)
class Acknowledge:
    request: Ack
    subject: str


@dataclass(frozen=True, slots=True)
class Arm:
    """Set the connection's one timer to fire ``delay`` seconds from now (None: cancel it)."""

    delay: float | None


Action = Send | Fail | Close | Verify | Join | Leave | Regroup | Acknowledge | Arm

AUTH_TIMEOUT = disconnect.UNAUTHENTICATED.because("auth timeout")


class Session:
    """The state of one connection's protocol; see the module docstring for the contract."""

    __slots__ = (
        "_settings",
        "_channels",
        "_connection_id",
        "_node_id",
        "_bucket",
        "principal",
        "subscriptions",
        "closed",
    )

    def __init__(
        self,
        settings: SessionSettings,
        channels: tuple[str, ...],
        connection_id: str,
        node_id: str,
        now: float,
    ) -> None:
        """``channels`` are the server's; ``now`` is the monotonic clock (rate limiting)."""
        self._settings = settings
        self._channels = channels
        self._connection_id = connection_id
        self._node_id = node_id
        self._bucket = TokenBucket(settings.messages_per_second, now)
        self.principal: Principal | None = None
        self.subscriptions: set[str] = set()
        self.closed = False

    # --- handshake and authentication ---

    def handshake(
        self, authorization: str | None, subprotocol_token: str | None, query_token: str | None
    ) -> list[Action]:
        """The connection is open: the token it brought (header first, then the subprotocol,
        then the query where allowed), or a timer for the first-message ``auth``."""
        if authorization is not None:
            token = bearer_token(authorization)
            if token is None:
                return self._close(
                    disconnect.UNAUTHENTICATED.because("malformed authorization header")
                )
            return self._verify(token, None)
        if subprotocol_token is not None:
            return self._verify(subprotocol_token, None)
        if query_token is not None:
            if not self._settings.allow_query_token:
                return self._close(disconnect.UNAUTHENTICATED.because("query token not allowed"))
            return self._verify(query_token, None)
        return [Arm(self._settings.auth_timeout)]

    def verified(self, principal: Principal, request_id: RequestId, now: float) -> list[Action]:
        """The token of the last :class:`Verify` is good (``now``: wall clock, epoch seconds)."""
        if self.closed:
            return []
        previous = self.principal
        actions: list[Action] = []
        if previous is None:
            self.principal = principal
            actions.append(
                Send(
                    protocol.welcome(
                        self._connection_id,
                        self._node_id,
                        now,
                        principal.allowed_channels(self._channels),
                        principal.expires_at,
                    )
                )
            )
        else:
            if principal.subject != previous.subject:
                return self._close(disconnect.UNAUTHENTICATED.because("subject changed"))
            self.principal = principal
            lost = tuple(c for c in sorted(self.subscriptions) if not principal.can_subscribe(c))
            if lost:
                self.subscriptions.difference_update(lost)
                actions += [
                    Leave(lost),
                    Send(protocol.reply("unsubscribed", None, channels=list(lost))),
                ]
            if principal.sensitive != previous.sensitive:
                actions.append(Regroup())
        if request_id is not None or previous is not None:
            actions.append(
                Send(protocol.reply("auth_ok", request_id, expires_at=int(principal.expires_at)))
            )
        actions.append(Arm(max(0.0, principal.expires_at + self._settings.leeway - now)))
        return actions

    def refused(self, reason: str) -> list[Action]:
        """The token of the last :class:`Verify` was refused for ``reason``."""
        return self._close(disconnect.UNAUTHENTICATED.because(reason))

    def timer(self) -> list[Action]:
        """The timer armed last has fired: no token in time, or the token expired."""
        if self.closed:
            return []
        if self.principal is None:
            return self._close(AUTH_TIMEOUT)
        return self._close(disconnect.TOKEN_EXPIRED)

    # --- messages ---

    def receive(self, message: str | bytes, now: float, wall: float) -> list[Action]:
        """One client message (``now``: the monotonic clock, ``wall``: epoch seconds)."""
        if self.closed:
            return []
        if isinstance(message, bytes):
            return self._close(disconnect.BINARY)
        if self.principal is None:
            return self._first_message(message)
        verdict = self._bucket.take(now)
        if verdict is Verdict.CLOSE:
            return self._close(disconnect.RATE_EXCEEDED)
        if verdict is Verdict.LIMITED:  # not parsed further, but the reply names its request
            request_id = protocol.peek_id(message)
            return [Fail(ProtocolError("rate_limited", "too many messages; slow down", request_id))]
        try:
            return self._dispatch(protocol.parse(message), wall)
        except ProtocolError as exc:
            return [Fail(exc)]

    def acknowledged(self, request_id: RequestId, recorded: bool | None) -> list[Action]:
        """The host's answer to :class:`Acknowledge`: True recorded, False its hook failed,
        None nobody handles acknowledgements."""
        if recorded:
            return [Send(protocol.reply("ack_ok", request_id))]
        if recorded is None:
            return [
                Fail(ProtocolError("unavailable", "no host handles acknowledgements", request_id))
            ]
        return [Fail(ProtocolError("ack_failed", "the host could not record it", request_id))]

    def close(self, reason: Disconnect) -> list[Action]:
        """Close for a reason decided outside the protocol (admission, shutdown, slow consumer)."""
        return self._close(reason)

    def _first_message(self, message: str) -> list[Action]:
        try:
            request = protocol.parse(message)
        except ProtocolError:
            request = None
        if not isinstance(request, Auth):
            return self._close(disconnect.UNAUTHENTICATED)
        return self._verify(request.token, request.id)

    def _dispatch(self, request: Request, wall: float) -> list[Action]:
        principal = self.principal
        assert principal is not None
        if isinstance(request, Subscribe):
            return self._subscribe(request, principal)
        if isinstance(request, Unsubscribe):
            removed = [c for c in request.channels if c in self.subscriptions]
            self.subscriptions.difference_update(removed)
            return [
                Leave(tuple(removed)),
                Send(protocol.reply("unsubscribed", request.id, channels=removed)),
            ]
        if isinstance(request, Ping):
            return [Send(protocol.reply("pong", request.id, server_time=wall))]
        if isinstance(request, Auth):
            return self._verify(request.token, request.id)
        if not principal.has("alerts:ack"):
            return [Fail(ProtocolError("forbidden", "token lacks alerts:ack", request.id))]
        return [Acknowledge(request, principal.subject)]

    def _subscribe(self, request: Subscribe, principal: Principal) -> list[Action]:
        for channel in request.channels:
            if channel not in self._channels:
                raise ProtocolError("unknown_channel", f"no channel {channel!r}", request.id)
            if not principal.can_subscribe(channel):
                raise ProtocolError("forbidden", f"token does not allow {channel!r}", request.id)
        if len(self.subscriptions | set(request.channels)) > self._settings.max_subscriptions:
            raise ProtocolError("too_many_subscriptions", "subscription limit reached", request.id)
        self.subscriptions.update(request.channels)
        return [Join(request)]

    def _verify(self, token: str, request_id: RequestId) -> list[Action]:
        return [Verify(token, request_id)]

    def _close(self, reason: Disconnect) -> list[Action]:
        if self.closed:
            return []
        self.closed = True
        return [Arm(None), Close(reason)]
