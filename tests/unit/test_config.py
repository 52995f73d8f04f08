"""Configuration validation: every kind of bad key is refused with a message naming it."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

from netsentinel_websocket import config
from netsentinel_websocket.config import (
    KEYS,
    ConfigError,
    TLSFiles,
    keys_markdown,
    load_file,
    validate,
)

from ..keyfiles import p384_key, write_public_key, write_tls_pair

SECRET = "a-long-enough-secret-0123456789"


def test_defaults_are_safe_and_complete():
    settings = validate({})
    assert settings["websocket.enabled"] is False
    assert settings["websocket.path"] == "/ws"
    assert settings["websocket.auth.jwt.secret"] is None
    assert settings["websocket.auth.allow_query_token"] is False
    assert settings["websocket.queue.max_bytes"] == 1024 * 1024
    assert settings["websocket.limits.max_message_bytes"] == 64 * 1024
    assert settings["websocket.broker"] == "memory"
    assert settings["server.port"] == 8082
    assert "data.logdata.PASSWORD" in settings["websocket.redact"]
    assert set(settings) == {k.name for k in KEYS}


def test_other_components_keys_are_ignored():
    settings = validate({"ftp.enabled": True, "device.node_id": "x", "websocket.enabled": True})
    assert settings["websocket.enabled"] is True


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("websocket.enabled", "yes", "must be true or false"),
        ("websocket.enabled", 1, "must be true or false"),
        ("websocket.history.size", "100", "must be an integer"),
        ("websocket.history.size", 1.5, "must be an integer"),
        ("websocket.history.size", True, "must be an integer"),
        ("websocket.history.size", -1, "must be between"),
        ("websocket.queue.max_bytes", 10, "must be between"),
        ("websocket.auth.timeout", "5", "must be a number"),
        ("websocket.auth.timeout", 0, "must be between"),
        ("websocket.auth.jwt.leeway", 1e9, "must be between"),
        ("websocket.path", "ws", "must be a URL path"),
        ("websocket.auth.jwt.algorithms", "HS256", "must be a list of strings"),
        ("websocket.auth.jwt.algorithms", ["none"], "unsupported algorithm"),
        ("websocket.auth.jwt.algorithms", [], "at least one algorithm"),
        ("websocket.auth.jwt.secret", 12345, "must be a string"),
        ("websocket.auth.jwt.secret", "short", "at least 16 characters"),
        ("websocket.auth.jwt.public_key", "/nonexistent/key.pem", "file not found"),
        ("websocket.auth.jwt.jwks_url", "ftp://x", "http:// or https://"),
        ("websocket.allowed_origins", ["https://ok.example/path"], "bad origin"),
        ("websocket.redact", ["data..x"], "bad dotted path"),
        ("websocket.channels", ["Bad Name"], "bad channel name"),
        ("websocket.routes", [{"channel": "nope"}], "is not declared"),
        ("websocket.routes", [{"channel": "events", "min_severity": "huge"}], "min_severity"),
        ("websocket.routes", [{"channel": "events", "colour": "red"}], "unknown field"),
        ("websocket.routes", {"channel": "events"}, "must be a list"),
        ("websocket.broker", "kafka://x", "must be 'memory' or a redis://"),
        ("websocket.ingest.tcp", "1514", "must be 'host:port'"),
        ("websocket.ingest.tcp", "localhost:99999", "must be 'host:port'"),
        ("server.port", 70000, "must be between"),
        ("server.tls.cert", "/nonexistent/cert.pem", "file not found"),
        ("server.log_format", "xml", "'text' or 'json'"),
        ("server.gc_threshold", -1, "between 0 and 10000000"),
        ("websocket.auth.jwt.jwks_max_age", 1, "between 10 and 86400"),
        ("websocket.auth.jwt.jwks_min_refresh", "10s", "must be a number"),
        ("websocket.nonsense", 1, "unknown key"),
        ("server.prot", 1, "unknown key"),
    ],
)
def test_bad_values_name_the_key(key, value, message):
    with pytest.raises(ConfigError) as info:
        validate({key: value})
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}: ")
    assert message in str(info.value)


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ConfigError, match=r"did you mean websocket\.history\.size"):
        validate({"websocket.history.sise": 10})


def test_asymmetric_algorithm_needs_a_key():
    with pytest.raises(ConfigError) as info:
        validate({"websocket.auth.jwt.algorithms": ["RS256"]})
    assert info.value.key == "websocket.auth.jwt.algorithms"
    assert "public_key or websocket.auth.jwt.jwks_url" in str(info.value)


def test_tls_cert_and_key_go_together(tmp_path: Path):
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError) as info:
        validate({"server.tls.cert": str(cert)})
    assert info.value.key == "server.tls.key"


def test_env_expansion():
    env = {"NS_SECRET": SECRET, "NS_PORT_HOST": "10.0.0.1"}
    settings = validate(
        {
            "websocket.auth.jwt.secret": "${NS_SECRET}",
            "websocket.ingest.tcp": "${NS_PORT_HOST}:1514",
            "websocket.allowed_origins": ["https://${NS_PORT_HOST}"],
        },
        environ=env,
    )
    assert settings["websocket.auth.jwt.secret"] == SECRET
    assert settings["websocket.ingest.tcp"] == ("10.0.0.1", 1514)
    assert settings["websocket.allowed_origins"] == ("https://10.0.0.1",)


def test_unset_env_variable_is_an_error_not_a_literal_secret():
    with pytest.raises(ConfigError) as info:
        validate({"websocket.auth.jwt.secret": "${NS_UNSET_SECRET}"}, environ={})
    assert info.value.key == "websocket.auth.jwt.secret"
    assert "NS_UNSET_SECRET is not set" in str(info.value)


def test_secrets_are_hidden_in_repr():
    settings = validate({"websocket.auth.jwt.secret": SECRET})
    assert SECRET not in repr(settings)
    assert "***" in repr(settings)


def test_config_must_be_an_object():
    with pytest.raises(ConfigError, match="JSON object"):
        validate(["websocket.enabled"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "not valid JSON"), ("[1, 2]", "JSON object"), (b"\xff\xfe", "not valid JSON")],
)
def test_load_file_problems(tmp_path: Path, content, message):
    path = tmp_path / "config.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_file(str(path))


def test_load_file_missing(tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_file(str(tmp_path / "missing.json"))


def test_load_file_round_trip(tmp_path: Path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"websocket.enabled": True}))
    assert load_file(str(path)) == {"websocket.enabled": True}


def test_the_docs_hold_the_keys_table_made_from_the_schema():
    doc = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    assert keys_markdown() in doc, "regenerate the table in docs/configuration.md"
    table = keys_markdown().splitlines()
    assert len(table) == len(KEYS) + 2 and all(f"`{k.name}`" in doc for k in KEYS)


@pytest.mark.parametrize("key", ["websocket.auth.jwt.secret", "websocket.dashboard.token"])
@pytest.mark.parametrize("value", [1234567890123456789, ["s3cr3t-in-a-list"], {"v": "s3cr3t"}])
def test_a_secret_of_the_wrong_type_is_never_echoed(key, value):
    with pytest.raises(ConfigError) as caught:
        validate({key: value})
    assert caught.value.key == key
    for shown in ("1234567890123456789", "s3cr3t"):
        assert shown not in str(caught.value)
    assert "value not shown" in str(caught.value)


# --- one validation path: what would stop `serve` at start-up is refused here -----------------


def test_a_route_glob_that_does_not_compile_names_the_routes_key():
    for types in (["alert.[x"], [], [""]):
        with pytest.raises(ConfigError) as info:
            validate({"websocket.routes": [{"channel": "alerts", "event_types": types}]})
        assert info.value.key == "websocket.routes"
        assert "rule 1: 'event_types'" in str(info.value)  # counted from 1


def test_a_redis_broker_needs_the_redis_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "redis", None)  # import redis raises ImportError
    with pytest.raises(ConfigError) as info:
        validate({"websocket.broker": "redis://127.0.0.1:6379/0"})
    assert info.value.key == "websocket.broker"
    assert "pip install 'netsentinel-websocket[redis]'" in str(info.value)
    assert validate({"websocket.broker": "memory"}).websocket.node.broker == "memory"


def test_a_redis_address_with_a_bad_port_is_refused():
    with pytest.raises(ConfigError, match=r"^websocket\.broker: the port"):
        validate({"websocket.broker": "redis://:pw@127.0.0.1:99999/0"})


def public_key_file(tmp_path: Path, key: object | None = None) -> str:
    return str(write_public_key(tmp_path / "pub.pem", key))


@pytest.mark.parametrize(
    ("config", "key", "message"),
    [
        ({"websocket.auth.jwt.secret": "PEM"}, "secret", "secret is a public key"),
        (
            {"websocket.auth.jwt.algorithms": ["RS256"], "websocket.auth.jwt.public_key": "TEXT"},
            "public_key",
            "not a PEM public key",
        ),
        ({"websocket.auth.jwt.public_key": "RSA"}, "public_key", "fits none of the allowed"),
        (
            {"websocket.auth.jwt.algorithms": ["ES256"], "websocket.auth.jwt.public_key": "P384"},
            "public_key",
            "fits none of the allowed",
        ),
        ({"websocket.auth.jwt.jwks_url": "https://idp/jwks"}, "jwks_url", "no asymmetric"),
    ],
)
def test_key_material_the_verifier_refuses_names_its_key(tmp_path: Path, config, key, message):
    text = tmp_path / "text.pem"
    text.write_text("not a key")
    files = {
        "PEM": write_public_key(tmp_path / "rsa.pem").read_text(),
        "TEXT": str(text),
        "RSA": public_key_file(tmp_path),
        "P384": str(write_public_key(tmp_path / "p384.pem", p384_key())),
    }
    config = {k: files.get(v, v) if isinstance(v, str) else v for k, v in config.items()}
    with pytest.raises(ConfigError) as info:
        validate(config)
    assert info.value.key == f"websocket.auth.jwt.{key}"
    assert message in str(info.value)


def test_the_public_key_is_read_once_into_the_verifier_settings(tmp_path: Path):
    path = public_key_file(tmp_path)
    settings = validate(
        {"websocket.auth.jwt.algorithms": ["RS256"], "websocket.auth.jwt.public_key": path}
    )
    assert settings["websocket.auth.jwt.public_key"] == path
    assert settings.websocket.jwt.public_key == Path(path).read_text()


def test_tls_files_that_do_not_load_name_the_file_at_fault(tmp_path: Path):
    cert, key = write_tls_pair(tmp_path, "a")
    other_cert, other_key = write_tls_pair(tmp_path, "b")
    locked_cert, locked_key = write_tls_pair(tmp_path, "c", passphrase=b"sesame")
    cases = [
        (key, key, "server.tls.cert", "holds no PEM certificate"),
        (cert, other_key, "server.tls.key", "is not the PEM private key of server.tls.cert"),
        (cert, cert, "server.tls.key", "is not the PEM private key"),
        (locked_cert, locked_key, "server.tls.key", "is encrypted"),
    ]
    for cert_file, key_file, name, message in cases:
        with pytest.raises(ConfigError) as info:
            validate({"server.tls.cert": str(cert_file), "server.tls.key": str(key_file)})
        assert (info.value.key, message in str(info.value)) == (name, True)
    tls = validate({"server.tls.cert": str(cert), "server.tls.key": str(key)}).server.tls
    assert tls is not None and tls.context() is not None


@pytest.mark.parametrize(
    ("config", "key", "message"),
    [
        (
            {"websocket": {"enabled": True, "auth": {"jwt": {"secret": SECRET}}}},
            "websocket",
            'flat dotted keys ("websocket.enabled", "websocket.auth.jwt.secret")',
        ),
        ({"websocket": True}, "websocket", 'flat dotted keys such as "websocket.enabled"'),
        ({"server": {"port": 80}}, "server", '("server.port")'),
        (
            {"websocket.auth": {"jwt.secret": SECRET}},
            "websocket.auth",
            '"websocket.auth.jwt.secret"',
        ),
    ],
)
def test_nested_objects_are_refused_with_the_flat_keys_they_meant(config, key, message):
    with pytest.raises(ConfigError) as info:
        validate(config)
    assert info.value.key == key
    assert message in str(info.value)
    assert SECRET not in str(info.value)


# --- warnings: it starts, but probably not as meant --------------------------------------------


def warnings_of(config: dict) -> list[str]:
    """The warnings of an enabled configuration with a key (unless ``config`` replaces it)."""
    enabled = {"websocket.enabled": True, "websocket.auth.jwt.secret": "k" * 16}
    settings = validate({**enabled, **config}, environ={"HOST": "h"})
    return [str(w) for w in settings.warnings]


def test_no_key_at_all_is_a_warning():
    """Safe (everyone is refused) but surely not meant: serve logs it, check-config prints it."""
    assert warnings_of({"websocket.auth.jwt.secret": None}) == [
        "websocket.auth.jwt.secret: unset, and no .public_key or .jwks_url either: every "
        "connection is refused (4001 no key configured)"
    ]


def test_a_disabled_plugin_is_a_warning():
    assert [str(w) for w in validate({}).warnings] == [
        "websocket.enabled: is false: the plugin does nothing (no endpoint)"
    ]
    assert warnings_of({}) == []


def test_a_dollar_name_without_braces_is_a_warning():
    assert warnings_of({"websocket.node_id": "canary-$HOST"}) == [
        "websocket.node_id: $HOST is taken literally: did you mean ${HOST}?"
    ]
    assert warnings_of({"websocket.allowed_origins": ["https://$DOMAIN"]}) == [
        "websocket.allowed_origins: $DOMAIN is taken literally: did you mean ${DOMAIN}?"
    ]
    assert warnings_of({"websocket.node_id": "${HOST}-1"}) == []  # expanded, no warning


def test_a_dollar_in_a_secret_is_a_warning_that_does_not_show_it():
    (warning,) = warnings_of({"websocket.auth.jwt.secret": "$Zq9xK-passphrase-0123456789"})
    assert warning.startswith("websocket.auth.jwt.secret: ") and "value not shown" in warning
    assert "Zq9xK" not in warning


def test_other_components_keys_stay_silent():
    assert warnings_of({"ftp.enabled": True, "device": {"node_id": "x"}, "logger": {}}) == []


# --- typed sections ----------------------------------------------------------------------------


def test_the_sections_carry_the_validated_values(tmp_path: Path):
    cert, key = write_tls_pair(tmp_path, "s")
    settings = validate(
        {
            "websocket.enabled": True,
            "websocket.path": "/feed/",
            "websocket.limits.per_ip": 7,
            "websocket.heartbeat.interval": 0,
            "websocket.ingest.tcp": "127.0.0.1:1514",
            "websocket.ingest.tcp_allow": ["10.0.0.0/8"],
            "websocket.auth.timeout": 2,
            "server.tls.cert": str(cert),
            "server.tls.key": str(key),
            "server.max_pending": 9,
        }
    )
    ws, server = settings.websocket, settings.server
    assert ws.enabled and ws.http.path == "/feed" and ws.node.limits.per_ip == 7
    assert ws.endpoint.ping_interval is None and ws.session.auth_timeout == 2.0
    assert server.ingest_tcp is not None and server.ingest_tcp.port == 1514
    assert [str(n) for n in server.ingest_tcp.allow] == ["10.0.0.0/8"]
    assert server.tls == TLSFiles(str(cert), str(key)) and server.http.max_pending == 9
    assert validate({}).server.ingest_tcp is None and validate({}).server.tls is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        ws.node.limits.per_ip = 8  # type: ignore[misc]


class Recorder(dict):
    """The validated values, remembering which keys were read."""

    def __init__(self, values) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def __getitem__(self, key: str):
        self.read.add(key)
        return super().__getitem__(key)


def test_every_key_reaches_a_section():
    values = Recorder(
        {
            **validate({}),
            "websocket.ingest.tcp": ("127.0.0.1", 1514),
            "server.tls.cert": "c.pem",
            "server.tls.key": "k.pem",
        }
    )
    config._websocket_settings(values, config._jwt_settings(values))
    config._server_settings(values)
    assert values.read == {k.name for k in KEYS}


def test_secrets_are_hidden_in_every_repr():
    token = "dashboard-token-0123456789"
    settings = validate(
        {
            "websocket.auth.jwt.secret": SECRET,
            "websocket.dashboard.token": token,
            "websocket.broker": "redis://:redis-pass-42@127.0.0.1:6379/0",
        }
    )
    shown = repr(settings) + repr(settings.websocket) + repr(settings.server)
    for secret in (SECRET, token, "redis-pass-42"):
        assert secret not in shown
    assert "redis://:***@127.0.0.1:6379/0" in repr(settings)
