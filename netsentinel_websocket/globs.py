"""Event-type glob patterns, compiled once into one regular expression."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

from .errors import NetSentinelError


class GlobError(NetSentinelError, ValueError):
    """A pattern that is not a usable event-type glob."""


def compile_globs(patterns: Iterable[str]) -> re.Pattern[str]:
    """One regex matching any of the shell-style patterns (``*``, ``?``, ``[...]``)."""
    parts = []
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern or len(pattern) > 200:
            raise GlobError(f"bad glob {pattern!r}")
        if pattern.count("[") != pattern.count("]"):
            raise GlobError(f"bad glob {pattern!r}: unbalanced brackets")
        translated = fnmatch.translate(pattern)
        try:
            re.compile(translated)
        except re.error as exc:
            raise GlobError(f"bad glob {pattern!r}: {exc}") from None
        parts.append(translated)
    if not parts:
        raise GlobError("empty glob list")
    return re.compile("|".join(f"(?:{p})" for p in parts))
