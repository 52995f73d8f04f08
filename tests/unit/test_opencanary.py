"""OpenCanary record normalization: mapping table, field mapping, robustness."""

from __future__ import annotations

import contextlib
import json
import re
import time
from datetime import datetime, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netsentinel_websocket.events import FIELDS, SEVERITIES
from netsentinel_websocket.opencanary import (
    LOGTYPE_NAMES,
    MAPPING,
    RecordError,
    is_opencanary_record,
    normalize,
)

# The event shape and severity scale are events.py's: the normalizer must produce exactly them.
EVENT_KEYS = set(FIELDS)
EVENT_TYPE = re.compile(r"^honeypot\.[a-z0-9_]+\.[a-z0-9_]+$")

# Every LOG_* constant of thinkst/opencanary opencanary/logger.py (LoggerBase).
LOGGER_PY_CONSTANTS = {
    "LOG_BASE_BOOT": 1000,
    "LOG_BASE_MSG": 1001,
    "LOG_BASE_DEBUG": 1002,
    "LOG_BASE_ERROR": 1003,
    "LOG_BASE_PING": 1004,
    "LOG_BASE_CONFIG_SAVE": 1005,
    "LOG_BASE_EXAMPLE": 1006,
    "LOG_FTP_LOGIN_ATTEMPT": 2000,
    "LOG_FTP_AUTH_ATTEMPT_INITIATED": 2001,
    "LOG_HTTP_GET": 3000,
    "LOG_HTTP_POST_LOGIN_ATTEMPT": 3001,
    "LOG_HTTP_UNIMPLEMENTED_METHOD": 3002,
    "LOG_HTTP_REDIRECT": 3003,
    "LOG_SSH_NEW_CONNECTION": 4000,
    "LOG_SSH_REMOTE_VERSION_SENT": 4001,
    "LOG_SSH_LOGIN_ATTEMPT": 4002,
    "LOG_SMB_FILE_OPEN": 5000,
    "LOG_PORT_SYN": 5001,
    "LOG_PORT_NMAPOS": 5002,
    "LOG_PORT_NMAPNULL": 5003,
    "LOG_PORT_NMAPXMAS": 5004,
    "LOG_PORT_NMAPFIN": 5005,
    "LOG_TELNET_LOGIN_ATTEMPT": 6001,
    "LOG_TELNET_CONNECTION_MADE": 6002,
    "LOG_HTTPPROXY_LOGIN_ATTEMPT": 7001,
    "LOG_MYSQL_LOGIN_ATTEMPT": 8001,
    "LOG_MSSQL_LOGIN_SQLAUTH": 9001,
    "LOG_MSSQL_LOGIN_WINAUTH": 9002,
    "LOG_MYSQL_CONNECTION_MADE": 9003,
    "LOG_TFTP": 10001,
    "LOG_NTP_MONLIST": 11001,
    "LOG_VNC": 12001,
    "LOG_SNMP_CMD": 13001,
    "LOG_RDP": 14001,
    "LOG_SIP_REQUEST": 15001,
    "LOG_GIT_CLONE_REQUEST": 16001,
    "LOG_REDIS_COMMAND": 17001,
    "LOG_TCP_BANNER_CONNECTION_MADE": 18001,
    "LOG_TCP_BANNER_KEEP_ALIVE_CONNECTION_MADE": 18002,
    "LOG_TCP_BANNER_KEEP_ALIVE_SECRET_RECEIVED": 18003,
    "LOG_TCP_BANNER_KEEP_ALIVE_DATA_RECEIVED": 18004,
    "LOG_TCP_BANNER_DATA_RECEIVED": 18005,
    "LOG_LLMNR_QUERY_RESPONSE": 19001,
    **{f"LOG_USER_{n}": 99000 + n for n in range(10)},
}

