"""Configuration validation: every kind of bad key is refused with a message naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netsentinel_websocket.config import KEYS, ConfigError, keys_markdown, load_file, validate

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
