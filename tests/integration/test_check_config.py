"""``check-config`` and ``serve`` share one validation path: what stops one stops the other, with
the same message naming the key (exit 2, no traceback), and a file ``check-config`` passes starts.
Both run as subprocesses, as an operator runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ..conftest import SECRET, base_config
from ..keyfiles import p384_key, write_public_key, write_tls_pair

ERROR = "netsentinel-websocket: configuration error: "
WARNING = "netsentinel-websocket: warning: "


def no_redis(tmp_path: Path) -> dict[str, str]:
    """An environment in which ``import redis`` fails, as without the optional extra."""
    (tmp_path / "redis").mkdir(parents=True)
    (tmp_path / "redis" / "__init__.py").write_text("raise ImportError('not installed')\n")
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path}


def check_config(*args: Path | str) -> subprocess.CompletedProcess[str]:
    """``check-config ARGS`` as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "netsentinel_websocket", "check-config", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def check_and_serve(
    path: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    """``check-config FILE`` and ``serve --config FILE``, run side by side."""
    commands = (["check-config", str(path)], ["serve", "--config", str(path)])
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "netsentinel_websocket", *command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for command in commands
    ]
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # serve started: the configuration was not refused
            proc.kill()
            out, err = proc.communicate()
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results[0], results[1]


def text_file(tmp_path: Path) -> str:
    path = tmp_path / "text.pem"
    path.write_text("not a key\n")
    return str(path)


def rsa_public_key(tmp_path: Path) -> str:
    return str(write_public_key(tmp_path / "rsa.pem"))


def tls(tmp_path: Path, cert: str, key: str) -> dict[str, str]:
    """``server.tls.*`` naming files of the pairs ``a``, ``b`` and ``locked`` (encrypted)."""
    write_tls_pair(tmp_path, "a")
    write_tls_pair(tmp_path, "b")
    write_tls_pair(tmp_path, "locked", passphrase=b"sesame")
    return {
        "server.tls.cert": str(tmp_path / f"{cert}.pem"),
        "server.tls.key": str(tmp_path / f"{key}.pem"),
    }


Overrides = Callable[[Path], dict[str, Any]]

REFUSED: list[tuple[str, Overrides, str]] = [
    (
        "a route glob that does not compile",
        lambda _: {"websocket.routes": [{"channel": "alerts", "event_types": ["alert.[x"]}]},
        "websocket.routes: rule 1: 'event_types': bad glob 'alert.[x': unbalanced brackets",
    ),
    (
        "channels that leave out one the default routes need",
        lambda _: {"websocket.channels": ["events", "threats"]},
        "websocket.channels: does not declare 'alerts', which the default websocket.routes send "
        "events to: declare it, or set websocket.routes to rules of your own",
    ),
    (
        "a rule of the user's on an undeclared channel, counted from 1",
        lambda _: {"websocket.routes": [{"channel": "events"}, {"channel": "nope"}]},
        "websocket.routes: rule 2: channel 'nope' is not declared in websocket.channels",
    ),
    (
        "a secret shorter than the documented minimum",
        lambda _: {"websocket.auth.jwt.secret": "short"},
        "websocket.auth.jwt.secret: must be at least 16 characters",
    ),
    (
        "a nested object",
        lambda _: {"websocket": {"enabled": True, "path": "/feed"}},
        'websocket: nested objects are not read: write flat dotted keys ("websocket.enabled", '
        '"websocket.path")',
    ),
    (
        "a public key file that is no PEM key",
        lambda tmp: {
            "websocket.auth.jwt.algorithms": ["RS256"],
            "websocket.auth.jwt.public_key": text_file(tmp),
        },
        "websocket.auth.jwt.public_key: jwt public_key is not a PEM public key",
    ),
    (
        "a public key that fits no allowed algorithm",
        lambda tmp: {
            "websocket.auth.jwt.algorithms": ["ES256"],
            "websocket.auth.jwt.public_key": str(write_public_key(tmp / "p384.pem", p384_key())),
        },
        "websocket.auth.jwt.public_key: jwt public_key fits none of the allowed algorithms",
    ),
    (
        "a public key given as the HS secret",
        lambda tmp: {"websocket.auth.jwt.secret": Path(rsa_public_key(tmp)).read_text()},
        "websocket.auth.jwt.secret: jwt secret is a public key; configure it as public_key",
    ),
    (
        "a JWKS address without an asymmetric algorithm",
        lambda _: {"websocket.auth.jwt.jwks_url": "https://idp.example/jwks"},
        "websocket.auth.jwt.jwks_url: jwt jwks_url is set but no asymmetric algorithm is allowed",
    ),
    (
        "a TLS certificate file without a certificate",
        lambda tmp: tls(tmp, "a-key", "a-key"),
        "server.tls.cert: holds no PEM certificate (NO_CERTIFICATE_OR_CRL_FOUND)",
    ),
    (
        "a TLS key of another certificate",
        lambda tmp: tls(tmp, "a-cert", "b-key"),
        "server.tls.key: is not the PEM private key of server.tls.cert (KEY_VALUES_MISMATCH)",
    ),
    (
        "an encrypted TLS key",
        lambda tmp: tls(tmp, "locked-cert", "locked-key"),
        "server.tls.key: is encrypted: start-up cannot ask for its passphrase",
    ),
]