# The table documented in docs/opencanary.md: logtype -> (event_type, severity).
DOCUMENTED = {
    1000: ("honeypot.canary.started", "info"),
    1001: ("honeypot.canary.message", "info"),
    1002: ("honeypot.canary.debug", "info"),
    1003: ("honeypot.canary.error", "info"),
    1004: ("honeypot.canary.ping", "info"),
    1005: ("honeypot.canary.config_saved", "info"),
    1006: ("honeypot.canary.example", "info"),
    2000: ("honeypot.ftp.login_attempt", "high"),
    2001: ("honeypot.ftp.auth_initiated", "high"),
    3000: ("honeypot.http.get", "high"),
    3001: ("honeypot.http.login_attempt", "high"),
    3002: ("honeypot.http.unimplemented_method", "high"),
    3003: ("honeypot.http.redirect", "high"),
    4000: ("honeypot.ssh.connection", "high"),
    4001: ("honeypot.ssh.version_sent", "high"),
    4002: ("honeypot.ssh.login_attempt", "high"),
    5000: ("honeypot.smb.file_open", "critical"),
    5001: ("honeypot.portscan.syn", "high"),
    5002: ("honeypot.portscan.nmap_os", "critical"),
    5003: ("honeypot.portscan.nmap_null", "critical"),
    5004: ("honeypot.portscan.nmap_xmas", "critical"),
    5005: ("honeypot.portscan.nmap_fin", "critical"),
    6001: ("honeypot.telnet.login_attempt", "high"),
    6002: ("honeypot.telnet.connection", "high"),
    7001: ("honeypot.httpproxy.login_attempt", "high"),
    8001: ("honeypot.mysql.login_attempt", "high"),
    9001: ("honeypot.mssql.login_attempt", "high"),
    9002: ("honeypot.mssql.windows_login_attempt", "high"),
    9003: ("honeypot.mysql.connection", "high"),
    10001: ("honeypot.tftp.request", "high"),
    11001: ("honeypot.ntp.monlist", "high"),
    12001: ("honeypot.vnc.login_attempt", "high"),
    13001: ("honeypot.snmp.command", "high"),
    14001: ("honeypot.rdp.login_attempt", "high"),
    15001: ("honeypot.sip.request", "high"),
    16001: ("honeypot.git.clone_request", "high"),
    17001: ("honeypot.redis.command", "high"),
    18001: ("honeypot.tcpbanner.connection", "high"),
    18002: ("honeypot.tcpbanner.keepalive_connection", "high"),
    18003: ("honeypot.tcpbanner.keepalive_secret", "low"),
    18004: ("honeypot.tcpbanner.keepalive_data", "high"),
    18005: ("honeypot.tcpbanner.data_received", "high"),
    19001: ("honeypot.llmnr.query_response", "critical"),
    20001: ("honeypot.mongodb.interaction", "high"),
    **{99000 + n: (f"honeypot.user.event_{n}", "high") for n in range(10)},
}

SSH_LOGIN = {
    "dst_host": "10.0.0.5",
    "dst_port": 22,
    "local_time": "2026-11-24 19:11:10.123456",
    "local_time_adjusted": "2026-11-24 20:11:10.123456",
    "logdata": {
        "LOCALVERSION": "SSH-2.0-OpenSSH_5.1p1 Debian-5",
        "PASSWORD": "hunter2",
        "REMOTEVERSION": "SSH-2.0-libssh2_1.10.0",
        "USERNAME": "root",
    },
    "logtype": 4002,
    "node_id": "canary-dmz-1",
    "src_host": "203.0.113.7",
    "src_port": 53122,
    "utc_time": "2026-11-24 19:11:10.123456",
}


def assert_valid_event(event: dict[str, Any]) -> None:
    """The StandardEvent shape the rest of the plugin relies on."""
    assert set(event) == EVENT_KEYS
    assert isinstance(event["id"], str)
    assert event["id"]
    assert isinstance(event["timestamp"], float)
    assert EVENT_TYPE.match(event["event_type"]), event["event_type"]
    assert isinstance(event["source"], str)
    assert event["source"]
    assert event["severity"] in SEVERITIES
    data = event["data"]
    assert isinstance(data["logtype"], int)
    assert isinstance(data["logdata"], dict)
    assert isinstance(data["service"], str)
    assert "src_ip" not in data or isinstance(data["src_ip"], str)
    for key in ("src_port", "dst_port"):
        assert data[key] is None or (isinstance(data[key], int) and 0 <= data[key] <= 65535)
    assert data["dst_host"] is None or isinstance(data["dst_host"], str)
    assert isinstance(event["tags"], list)
    assert all(isinstance(t, str) for t in event["tags"])
    assert event["correlation_id"] is None or isinstance(event["correlation_id"], str)
    assert event["metadata"]["origin"] == "opencanary"
    orjson.dumps(event)  # it must go on the wire as is


def utc_epoch(*args: int) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


