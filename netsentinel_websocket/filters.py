"""Subscription filters: which events of a channel one subscription wants.

A filter is parsed from the client's ``filter`` object once per subscribe and has a canonical
``key``, so subscribers with equal filters share one delivery group in the hub and the filter runs
once per event for all of them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from .errors import NetSentinelError
from .events import SEVERITIES, SEVERITY_RANK
from .globs import GlobError, compile_globs

FILTER_KEYS = ("min_severity", "event_types", "src_ip", "tags")
MAX_ITEMS = 64
MAX_ITEM_CHARS = 200  # also bounds what an error message can echo back

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class FilterError(NetSentinelError, ValueError):
    """A filter the client got wrong; the message says what."""


class Filter:
    """A parsed subscription filter; ``Filter()`` matches everything."""

    __slots__ = ("key", "match_all", "_min_rank", "_types", "_networks", "_tags")

    def __init__(
        self,
        min_severity: str | None = None,
        event_types: tuple[str, ...] = (),
        src_ip: tuple[str, ...] = (),
        tags: tuple[str, ...] = (),
    ) -> None:
        self._min_rank = SEVERITY_RANK[min_severity] if min_severity else 0
        self._types = compile_globs(event_types) if event_types else None
        self._networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in src_ip
        )
        self._tags = frozenset(tags)
        self.key = (
            min_severity or "",
            tuple(sorted(set(event_types))),
            tuple(sorted(set(src_ip))),
            tuple(sorted(self._tags)),
        )
        self.match_all = self._min_rank == 0 and not event_types and not src_ip and not tags

    def match(self, event: Mapping[str, Any]) -> bool:
        """True when the event passes every condition that is set."""
        if self.match_all:
            return True
        severity: Any = event.get("severity")
        if SEVERITY_RANK.get(severity, 0) < self._min_rank:
            return False
        if self._types is not None and not self._types.match(event.get("event_type", "")):
            return False
        if self._networks and not self._source_in_networks(event):
            return False
        return not (self._tags and self._tags.isdisjoint(event.get("tags") or ()))

    def _source_in_networks(self, event: Mapping[str, Any]) -> bool:
        data = event.get("data")
        address = data.get("src_ip") if isinstance(data, Mapping) else None
        if not isinstance(address, str):
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip.version == net.version and ip in net for net in self._networks)


MATCH_ALL = Filter()


def parse_filter(raw: Any) -> Filter:
    """Validate a client's ``filter`` object; every mistake is a FilterError naming the field."""
    if raw is None:
        return MATCH_ALL
    if not isinstance(raw, dict):
        raise FilterError("filter must be an object")
    for key in raw:
        if key not in FILTER_KEYS:
            raise FilterError(f"unknown filter key {key[:40]!r}")
    min_severity = raw.get("min_severity")
    if min_severity is not None and min_severity not in SEVERITIES:
        raise FilterError(f"filter.min_severity must be one of {', '.join(SEVERITIES)}")
    event_types = _strings(raw, "event_types")
    src_ip = _strings(raw, "src_ip")
    for net in src_ip:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise FilterError(f"filter.src_ip: bad CIDR {net!r}") from None
    tags = _strings(raw, "tags")
    try:
        flt = Filter(min_severity, event_types, src_ip, tags)
    except GlobError as exc:
        raise FilterError(f"filter.event_types: {exc}") from None
    return MATCH_ALL if flt.match_all else flt


def _strings(raw: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = raw.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise FilterError(f"filter.{key} must be a list of non-empty strings")
    if len(value) > MAX_ITEMS:
        raise FilterError(f"filter.{key} has more than {MAX_ITEMS} items")
    if any(len(v) > MAX_ITEM_CHARS for v in value):
        raise FilterError(f"filter.{key} items must be at most {MAX_ITEM_CHARS} characters")
    return tuple(value)
