"""Redaction for clients without events:sensitive: dotted paths, any case, and text rules."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from netsentinel_websocket.config import DEFAULT_REDACT
from netsentinel_websocket.opencanary import normalize
from netsentinel_websocket.redact import (
    MARK,
    Redactor,
    _strings,
    authorization,
    login_attempt,
    url_secrets,
)

EVENT = {
    "event_type": "honeypot.ssh.login_attempt",
    "data": {"src_ip": "203.0.113.7", "logdata": {"USERNAME": "root", "PASSWORD": "hunter2"}},
    "metadata": {"note": "x"},
}


def test_default_paths_hide_attempted_passwords_and_nothing_else():
    original = copy.deepcopy(EVENT)
    hidden = Redactor(DEFAULT_REDACT).apply(EVENT)
    assert hidden is not None
    assert hidden["data"]["logdata"] == {"USERNAME": "root", "PASSWORD": MARK}
    assert hidden["data"]["src_ip"] == "203.0.113.7"
    assert original == EVENT  # the shared event is never changed
    assert hidden["metadata"] is EVENT["metadata"]  # untouched branches are shared, not copied


@pytest.mark.parametrize(
    "paths",
    [
        ["data.logdata.PASSWORD_HASH"],
        ["data.src_ip.port"],  # a number on the way: nothing can be inside it
        ["nope"],
        [],
    ],
)
def test_nothing_to_hide_gives_none(paths):
    event = {**EVENT, "data": {**EVENT["data"], "src_ip": 7}}
    assert Redactor(paths).apply(event) is None


def test_several_paths_and_whole_subtrees():
    hidden = Redactor(["data.logdata", "metadata.note", "event_type"]).apply(EVENT)
    assert hidden == {
        "event_type": MARK,
        "data": {"src_ip": "203.0.113.7", "logdata": MARK},
        "metadata": {"note": MARK},
    }


def test_none_values_are_hidden_too():
    assert Redactor(["data.secret"]).apply({"data": {"secret": None}}) == {"data": {"secret": MARK}}


@pytest.mark.parametrize("name", ["PASSWORD", "password", "Password", "pAsSwOrD"])
def test_field_names_match_in_any_case(name):
    event = {"data": {"logdata": {"USERNAME": "root", name: "hunter2"}}}
    assert Redactor(["data.logdata.PASSWORD"]).apply(event) == {
        "data": {"logdata": {"USERNAME": "root", name: MARK}}
    }
    assert Redactor(["DATA.LogData.password"]).apply(event) is not None


def test_a_string_where_an_object_was_expected_is_hidden_whole():
    event = {"data": {"logdata": "USERNAME=root PASSWORD=hunter2", "src_ip": "203.0.113.7"}}
    assert Redactor(["data.logdata.PASSWORD"]).apply(event) == {
        "data": {"logdata": MARK, "src_ip": "203.0.113.7"}
    }


def test_lists_of_objects_are_looked_into():
    event = {"data": {"logdata": [{"PASSWORD": "a"}, {"USER": "b"}]}}
    assert Redactor(["data.logdata.PASSWORD"]).apply(event) == {
        "data": {"logdata": [{"PASSWORD": MARK}, {"USER": "b"}]}
    }


def test_text_rules_apply_without_any_configured_path():
    event = {"data": {"message": "login attempt [root/hunter2] failed"}}
    assert Redactor([]).apply(event) == {"data": {"message": f"login attempt [root/{MARK}] failed"}}
    assert Redactor([], text_rules=()).apply(event) is None


# --- realistic OpenCanary records through normalize() and the default redactor ---


def record(logtype: int, logdata: Any, **extra: Any) -> dict[str, Any]:
    return {
        "dst_host": "10.0.0.5",
        "dst_port": 80,
        "local_time": "2026-11-24 19:11:10.123456",
        "logdata": logdata,
        "logtype": logtype,
        "node_id": "canary-1",
        "src_host": "203.0.113.7",
        "src_port": 53122,
        "utc_time": "2026-11-24 19:11:10.123456",
        **extra,
    }


# (case, record, secrets that must vanish, context that must stay in the redacted JSON)
CASES = [
    (
        "ssh",
        record(4002, {"USERNAME": "root", "PASSWORD": "Tr0ub4dor&3", "LOCALVERSION": "SSH-2.0"}),
        ["Tr0ub4dor&3"],
        ['"USERNAME":"root"', "SSH-2.0"],
    ),
    (
        "ftp",
        record(2000, {"USERNAME": "anonymous", "PASSWORD": "ftp-secret-77"}),
        ["ftp-secret-77"],
        ["anonymous"],
    ),
    (
        "http login form",
        record(
            3001,
            {
                "USERNAME": "admin",
                "PASSWORD": "form-secret-1",
                "HOSTNAME": "nas.local",
                "PATH": "/index.html",
                "SKIN": "nasLogin",
                "USERAGENT": "curl/8.0",
            },
        ),
        ["form-secret-1"],
        ["admin", "/index.html", "nasLogin"],
    ),
    (
        "http query string",
        record(
            3000,
            {
                "HOSTNAME": "nas.local",
                "PATH": "/login.cgi?user=admin&password=qs-secret-2&lang=en",
                "SKIN": "nasLogin",
                "USERAGENT": "curl/8.0",
            },
        ),
        ["qs-secret-2"],
        ["/login.cgi?user=admin&password=[redacted]&lang=en"],
    ),
    (
        "http query, other names",
        record(
            3002,
            {
                "REQUEST_TYPE": "PUT",
                "PATH": "/api?pass=p1-secret;x=1&pwd=p2-secret"
                "&Passwd=p3-secret&pass%77ord=p4-secret",
            },
        ),
        ["p1-secret", "p2-secret", "p3-secret", "p4-secret"],
        ["/api?pass=[redacted]", "&pwd=[redacted]", "&Passwd=[redacted]", "PUT"],
    ),
    (
        "httpproxy",
        record(7001, {"USERNAME": "squid", "PASSWORD": "proxy-secret-3"}),
        ["proxy-secret-3"],
        ["squid"],
    ),
    (
        "mysql",
        record(8001, {"USERNAME": "root", "PASSWORD": "8b5c6e2f0a1d"}),
        ["8b5c6e2f0a1d"],
        ["root"],
    ),
    (
        "mssql sql auth",
        record(
            9001,
            {
                "HostName": "WS01",
                "UserName": "sa",
                "Password": "mssql-secret-4",
                "AppName": "sqlcmd",
                "ServerName": "db",
                "Database": "master",
            },
        ),
        ["mssql-secret-4"],
        ['"UserName":"sa"', "sqlcmd"],
    ),
    (
        "telnet",
        record(6001, {"USERNAME": "admin", "PASSWORD": "telnet-secret-5"}),
        ["telnet-secret-5"],
        ["admin"],
    ),
    (
        "vnc",
        record(
            12001,
            {
                "VNC Server Challenge": "00112233445566778899aabbccddeeff",
                "VNC Client Response": "a1b2c3d4e5f60718293a4b5c6d7e8f90",
                "VNC Password": "vnc-secret-6",
            },
        ),
        ["vnc-secret-6", "a1b2c3d4e5f60718293a4b5c6d7e8f90"],
        ["00112233445566778899aabbccddeeff"],
    ),
    (
        "snmp",
        record(
            13001,
            {"REQUESTS": ["1.3.6.1.2.1.1.1.0"], "COMMUNITY_STRING": "corp-community-7"},
        ),
        ["corp-community-7"],
        ["1.3.6.1.2.1.1.1.0"],
    ),
    (
        "sip digest",
        record(
            15001,
            {
                "HEADERS": {
                    "from": ["<sip:100@10.0.0.5>;tag=1"],
                    "authorization": [
                        'Digest username="100", realm="asterisk", nonce="4f1c",'
                        ' uri="sip:10.0.0.5", response="deadbeefsipdigest8", algorithm=MD5'
                    ],
                }
            },
        ),
        ["deadbeefsipdigest8"],
        ['username=\\"100\\"', 'realm=\\"asterisk\\"', "sip:100@10.0.0.5"],
    ),
    (
        "sip basic",
        record(15001, {"HEADERS": {"proxy-authorization": ["Basic c2lwOnNpcC1zZWNyZXQtOQ=="]}}),
        ["c2lwOnNpcC1zZWNyZXQtOQ=="],
        ["Basic [redacted]"],
    ),
    (
        "redis auth",
        record(17001, {"CMD": "AUTH", "ARGS": "redis-secret-10"}),
        ["redis-secret-10"],
        ['"CMD":"AUTH"'],
    ),
    (
        "redis acl user auth",
        record(17001, {"CMD": "AUTH", "ARGS": "default redis-secret-11"}),
        ["redis-secret-11"],
        ['"CMD":"AUTH"'],
    ),
    (
        "redis hello auth",
        record(17001, {"CMD": "HELLO", "ARGS": "3 AUTH default redis-secret-12"}),
        ["redis-secret-12"],
        ['"ARGS":"3 AUTH [redacted]"'],
    ),
    (
        "redis config set",
        record(17001, {"CMD": "CONFIG", "ARGS": "SET requirepass redis-secret-13"}),
        ["redis-secret-13"],
        ["SET requirepass [redacted]"],
    ),
    (
        "redis other command kept",
        record(17001, {"CMD": "KEYS", "ARGS": "*"}),
        [],
        ['"ARGS":"*"'],
    ),
    (
        "mongodb createUser",
        record(
            20001,
            {
                "action": "mongodb.command",
                "command": "createUser",
                "query": "{'createUser': 'backup', 'pwd': 'mongo-secret-14', 'roles': []}",
            },
        ),
        ["mongo-secret-14"],
        ["'createUser': 'backup'", "'pwd': '[redacted]'"],
    ),
    (
        "mongodb sasl plain",
        record(
            20001,
            {
                "action": "mongodb.command",
                "command": "query:admin.$cmd",
                "query": "{'saslStart': 1, 'mechanism': 'PLAIN',"
                " 'payload': b'\\x00admin\\x00mongo-secret-15'}",
            },
        ),
        ["mongo-secret-15"],
        ["'mechanism': 'PLAIN'"],
    ),
    (
        "mongodb auth document",
        record(
            20001,
            {
                "action": "mongodb.auth_attempt",
                "username": "admin",
                "mechanism": "MONGODB-CR",
                "auth_data": "{'authenticate': 1, 'user': 'admin', 'key': 'mongo-secret-16'}",
            },
        ),
        ["mongo-secret-16"],
        ['"username":"admin"', "MONGODB-CR"],
    ),
    (
        "tcpbanner keep-alive secret",
        record(18003, {"FUNCTION": "DATA_RECEIVED", "SECRET_STRING": "banner-secret-17"}),
        ["banner-secret-17"],
        ["DATA_RECEIVED"],
    ),
    (
        "logdata sent as a string",
        record(4002, "USERNAME=root PASSWORD=string-secret-18"),
        ["string-secret-18"],
        ["honeypot.ssh.login_attempt"],
    ),
    (
        "logdata sent as a list",
        record(4002, ["root", "list-secret-19"]),
        ["list-secret-19"],
        ["honeypot.ssh.login_attempt"],
    ),
]


@pytest.mark.parametrize(
    ("rec", "secrets", "context"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_opencanary_secrets_never_serialize(rec, secrets, context):
    event = normalize(rec)
    full = orjson.dumps(event)
    for secret in secrets:
        assert secret.encode() in full  # the record really carries it
    hidden = Redactor(DEFAULT_REDACT).apply(event)
    wire = full if hidden is None else orjson.dumps(hidden)
    for secret in secrets:
        assert secret.encode() not in wire
    for text in context:
        assert text.encode() in wire
    assert orjson.dumps(event) == full  # the shared event is untouched
    if not secrets:
        assert hidden is None  # nothing to hide: the unredacted bytes are shared


# --- Cowrie records as the normalizer lays them out: fields under data ---

COWRIE = [
    (
        {"eventid": "cowrie.login.failed", "username": "root", "password": "cowrie-secret-20"},
        "login attempt [root/cowrie-secret-20] failed",
        "login attempt [root/[redacted]] failed",
    ),
    (
        {"eventid": "cowrie.login.success", "username": "pi", "password": "rasp/ber]ry 21"},
        "login attempt [b'pi'/b'rasp/ber]ry 21'] succeeded",
        "login attempt [b'pi'/[redacted]] succeeded",
    ),
    (
        {"eventid": "cowrie.session.file_download", "url": "http://u:cowrie-secret-22@h/x.sh"},
        "Downloaded URL (http://u:cowrie-secret-22@h/x.sh) with SHA-256 9f86d0",
        "Downloaded URL (http://u:[redacted]@h/x.sh) with SHA-256 9f86d0",
    ),
]


@pytest.mark.parametrize(("fields", "message", "shown"), COWRIE)
def test_cowrie_passwords_leave_no_trace(fields, message, shown):
    event = {
        "id": "c-1",
        "event_type": "honeypot.ssh.login_attempt",
        "data": {"src_ip": "203.0.113.7", "session": "a1b2c3", **fields, "message": message},
    }
    hidden = Redactor(DEFAULT_REDACT).apply(event)
    assert hidden is not None
    wire = orjson.dumps(hidden)
    assert b"cowrie-secret" not in wire and b"rasp" not in wire
    assert hidden["data"]["message"] == shown
    assert hidden["data"]["session"] == "a1b2c3"
    assert hidden["data"].get("username") == fields.get("username")


def test_cowrie_download_url_keeps_host_and_path():
    event = {"data": {"url": "http://u:pw-23@198.51.100.4/bins/x86?token=tk-24&arch=x86"}}
    assert Redactor(DEFAULT_REDACT).apply(event) == {
        "data": {"url": f"http://u:{MARK}@198.51.100.4/bins/x86?token={MARK}&arch=x86"}
    }


def test_cowrie_message_without_a_password_is_shared():
    event = {"data": {"message": "New connection: 203.0.113.7:53122 (10.0.0.5:22) [session: a1]"}}
    assert Redactor(DEFAULT_REDACT).apply(event) is None


# --- text rules: exact output, and nothing copied when nothing changes ---


def test_a_text_rule_reaches_strings_in_lists_and_objects():
    scrub = _strings(url_secrets)
    value = ["http://u:pw-1@h/", {"k": "/x?token=tk-2", "n": 3, "ok": "plain"}, 4]
    assert scrub(value, {}) == [
        f"http://u:{MARK}@h/",
        {"k": f"/x?token={MARK}", "n": 3, "ok": "plain"},
        4,
    ]
    unchanged = ["/a", {"k": "/b?x=1", "n": 3}]
    assert scrub(unchanged, {}) is unchanged


def test_a_text_rule_on_an_object_value_redacts_its_strings():
    event = {"data": {"message": {"text": "login attempt [root/pw-3] failed", "n": 1}}}
    assert Redactor([]).apply(event) == {
        "data": {"message": {"text": f"login attempt [root/{MARK}] failed", "n": 1}}
    }
    assert Redactor([]).apply({"data": {"message": {"text": "hello", "n": 1}}}) is None


@pytest.mark.parametrize(
    "event",
    [
        {"data": {"url": ["http://198.51.100.4/x.sh", "http://h/y?arch=x86"]}},  # lists of text
        {"data": {"logdata": [{"USER": "b"}, 7]}},  # a list under a path: nothing in it to hide
        # Text already in redacted form: the rule rebuilds an equal string, which is no change.
        {"data": {"logdata": {"HEADERS": {"authorization": ["Basic [redacted]"]}}}},
        {"data": {"message": "login attempt [root/[redacted]] failed"}},
    ],
)
def test_nothing_changed_is_shared_not_copied(event):
    assert Redactor(["data.logdata.PASSWORD"]).apply(event) is None


def test_a_password_parameter_at_the_start_of_the_text_is_hidden():
    assert url_secrets("password=pw-4&lang=en") == f"password={MARK}&lang=en"
    assert url_secrets("pw=pw-5") == f"pw={MARK}"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (
            'Digest username="100", realm="asterisk", response="deadbeef", algorithm=MD5',
            f'Digest username="100", realm="asterisk", response={MARK}, algorithm=MD5',
        ),
        ("Digest ,,,", f"Digest {MARK}"),  # no parameter to keep: the credential is hidden
        ("Bearer abc.def.ghi", f"Bearer {MARK}"),
        ("c2lwOnNpcA==", MARK),  # no scheme
    ],
)
def test_authorization_values_exactly(value, shown):
    assert authorization(value) == shown


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        ("login attempt [root/pw-6", f"login attempt [root/{MARK}"),  # no closing bracket
        ("login attempt [root/] failed", f"login attempt [root/{MARK}] failed"),  # empty password
        ("[x] login attempt [root/pw-7", f"[x] login attempt [root/{MARK}"),  # `]` only before
    ],
)
def test_login_attempt_edges(message, shown):
    assert login_attempt(message) == shown


@pytest.mark.parametrize(
    ("logdata", "shown"),
    [
        ({"CMD": "AUTH", "ARGS": "redis-secret"}, {"CMD": "AUTH", "ARGS": MARK}),
        ({"ARGS": "default redis-secret", "CMD": "auth"}, {"ARGS": MARK, "CMD": "auth"}),
        ({"ARGS": ["a", "b"], "cmd": " Auth "}, {"ARGS": [MARK, MARK], "cmd": " Auth "}),
        (
            {"CMD": "ACL", "ARGS": "SETUSER alice on >pw-8 ~* +@all"},
            {"CMD": "ACL", "ARGS": f"SETUSER alice on {MARK}"},
        ),
        (
            {"CMD": "acl", "ARGS": "SETUSER bob #9f86d0"},
            {"CMD": "acl", "ARGS": f"SETUSER bob {MARK}"},
        ),
    ],
)
def test_redis_arguments_exactly(logdata, shown):
    event = {"data": {"logdata": logdata}}
    assert Redactor([]).apply(event) == {"data": {"logdata": shown}}


@pytest.mark.parametrize(
    "logdata",
    [
        {"CMD": "AUTH", "ARGS": ""},  # nothing to hide
        {"CMD": "SET", "ARGS": "greeting >hello #1 !x <y"},  # ACL rule syntax only counts in ACL
        {"CMD": 7, "ARGS": "AUTHOR x"},  # no command text; AUTHOR is not AUTH
    ],
)
def test_redis_arguments_without_a_secret_are_kept(logdata):
    assert Redactor([]).apply({"data": {"logdata": logdata}}) is None


def test_keys_that_are_not_strings_are_passed_over():
    event = {1: "one", "data": {2.5: "x", None: "y", "Secret": "pw-9"}}
    assert Redactor(["data.secret"]).apply(event) == {
        1: "one",
        "data": {2.5: "x", None: "y", "Secret": MARK},
    }
