"""The message token bucket: burst, refusal, close at twice the rate, refill over time."""

from __future__ import annotations

import pytest

from netsentinel_websocket.ratelimit import TokenBucket, Verdict


def verdicts(bucket: TokenBucket, times: list[float]) -> list[str]:
    return [bucket.take(t).value[0] for t in times]  # o(k), l(imited), c(lose)


def test_a_burst_of_rate_then_refusals_then_close():
    bucket = TokenBucket(5, 0.0)
    assert "".join(verdicts(bucket, [0.0] * 11)) == "ooooolllllc"


def test_a_client_at_the_rate_is_never_refused():
    bucket = TokenBucket(10, 0.0)
    assert set(verdicts(bucket, [i / 10 for i in range(1, 200)])) == {"o"}


def test_refused_messages_are_forgiven_over_time():
    bucket = TokenBucket(2, 0.0)
    assert "".join(verdicts(bucket, [0.0, 0.0, 0.0, 0.0])) == "ooll"
    # a second later the burst is back in full
    assert "".join(verdicts(bucket, [1.0, 1.0, 1.0, 1.0, 1.0])) == "oollc"


def test_between_the_rate_and_twice_it_messages_are_refused_not_closed():
    bucket = TokenBucket(4, 0.0)
    results = "".join(verdicts(bucket, [i / 7 for i in range(700)]))
    assert "c" not in results
    assert results[100:].count("o") == pytest.approx(600 * 4 / 7, abs=2)


def test_more_than_twice_the_rate_is_closed_however_it_is_spaced():
    bucket = TokenBucket(4, 0.0)
    results = "".join(verdicts(bucket, [i / 9 for i in range(100)]))
    assert "c" in results and results.index("c") > 8


def test_a_rate_below_one_still_allows_one_message():
    bucket = TokenBucket(0.1, 0.0)
    assert "".join(verdicts(bucket, [0.0, 0.0, 0.0, 10.0])) == "olco"


def test_a_clock_going_backwards_gives_nothing_back():
    bucket = TokenBucket(1, 10.0)
    assert verdicts(bucket, [10.0, 5.0]) == ["o", "l"]


def test_verdict_names():
    assert {v.value for v in Verdict} == {"ok", "limited", "close"}