# --- the mapping table ---------------------------------------------------------------------


def test_mapping_covers_every_logger_constant() -> None:
    for name, logtype in LOGGER_PY_CONSTANTS.items():
        assert logtype in MAPPING, name
        assert LOGTYPE_NAMES[logtype] == name


def test_mapping_is_the_documented_table() -> None:
    actual = {
        logtype: (f"honeypot.{m.service}.{m.action}", m.severity) for logtype, m in MAPPING.items()
    }
    assert actual == DOCUMENTED
    assert set(LOGTYPE_NAMES) == set(MAPPING)


def test_mapping_is_read_only() -> None:
    with pytest.raises(TypeError):
        MAPPING[4002] = MAPPING[1000]  # type: ignore[index]


@pytest.mark.parametrize("logtype", sorted(MAPPING))
def test_every_logtype_normalizes(logtype: int) -> None:
    record = {**SSH_LOGIN, "logtype": logtype}
    event = normalize(record)
    assert_valid_event(event)
    event_type, severity = DOCUMENTED[logtype]
    service, action = MAPPING[logtype].service, MAPPING[logtype].action
    assert event["event_type"] == event_type
    assert event["severity"] == severity
    assert event["data"]["service"] == service
    assert event["data"]["logtype"] == logtype
    assert event["tags"] == ["opencanary", service, action]
    assert event["metadata"]["logtype_name"] == LOGTYPE_NAMES[logtype]


def test_severity_policy() -> None:
    for logtype, mapped in MAPPING.items():
        if 1000 <= logtype < 2000:
            assert mapped.severity == "info", logtype  # the sensor's own messages
        else:
            assert mapped.severity in {"low", "high", "critical"}, logtype
        if mapped.action.endswith("login_attempt"):
            assert mapped.severity == "high", logtype
    for logtype in (5002, 5003, 5004, 5005):  # nmap OS/NULL/XMAS/FIN probes
        assert MAPPING[logtype].severity == "critical"


def test_unknown_logtype_still_normalizes() -> None:
    event = normalize({"logtype": 31337, "src_host": "198.51.100.1"})
    assert_valid_event(event)
    assert event["event_type"] == "honeypot.unknown.logtype_31337"
    assert event["severity"] == "high"
    assert event["data"]["service"] == "unknown"
    assert event["metadata"]["logtype_name"] is None
    assert event["tags"] == ["opencanary", "unknown", "logtype_31337"]


# --- field mapping --------------------------------------------------------------------------


def test_ssh_login_attempt_example() -> None:
    event = normalize(SSH_LOGIN)
    assert_valid_event(event)
    assert event["event_type"] == "honeypot.ssh.login_attempt"
    assert event["severity"] == "high"
    assert event["source"] == "canary-dmz-1"
    assert event["timestamp"] == pytest.approx(utc_epoch(2026, 11, 24, 19, 11, 10, 123456))
    assert event["data"] == {
        "src_ip": "203.0.113.7",
        "src_port": 53122,
        "dst_host": "10.0.0.5",
        "dst_port": 22,
        "service": "ssh",
        "logtype": 4002,
        "logdata": SSH_LOGIN["logdata"],
    }
    assert event["data"]["logdata"]["USERNAME"] == "root"
    assert event["data"]["logdata"]["PASSWORD"] == "hunter2"
    assert event["tags"] == ["opencanary", "ssh", "login_attempt"]
    assert event["metadata"] == {
        "origin": "opencanary",
        "logtype_name": "LOG_SSH_LOGIN_ATTEMPT",
        "timestamp_source": "utc_time",
    }
    assert re.fullmatch(r"[0-9a-f]{32}", event["id"])


def test_logdata_is_copied_not_shared() -> None:
    record = json.loads(json.dumps({**SSH_LOGIN, "logdata": {"A": {"B": [1, {"C": 2}]}}}))
    event = normalize(record)
    event["data"]["logdata"]["A"]["B"][1]["C"] = 99
    event["data"]["logdata"].pop("A")
    assert record["logdata"] == {"A": {"B": [1, {"C": 2}]}}


def test_ids_are_unique_unless_the_record_has_one() -> None:
    assert normalize(SSH_LOGIN)["id"] != normalize(SSH_LOGIN)["id"]
    assert normalize({**SSH_LOGIN, "id": "evt-7"})["id"] == "evt-7"
    assert normalize({**SSH_LOGIN, "id": 42})["id"] == "42"


