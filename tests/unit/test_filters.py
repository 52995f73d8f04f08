"""Subscription filters: parsing refuses every mistake with a FilterError, matching is exact."""

from __future__ import annotations

import pytest

from netsentinel_websocket.filters import MATCH_ALL, FilterError, parse_filter

EVENT = {
    "event_type": "honeypot.ssh.login_attempt",
    "severity": "high",
    "data": {"src_ip": "203.0.113.7"},
    "tags": ["ssh", "bruteforce"],
}


@pytest.mark.parametrize(
    ("raw", "matches"),
    [
        (None, True),
        ({}, True),
        ({"min_severity": "high"}, True),
        ({"min_severity": "critical"}, False),
        ({"event_types": ["honeypot.*"]}, True),
        ({"event_types": ["threat.*", "honeypot.ssh.*"]}, True),
        ({"event_types": ["honeypot.ftp.*"]}, False),
        ({"event_types": ["honeypot.ssh.login_attempt?"]}, False),
        ({"src_ip": ["203.0.113.0/24"]}, True),
        ({"src_ip": ["203.0.113.7"]}, True),
        ({"src_ip": ["198.51.100.0/24", "2001:db8::/32"]}, False),
        ({"tags": ["web", "ssh"]}, True),
        ({"tags": ["web"]}, False),
        (
            {"min_severity": "low", "event_types": ["*"], "src_ip": ["0.0.0.0/0"], "tags": ["ssh"]},
            True,
        ),
        ({"min_severity": "low", "tags": ["web"]}, False),
    ],
)
def test_match(raw, matches):
    assert parse_filter(raw).match(EVENT) is matches


@pytest.mark.parametrize(
    "data",
    [{}, {"src_ip": "not an address"}, {"src_ip": 7}, {"src_ip": "2001:db8::1"}, "not a mapping"],
)
def test_src_ip_filter_refuses_events_without_a_matching_v4_source(data):
    assert not parse_filter({"src_ip": ["0.0.0.0/0"]}).match({**EVENT, "data": data})


def test_ipv6_networks_match_ipv6_sources():
    flt = parse_filter({"src_ip": ["2001:db8::/32"]})
    assert flt.match({**EVENT, "data": {"src_ip": "2001:db8::1"}})


def test_an_empty_filter_is_the_shared_match_all():
    assert parse_filter({}) is MATCH_ALL and parse_filter({"tags": None}) is MATCH_ALL


def test_equal_filters_share_a_key_whatever_the_order():
    a = parse_filter({"tags": ["b", "a"], "event_types": ["x.*", "y.*"]})
    b = parse_filter({"event_types": ["y.*", "x.*", "x.*"], "tags": ["a", "b"]})
    assert a.key == b.key


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "filter must be an object"),
        ("high", "filter must be an object"),
        ({"severity": "high"}, "unknown filter key 'severity'"),
        ({"k" * 500: 1}, "unknown filter key '" + "k" * 40 + "'"),
        (
            {"min_severity": "HIGH"},
            "filter.min_severity must be one of info, low, medium, high, critical",
        ),
        (
            {"min_severity": 3},
            "filter.min_severity must be one of info, low, medium, high, critical",
        ),
        (
            {"min_severity": ["high"]},
            "filter.min_severity must be one of info, low, medium, high, critical",
        ),
        ({"event_types": "threat.*"}, "filter.event_types must be a list of non-empty strings"),
        ({"event_types": [""]}, "filter.event_types must be a list of non-empty strings"),
        ({"event_types": [1]}, "filter.event_types must be a list of non-empty strings"),
        ({"event_types": ["threat.["]}, "filter.event_types: bad glob 'threat.['"),
        ({"event_types": ["a"] * 65}, "filter.event_types has more than 64 items"),
        ({"event_types": ["a" * 201]}, "filter.event_types items must be at most 200 characters"),
        ({"src_ip": ["10.0.0.0/33"]}, "filter.src_ip: bad CIDR '10.0.0.0/33'"),
        ({"src_ip": ["evil.example"]}, "filter.src_ip: bad CIDR 'evil.example'"),
        ({"src_ip": ["1" * 300]}, "filter.src_ip items must be at most 200 characters"),
        ({"tags": [None]}, "filter.tags must be a list of non-empty strings"),
        ({"tags": {"a": 1}}, "filter.tags must be a list of non-empty strings"),
    ],
)
def test_bad_filters(raw, message):
    with pytest.raises(FilterError) as info:
        parse_filter(raw)
    assert str(info.value).startswith(message)
    assert len(str(info.value)) < 150


def test_bad_glob_message_names_the_pattern_exactly():
    with pytest.raises(FilterError) as info:
        parse_filter({"event_types": ["threat.["]})
    assert str(info.value) == "filter.event_types: bad glob 'threat.[': unbalanced brackets"


def test_up_to_64_items_of_up_to_200_characters_are_accepted():
    flt = parse_filter({"tags": [f"t{n}" for n in range(63)] + ["x" * 200]})
    assert flt.match({**EVENT, "tags": ["x" * 200]})
    assert not flt.match({**EVENT, "tags": ["x" * 199]})


def test_filters_that_differ_only_in_min_severity_have_different_keys():
    keys = {parse_filter({"min_severity": s, "tags": ["ssh"]}).key for s in ("low", "high")}
    keys.add(parse_filter({"tags": ["ssh"]}).key)
    assert keys == {
        ("low", (), (), ("ssh",)),
        ("high", (), (), ("ssh",)),
        ("", (), (), ("ssh",)),
    }


def test_a_cidr_with_host_bits_means_its_network():
    flt = parse_filter({"src_ip": ["203.0.113.7/24"]})
    assert flt.match({**EVENT, "data": {"src_ip": "203.0.113.200"}})
    assert not flt.match({**EVENT, "data": {"src_ip": "203.0.114.1"}})
    v6 = parse_filter({"src_ip": ["2001:db8::1/32"]})
    assert v6.match({**EVENT, "data": {"src_ip": "2001:db8:ffff::9"}})


@pytest.mark.parametrize("severity", [None, "urgent", 3])
def test_an_event_without_a_known_severity_ranks_below_low(severity):
    event = {k: v for k, v in EVENT.items() if k != "severity"}
    if severity is not None:
        event["severity"] = severity
    assert parse_filter({"min_severity": "low"}).match(event) is False
    assert parse_filter({"tags": ["ssh"]}).match(event) is True


def test_an_event_without_event_type_matches_only_patterns_of_the_empty_name():
    event = {k: v for k, v in EVENT.items() if k != "event_type"}
    assert parse_filter({"event_types": ["*"]}).match(event) is True
    assert parse_filter({"event_types": ["?*"]}).match(event) is False
