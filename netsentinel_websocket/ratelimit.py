"""Client message rate limiting: the decision only, without timers (the caller passes the time)."""

from __future__ import annotations

from enum import Enum


class Verdict(Enum):
    OK = "ok"
    LIMITED = "limited"  # answer with a rate_limited error
    CLOSE = "close"  # close with 4008


class TokenBucket:
    """``rate`` messages per second with a burst of ``rate`` (at least 1); more are refused, and
    a client sending more than twice that (burst twice as large) is closed.

    Two buckets: one of ``rate`` that every answered message takes from, one of ``2 * rate``
    that every message, refused or not, takes from. A client that ignores its ``rate_limited``
    errors empties the second one, however its messages are spaced.
    """

    __slots__ = ("_rate", "_burst", "_tokens", "_allowance", "_last")

    def __init__(self, rate: float, now: float) -> None:
        self._rate = rate
        self._burst = max(1.0, rate)  # below 1/s a client could otherwise never send anything
        self._tokens = self._burst
        self._allowance = 2 * self._burst
        self._last = now

    def take(self, now: float) -> Verdict:
        """The verdict on one message arriving at ``now`` (monotonic seconds)."""
        elapsed = max(0.0, now - self._last)
        self._last = now
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        self._allowance = min(2 * self._burst, self._allowance + 2 * elapsed * self._rate)
        if self._allowance < 1:
            return Verdict.CLOSE
        self._allowance -= 1
        if self._tokens >= 1:
            self._tokens -= 1
            return Verdict.OK
        return Verdict.LIMITED