def test_one_flow_shares_a_correlation_id() -> None:
    flow = [normalize({**SSH_LOGIN, "logtype": lt}) for lt in (4000, 4001, 4002)]
    ids = {event["correlation_id"] for event in flow}
    assert len(ids) == 1
    (flow_id,) = ids
    assert flow_id.startswith("flow-")
    assert "203.0.113.7" not in flow_id
    other = normalize({**SSH_LOGIN, "src_port": 53123})
    assert other["correlation_id"] != flow_id


def test_correlation_id_from_record_or_none() -> None:
    assert normalize({**SSH_LOGIN, "correlation_id": "c-1"})["correlation_id"] == "c-1"
    assert (
        normalize({"logtype": 1001, "logdata": {"msg": "Canary running!!!"}})["correlation_id"]
        is None
    )
    assert normalize({**SSH_LOGIN, "src_port": -1})["correlation_id"] is None


def test_honeycred_match_is_critical() -> None:
    event = normalize({**SSH_LOGIN, "honeycred": True})
    assert event["severity"] == "critical"
    assert event["data"]["honeycred"] is True
    assert event["tags"] == ["opencanary", "ssh", "login_attempt", "honeycred"]
    miss = normalize({**SSH_LOGIN, "honeycred": False})
    assert miss["severity"] == "high"
    assert miss["data"]["honeycred"] is False
    assert "honeycred" not in normalize(SSH_LOGIN)["data"]


def test_portscan_record_with_string_ports() -> None:
    # As SynLogWatcher builds it from an iptables kernel log line.
    record = {
        "dst_host": "10.0.0.5",
        "dst_port": "3389",
        "local_time": "2026-11-24 19:11:10.000001",
        "logdata": {"FLAGS": "SYN", "ID": "54321", "IN": "eth0", "PROTO": "TCP", "TTL": "44"},
        "logtype": 5002,
        "node_id": "canary-dmz-1",
        "src_host": "203.0.113.7",
        "src_port": "61000",
        "utc_time": "2026-11-24 19:11:10.000001",
    }
    event = normalize(record)
    assert event["event_type"] == "honeypot.portscan.nmap_os"
    assert event["severity"] == "critical"
    assert event["data"]["src_port"] == 61000
    assert event["data"]["dst_port"] == 3389
    assert event["data"]["logdata"]["FLAGS"] == "SYN"


def test_webhook_message_body_normalizes() -> None:
    body = {"message": json.dumps(SSH_LOGIN, sort_keys=True)}
    event = normalize(json.loads(body["message"]))
    assert event["event_type"] == "honeypot.ssh.login_attempt"
    assert event["data"]["src_ip"] == "203.0.113.7"


def test_opencanary_base_message() -> None:
    # What the sensor logs for itself: no addresses (OpenCanary fills '' and -1).
    record = {
        "dst_host": "",
        "dst_port": -1,
        "logdata": {"msg": "Canary running!!!"},
        "logtype": 1001,
        "node_id": "canary-dmz-1",
        "src_host": "",
        "src_port": -1,
        "utc_time": "2026-11-24 19:00:00.000000",
    }
    event = normalize(record)
    assert event["event_type"] == "honeypot.canary.message"
    assert event["severity"] == "info"
    assert "src_ip" not in event["data"]
    assert event["data"]["src_port"] is None
    assert event["data"]["dst_host"] is None
    assert event["data"]["dst_port"] is None


# --- timestamps -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-24 19:11:10.123456", utc_epoch(2026, 11, 24, 19, 11, 10, 123456)),
        ("2026-11-24 19:11:10", utc_epoch(2026, 11, 24, 19, 11, 10)),
        ("2026-11-24T19:11:10.5Z", utc_epoch(2026, 11, 24, 19, 11, 10, 500000)),
        ("2026-11-24 19:11:10.1234567", utc_epoch(2026, 11, 24, 19, 11, 10, 123456)),
        ("2026-11-24T19:11:10.123+00:00", utc_epoch(2026, 11, 24, 19, 11, 10, 123000)),
        ("2026-11-24T21:11:10+02:00", utc_epoch(2026, 11, 24, 19, 11, 10)),
        (" 2026-11-24 19:11:10.123456 ", utc_epoch(2026, 11, 24, 19, 11, 10, 123456)),
    ],
)
def test_utc_time_parsing(value: str, expected: float) -> None:
    event = normalize({"logtype": 4002, "utc_time": value})
    assert event["timestamp"] == pytest.approx(expected)
    assert event["metadata"]["timestamp_source"] == "utc_time"


