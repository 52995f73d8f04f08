"""Redaction of sensitive event fields for clients without ``events:sensitive``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MARK = "[redacted]"

DEFAULT_REDACT = (
    "data.logdata.PASSWORD",
    "data.logdata.password",
    "data.logdata.PASSWORD_HASH",
    "data.logdata.Password",
    "data.logdata.VNC Password",
    "data.logdata.SECRET_STRING",
    "data.logdata.auth_data",
    "data.password",
)


class Redactor:
    """Replaces the values at dotted paths with ``[redacted]``, copying only what it changes."""

    def __init__(self, paths: Iterable[str]) -> None:
        self._paths = [tuple(p.split(".")) for p in paths]

    def apply(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """A redacted copy of ``event``, or None when no path is present (nothing to hide)."""
        result = None
        for path in self._paths:
            if _has(event, path):
                result = _replace(result if result is not None else event, path)
        return result


def _has(obj: Any, path: tuple[str, ...]) -> bool:
    for part in path:
        if not isinstance(obj, dict) or part not in obj:
            return False
        obj = obj[part]
    return True


def _replace(obj: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    copy = dict(obj)
    head = path[0]
    copy[head] = MARK if len(path) == 1 else _replace(obj[head], path[1:])
    return copy
