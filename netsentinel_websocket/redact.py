"""Redaction of sensitive event fields for clients without ``events:sensitive``.

Two kinds of rule, both addressed by dotted paths whose parts match field names in any case
(``PASSWORD``, ``Password`` and ``password`` are one rule, because OpenCanary's modules spell
the same field differently):

- whole-value paths (``websocket.redact``, default :data:`DEFAULT_REDACT`): the value becomes
  ``[redacted]``;
- text rules (:data:`TEXT_RULES`, always on): a credential embedded in text (a ``password=``
  query parameter, an ``Authorization`` value, Redis ``AUTH`` arguments, Cowrie's
  ``login attempt [user/password]``) is replaced and the rest kept, so analysts still see what
  happened.

A string found where a rule expects an object (``logdata`` sent as text) cannot be inspected for
the field the rule protects, so it is hidden whole. The redactor runs once per event and
redaction class; it copies only the containers on the way to what it changes and returns None
when nothing is hidden, so the unredacted bytes can be shared.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import unquote_plus

MARK = "[redacted]"

# Whole values hidden by default: the attempted credentials OpenCanary's modules and Cowrie log.
DEFAULT_REDACT = (
    "data.password",  # Cowrie login attempts
    "data.logdata.PASSWORD",  # ftp, http, httpproxy, ssh, telnet, mysql, mssql (also `Password`)
    "data.logdata.PASSWORD_HASH",
    "data.logdata.VNC Password",  # vnc: the password, when it is a common one
    "data.logdata.VNC Client Response",  # vnc: DES response to the challenge, crackable offline
    "data.logdata.SECRET_STRING",  # tcpbanner keep-alive secret
    "data.logdata.COMMUNITY_STRING",  # snmp: the community string is SNMP's password
    "data.logdata.auth_data",  # mongodb: the whole authentication document (SASL payloads)
    "data.logdata.raw",  # logdata that was not an object: it cannot be inspected
)

Scrub = Callable[[Any, Mapping[str, Any]], Any]
"""A value-level rule: ``(value, containing object) -> value``, the same object if nothing hides."""


def _strings(fn: Callable[[str], str]) -> Scrub:
    """A rule applying ``fn`` to every string in the value (SIP header values come as lists)."""

    def scrub(value: Any, parent: Mapping[str, Any]) -> Any:
        return _map_strings(value, fn)

    return scrub


def _map_strings(value: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        new = fn(value)
        return value if new == value else new
    if isinstance(value, list):
        return _each(value, lambda item: _map_strings(item, fn))
    if isinstance(value, dict):
        pairs = {key: _map_strings(item, fn) for key, item in value.items()}
        return value if all(pairs[key] is item for key, item in value.items()) else pairs
    return value


def _each(items: list[Any], fn: Callable[[Any], Any]) -> list[Any]:
    """``fn`` over ``items``: the same list when no item changed, else a new one."""
    new = [fn(item) for item in items]
    return items if all(a is b for a, b in zip(new, items, strict=True)) else new


# --- secrets inside URLs: query parameters and user info ---

_PARAM = re.compile(r"(?:^|(?<=[?&;\s\"']))([^=&;#?\s\"']*)=")
_PARAM_END = re.compile(r"[&#\s]")
_USERINFO = re.compile(r"(?i)(\b[a-z][a-z0-9+.\-]*://[^\s/:@]*:)[^\s/]*@")
_SECRET_PARAMS = frozenset({"pw", "secret", "token", "access_token", "api_key", "apikey", "auth"})


def _is_secret_param(name: str) -> bool:
    name = unquote_plus(name).lower()
    return "pass" in name or "pwd" in name or name in _SECRET_PARAMS


def url_secrets(text: str) -> str:
    """``text`` with password-like query values and ``user:password@`` passwords replaced.

    A secret value runs to the next ``&``, ``#`` or white space (not ``;``, which passwords may
    hold), so a value is never cut short; keys are compared URL-decoded.
    """
    if "=" in text:
        out, at = [], 0
        for match in _PARAM.finditer(text):
            if match.start() < at or not _is_secret_param(match.group(1)):
                continue
            end = _PARAM_END.search(text, match.end())
            stop = end.start() if end else len(text)
            out += [text[at : match.end()], MARK]
            at = stop
        text = "".join(out) + text[at:] if out else text
    if "@" in text:
        text = _USERINFO.sub(lambda m: m.group(1) + MARK + "@", text)
    return text


# --- Authorization / Proxy-Authorization values (SIP headers, HTTP) ---

_SCHEME = re.compile(r"\s*([A-Za-z][\w.+\-]*)\s+(.*)", re.S)
_DIGEST_PARAM = re.compile(r'([\w\-]+)\s*=\s*("(?:[^"\\]|\\.)*"?|[^,\s]*)')
_DIGEST_PUBLIC = frozenset(
    {"username", "realm", "uri", "algorithm", "qop", "nc", "nonce", "cnonce", "opaque"}
)


def authorization(text: str) -> str:
    """The scheme and, for Digest, the public parameters; the credential becomes ``[redacted]``.

    Digest keeps only the parameters known to be public (user name, realm, uri, ...): the
    ``response`` hash and anything unparseable are replaced. Other schemes keep just the scheme
    name; a value without a scheme is hidden whole.
    """
    match = _SCHEME.fullmatch(text)
    if match is None:
        return MARK
    scheme, rest = match.groups()
    if scheme.lower() != "digest":
        return f"{scheme} {MARK}"
    params = [
        f"{key}={value if key.lower() in _DIGEST_PUBLIC else MARK}"
        for key, value in _DIGEST_PARAM.findall(rest)
    ]
    return f"{scheme} {', '.join(params) if params else MARK}"


# --- Redis arguments (OpenCanary logs CMD and the arguments joined by spaces in ARGS) ---

_REDIS_AUTH_ARG = re.compile(r"(?i)\b(AUTH2?|requirepass|masterauth)(\s+).*", re.S)
_REDIS_ACL_SECRET = re.compile(r"(?<!\S)[<>#!].*", re.S)


def _get_text(obj: Mapping[str, Any], name: str) -> str:
    for key, value in obj.items():
        if isinstance(key, str) and key.lower() == name and isinstance(value, str):
            return value
    return ""


def redis_args(value: Any, parent: Mapping[str, Any]) -> Any:
    """``ARGS`` without the secrets of the command in the sibling ``CMD``.

    ``AUTH`` hides all its arguments: once joined by spaces a password containing a space
    cannot be told from ``user password``. ``HELLO ... AUTH``, ``MIGRATE ... AUTH/AUTH2`` and
    ``CONFIG SET requirepass/masterauth`` hide everything after the keyword; ``ACL SETUSER``
    everything from the first ``>pass``/``<pass``/``#hash``/``!hash`` rule on.
    """
    cmd = _get_text(parent, "cmd").strip().upper()
    if cmd == "AUTH":
        return _map_strings(value, lambda text: MARK if text else text)

    def scrub(text: str) -> str:
        text = _REDIS_AUTH_ARG.sub(lambda m: m.group(1) + m.group(2) + MARK, text)
        if cmd == "ACL":
            text = _REDIS_ACL_SECRET.sub(MARK, text)
        return text

    return _map_strings(value, scrub)


# --- MongoDB commands, logged as the repr of the parsed BSON document ---

_MONGO_SECRET = re.compile(
    r"""(?i)(['"](?:pwd|password|passwd|key|payload)['"]\s*:\s*)"""
    r"""(b?'(?:[^'\\]|\\.)*'?|b?"(?:[^"\\]|\\.)*"?|[^,}\]]*)"""
)


def mongo_query(text: str) -> str:
    """A MongoDB command's text with ``pwd``, ``key`` (MONGODB-CR) and SASL ``payload`` hidden."""
    return _MONGO_SECRET.sub(lambda m: m.group(1) + repr(MARK), text)


# --- Cowrie's "login attempt [user/password] failed" ---

_LOGIN_ATTEMPT = re.compile(r"(?i)login attempt \[[^/]*/")


def login_attempt(text: str) -> str:
    """Cowrie's login message with everything from the first ``/`` to the last ``]`` hidden.

    The user name is what precedes the first ``/``; the password may hold ``/`` and ``]``
    itself, so the hidden span is the widest one that can contain it.
    """
    match = _LOGIN_ATTEMPT.search(text)
    if match is None:
        return text
    end = text.rfind("]")
    return text[: match.end()] + MARK + (text[end:] if end >= match.end() else "")


TEXT_RULES: tuple[tuple[str, Scrub], ...] = (
    ("data.message", _strings(lambda text: url_secrets(login_attempt(text)))),  # Cowrie
    ("data.url", _strings(url_secrets)),  # Cowrie downloads
    ("data.input", _strings(url_secrets)),  # Cowrie commands (wget http://user:pass@...)
    ("data.logdata.PATH", _strings(url_secrets)),  # http
    ("data.logdata.HEADERS.authorization", _strings(authorization)),  # sip
    ("data.logdata.HEADERS.proxy-authorization", _strings(authorization)),  # sip
    ("data.logdata.ARGS", redis_args),  # redis
    ("data.logdata.query", _strings(mongo_query)),  # mongodb
)
"""Value-level rules applied for every client without ``events:sensitive``."""


class _Node:
    """One level of the rule tree; children are keyed by lower-cased field name."""

    __slots__ = ("hide", "scrub", "children")

    def __init__(self) -> None:
        self.hide = False
        self.scrub: Scrub | None = None
        self.children: dict[str, _Node] = {}


class Redactor:
    """Hides the values at dotted paths and the credentials that text rules find."""

    def __init__(
        self, paths: Iterable[str], text_rules: Iterable[tuple[str, Scrub]] = TEXT_RULES
    ) -> None:
        self._root = _Node()
        for path in paths:
            self._node(path).hide = True
        for path, scrub in text_rules:
            self._node(path).scrub = scrub

    def _node(self, path: str) -> _Node:
        node = self._root
        for part in path.split("."):
            node = node.children.setdefault(part.lower(), _Node())
        return node

    def apply(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """A redacted copy of ``event``, or None when nothing is hidden (share the original)."""
        return _walk(event, self._root)


def _walk(obj: dict[str, Any], node: _Node) -> dict[str, Any] | None:
    """A copy of ``obj`` with the rules below ``node`` applied, or None when nothing changed."""
    copy = None
    children = node.children
    for key, value in obj.items():
        child = children.get(key.lower()) if isinstance(key, str) else None
        if child is None:
            continue
        new = _apply(value, child, obj)
        if new is not value:
            if copy is None:
                copy = dict(obj)
            copy[key] = new
    return copy


def _apply(value: Any, node: _Node, parent: dict[str, Any]) -> Any:
    if node.hide:
        return MARK
    if node.scrub is not None:
        value = node.scrub(value, parent)
    return _descend(value, node) if node.children else value


def _descend(value: Any, node: _Node) -> Any:
    """``value`` with the rules below ``node`` applied to it, or to each item of a list."""
    if isinstance(value, dict):
        copy = _walk(value, node)
        return value if copy is None else copy
    if isinstance(value, list):
        return _each(value, lambda item: _descend(item, node))
    if isinstance(value, str):
        return MARK  # text where fields were expected: what the rules protect may be inside
    return value