@pytest.mark.parametrize("digits", ["", "1", "12", "12345", "123456", "1234567", "123456789"])
@pytest.mark.parametrize("zone", ["", "Z", "+00:00", "-03:30"])
def test_utc_time_is_exact_to_the_microsecond(digits: str, zone: str) -> None:
    """The same float as the aware datetime gives, whatever the fraction's length or zone."""
    offset = {"": 0, "Z": 0, "+00:00": 0, "-03:30": 210}[zone]
    fraction = f".{digits}" if digits else ""
    micro = int(digits[:6].ljust(6, "0")) if digits else 0
    expected = utc_epoch(2026, 11, 24, 19, 11, 10, micro) + offset * 60
    event = normalize({"logtype": 4002, "utc_time": f"2026-11-24 19:11:10{fraction}{zone}"})
    assert event["timestamp"] == expected
    assert event["metadata"]["timestamp_source"] == "utc_time"


def test_local_time_is_the_fallback() -> None:
    # OpenCanary fills local_time from utcnow(); older versions have only that field.
    record = {
        "logtype": 4002,
        "utc_time": "yesterday",
        "local_time": "2026-11-24 19:11:10.000000",
        "local_time_adjusted": "2030-01-01 00:00:00.000000",
    }
    event = normalize(record)
    assert event["timestamp"] == pytest.approx(utc_epoch(2026, 11, 24, 19, 11, 10))
    assert event["metadata"]["timestamp_source"] == "local_time"


@pytest.mark.parametrize("value", [None, "", "not a time", 1700000000, "2026-13-45 99:00:00"])
def test_without_a_usable_time_the_receive_time_is_used(value: object) -> None:
    before = time.time()
    event = normalize({"logtype": 4002, "utc_time": value, "local_time_adjusted": "2030-01-01"})
    after = time.time()
    assert before <= event["timestamp"] <= after
    assert event["metadata"]["timestamp_source"] == "received"


# --- lenient inputs -------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["4002", " 4002 ", 4002, 4002.0])
def test_logtype_forms(value: object) -> None:
    event = normalize({**SSH_LOGIN, "logtype": value})
    assert event["event_type"] == "honeypot.ssh.login_attempt"
    assert event["data"]["logtype"] == 4002


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (22, 22),
        ("22", 22),
        (" 22 ", 22),
        (22.0, 22),
        (0, 0),
        (65535, 65535),
        (-1, None),
        ("-1", None),
        (65536, None),
        ("http", None),
        ("", None),
        (None, None),
        (True, None),
        ([22], None),
    ],
)
def test_ports(value: object, expected: int | None) -> None:
    event = normalize({"logtype": 4002, "src_port": value, "dst_port": value})
    assert event["data"]["src_port"] == expected
    assert event["data"]["dst_port"] == expected


def test_missing_ports_are_none() -> None:
    data = normalize({"logtype": 4002})["data"]
    assert data["src_port"] is None
    assert data["dst_port"] is None


@pytest.mark.parametrize("value", [None, "", "   ", 12345, ["203.0.113.7"]])
def test_no_src_ip_without_a_source_address(value: object) -> None:
    record: dict[str, Any] = {"logtype": 4002}
    if value is not None:
        record["src_host"] = value
    assert "src_ip" not in normalize(record)["data"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Canary running", {"raw": "Canary running"}),
        (["a", "b"], {"raw": ["a", "b"]}),
        (7, {"raw": 7}),
        (None, {}),
        ({}, {}),
    ],
)
def test_non_dict_logdata_is_kept_raw(value: object, expected: dict[str, Any]) -> None:
    assert normalize({"logtype": 1001, "logdata": value})["data"]["logdata"] == expected


def test_logdata_integers_beyond_64_bits_become_text() -> None:
    event = normalize({"logtype": 17001, "logdata": {"ARGS": [2**70, -(2**63), 2**64 - 1]}})
    assert event["data"]["logdata"] == {"ARGS": [str(2**70), -(2**63), 2**64 - 1]}
    orjson.dumps(event)


