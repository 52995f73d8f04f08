"""Channel routing: ordered rules on event_type globs and minimum severity."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from .events import SEVERITY_RANK
from .globs import compile_globs


class Rule:
    """Send matching events to ``channel``: type matches a glob and severity reaches a minimum."""

    __slots__ = ("channel", "_types", "_min_rank")

    def __init__(
        self, channel: str, event_types: Iterable[str] = ("*",), min_severity: str | None = None
    ) -> None:
        self.channel = channel
        self._types: re.Pattern[str] = compile_globs(event_types)
        self._min_rank = SEVERITY_RANK[min_severity] if min_severity else 0

    def matches(self, event_type: str, severity_rank: int) -> bool:
        return severity_rank >= self._min_rank and self._types.match(event_type) is not None


class Router:
    """Routes an event to every channel whose rule matches, in rule order, each channel once.

    Results are cached per (event_type, severity): the pipeline sees few distinct pairs, so
    routing costs one dict lookup per event.
    """

    _CACHE_LIMIT = 4096

    def __init__(self, rules: Iterable[Mapping[str, Any]]) -> None:
        self._rules = [
            Rule(r["channel"], r.get("event_types", ("*",)), r.get("min_severity")) for r in rules
        ]
        self._cache: dict[tuple[str, str], tuple[str, ...]] = {}

    def route(self, event_type: str, severity: str) -> tuple[str, ...]:
        key = (event_type, severity)
        channels = self._cache.get(key)
        if channels is None:
            rank = SEVERITY_RANK[severity]
            found = dict.fromkeys(r.channel for r in self._rules if r.matches(event_type, rank))
            channels = tuple(found)
            if len(self._cache) >= self._CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = channels
        return channels