@pytest.mark.parametrize(("case", "overrides", "message"), REFUSED, ids=[c[0] for c in REFUSED])
def test_check_config_and_serve_refuse_alike(tmp_path, case, overrides, message):
    path = tmp_path / "config.json"
    config = {**base_config(websocket__ingest__tcp=None), **overrides(tmp_path)}
    path.write_text(json.dumps(config))
    check, serve = check_and_serve(path)
    assert (check.returncode, check.stdout, check.stderr) == (2, "", f"{ERROR}{message}\n")
    assert (serve.returncode, serve.stderr) == (2, check.stderr)
    assert SECRET not in check.stderr + serve.stderr + serve.stdout


def test_a_redis_broker_without_the_redis_package(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(base_config(websocket__broker="redis://127.0.0.1:6379/0")))
    check, serve = check_and_serve(path, env=no_redis(tmp_path / "site"))
    message = (
        "websocket.broker: a redis:// broker needs the redis package: "
        "pip install 'netsentinel-websocket[redis]'"
    )
    assert (check.returncode, check.stderr) == (2, f"{ERROR}{message}\n")
    assert (serve.returncode, serve.stderr) == (2, check.stderr)


def test_a_disabled_plugin_is_a_warning_to_check_config_and_refused_by_serve(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"websocket.enabled": False, "ftp.enabled": True}))
    check, serve = check_and_serve(path)
    assert check.returncode == 0 and "OK (websocket disabled" in check.stdout
    assert check.stderr == (
        f"{WARNING}websocket.enabled: is false: the plugin does nothing (no endpoint)\n"
    )
    assert serve.returncode == 2
    assert serve.stderr == f"{ERROR}websocket.enabled: is false: nothing to serve (or use --dev)\n"


def test_a_dollar_name_without_braces_is_a_warning_and_serve_logs_it(tmp_path, serve_process):
    config = base_config(websocket__node_id="canary-$HOSTNAME")
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    check = check_config(path)
    warning = "websocket.node_id: $HOSTNAME is taken literally: did you mean ${HOSTNAME}?"
    assert check.returncode == 0 and "OK (websocket enabled" in check.stdout
    assert check.stderr == f"{WARNING}{warning}\n"
    server = serve_process(config)
    assert f"WARNING netsentinel_websocket: configuration: {warning}" in server.stderr_text()


def test_other_components_keys_pass_silently(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**base_config(), "ftp.enabled": True, "device": {"node_id": "$X"}}))
    check = check_config(path)
    assert (check.returncode, check.stderr) == (0, "")


def test_no_key_configured_is_a_warning_to_check_config_and_logged_by_serve(
    tmp_path, serve_process
):
    """Defaults are safe (no key, no access), but a server that refuses everyone says so."""
    config = base_config()
    del config["websocket.auth.jwt.secret"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    check = check_config(path)
    warning = (
        "websocket.auth.jwt.secret: unset, and no .public_key or .jwks_url either: every "
        "connection is refused (4001 no key configured)"
    )
    assert check.returncode == 0 and "authentication NOT configured" in check.stdout
    assert check.stderr == f"{WARNING}{warning}\n"
    server = serve_process(config)
    assert f"WARNING netsentinel_websocket: configuration: {warning}" in server.stderr_text()


def test_help_describes_check_config_and_its_file():
    result = check_config("--help")
    assert result.returncode == 0
    assert "Validate FILE as serve and the plugin do" in result.stdout
    assert "JSON configuration of dotted keys" in result.stdout