def test_missing_logdata_is_empty() -> None:
    assert normalize({"logtype": 1001})["data"]["logdata"] == {}


@pytest.mark.parametrize("node_id", [None, "", 7])
def test_source_defaults_to_opencanary(node_id: object) -> None:
    record = {"logtype": 1000} if node_id is None else {"logtype": 1000, "node_id": node_id}
    assert normalize(record)["source"] == "opencanary"


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ([], "record must be a JSON object"),
        ("{}", "record must be a JSON object"),
        (None, "record must be a JSON object"),
        (4002, "record must be a JSON object"),
        ({}, "missing logtype"),
        ({"logtype": None}, "missing logtype"),
        ({"event_type": "threat.detected"}, "missing logtype"),
        ({"logtype": "ssh"}, "logtype must be an integer"),
        ({"logtype": ""}, "logtype must be an integer"),
        ({"logtype": True}, "logtype must be an integer"),
        ({"logtype": 4002.5}, "logtype must be an integer"),
        ({"logtype": float("nan")}, "logtype must be an integer"),
        ({"logtype": float("inf")}, "logtype must be an integer"),
        ({"logtype": "-1"}, "logtype must be an integer"),
        ({"logtype": "+4002"}, "logtype must be an integer"),
        ({"logtype": "4_002"}, "logtype must be an integer"),
        ({"logtype": "\u0664\u0660\u0660\u0662"}, "logtype must be an integer"),
        ({"logtype": "9" * 5000}, "logtype must be an integer"),
        ({"logtype": [4002]}, "logtype must be an integer"),
        ({"logtype": {"n": 4002}}, "logtype must be an integer"),
        ({"logtype": -1}, "logtype out of range"),
        ({"logtype": 2**40}, "logtype out of range"),
        ({"logtype": 1e300}, "logtype out of range"),
    ],
)
def test_bad_records_raise_record_error(record: Any, reason: str) -> None:
    with pytest.raises(RecordError) as caught:
        normalize(record)
    assert str(caught.value) == reason
    assert isinstance(caught.value, ValueError)


def test_absurdly_deep_logdata_is_a_record_error() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(100_000):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(RecordError, match="nested too deeply"):
        normalize({"logtype": 4002, "logdata": deep})


# --- record detection -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (SSH_LOGIN, True),
        ({"logtype": "4002"}, True),
        ({"event_type": "threat.detected", "severity": "high"}, False),
        ({"event_type": "honeypot.ssh.login_attempt", "logtype": 4002}, False),
        ({}, False),
        ([], False),
        ("logtype", False),
        (None, False),
    ],
)
def test_is_opencanary_record(obj: Any, expected: bool) -> None:
    assert is_opencanary_record(obj) is expected


def test_a_normalized_event_is_not_taken_for_a_record() -> None:
    assert not is_opencanary_record(normalize(SSH_LOGIN))


# --- property: anything either normalizes or is refused with RecordError ------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
field_values = {
    "logtype": st.sampled_from(sorted(MAPPING)) | st.integers() | st.text() | json_values,
    "src_host": st.sampled_from(["", "203.0.113.7", "::1"]) | json_values,
    "src_port": st.integers(-2, 70000) | st.text(max_size=6) | json_values,
    "dst_host": json_values,
    "dst_port": st.integers(-2, 70000) | st.text(max_size=6) | json_values,
    "node_id": json_values,
    "logdata": json_values,
    "utc_time": st.datetimes().map(str) | json_values,
    "local_time": st.datetimes().map(str) | json_values,
    "honeycred": json_values,
    "id": json_values,
    "correlation_id": json_values,
}
records = st.fixed_dictionaries({}, optional=field_values).flatmap(
    lambda known: st.dictionaries(st.text(max_size=8), json_values, max_size=3).map(
        lambda extra: {**extra, **known}
    )
)


@settings(max_examples=400, deadline=None)
@given(records)
def test_any_record_normalizes_or_raises_record_error(record: dict[str, Any]) -> None:
    try:
        event = normalize(record)
    except RecordError as err:
        reason = str(err)
    else:
        assert_valid_event(event)
        return
    assert reason


@settings(max_examples=100, deadline=None)
@given(json_values)
def test_any_json_value_normalizes_or_raises_record_error(value: Any) -> None:
    with contextlib.suppress(RecordError):
        assert_valid_event(normalize(value))
