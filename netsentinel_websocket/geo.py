"""Offline country of an attacker's address: ``data.src_geo`` for events with ``data.src_ip``.

Two backends behind one small interface, :meth:`GeoIP.country` ``(ip) -> (iso2, name) | None``:

- a MaxMind-format database (GeoLite2-Country, GeoIP2-Country, DB-IP's country lite, ...)
  read with ``maxminddb`` (``websocket.geoip.database``);
- the data file the ``geoip2fast`` package ships (a GeoLite2-derived snapshot), when no
  database is named.

Both come with the ``geoip`` extra. Neither ever touches the network: a honeypot must not tell
anyone which addresses touched it. Only global unicast addresses are looked up (private,
loopback, documentation and reserved ranges have no country), and answers are kept in a
bounded LRU because attackers repeat themselves.
"""

from __future__ import annotations

import functools
import importlib.util
import ipaddress
import re
from pathlib import Path
from typing import Any, Protocol

from .errors import NetSentinelError

Country = tuple[str, str]  # (ISO 3166 alpha-2, English name)
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Lookups remembered (addresses, with their answer or the lack of one).
CACHE_SIZE = 4096
#: The longest text an IP address can be (IPv4-mapped IPv6); longer is not looked up or cached.
MAX_ADDRESS_CHARS = 45
#: The data file of ``geoip2fast`` with both IPv4 and IPv6 networks.
PACKAGED_FILE = "geoip2fast-ipv6.dat.gz"
INSTALL_HINT = "pip install 'netsentinel-websocket[geoip]'"

_ISO2 = re.compile(r"[A-Z]{2}")


class GeoError(NetSentinelError):
    """The country data cannot be used (package missing, file unreadable or not a database);
    the message reads after the key it is about, ``websocket.geoip.database``."""


class Backend(Protocol):
    def lookup(self, ip: IpAddress) -> Country | None: ...


class MaxMindBackend:
    """A MaxMind-format database: the record's ``country``, else its ``registered_country``
    (an address of a mobile or satellite network may have only the latter)."""

    def __init__(self, path: str) -> None:
        try:
            import maxminddb
        except ImportError:
            raise GeoError(f"needs the maxminddb package to be read ({INSTALL_HINT})") from None
        try:
            self._reader = maxminddb.open_database(path)
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise GeoError(f"is not a readable MaxMind-format database ({exc})") from None

    def lookup(self, ip: IpAddress) -> Country | None:
        try:
            record = self._reader.get(ip)
        except ValueError:  # an IPv6 address in an IPv4-only database
            return None
        if not isinstance(record, dict):
            return None
        for key in ("country", "registered_country"):
            found = _country(record.get(key))
            if found is not None:
                return found
        return None

    def close(self) -> None:
        self._reader.close()


def _country(entry: Any) -> Country | None:
    """(iso2, English name) from a MaxMind ``country`` map; the code stands in for a missing
    name."""
    if not isinstance(entry, dict):
        return None
    iso = entry.get("iso_code")
    if not isinstance(iso, str) or not _ISO2.fullmatch(iso):
        return None
    names = entry.get("names")
    name = names.get("en") if isinstance(names, dict) else None
    return iso, name if isinstance(name, str) and name else iso


def packaged_data() -> Path | None:
    """Where the data file of ``geoip2fast`` is installed; None without the package (found
    without importing it, so ``check-config`` stays quick)."""
    spec = importlib.util.find_spec("geoip2fast")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).with_name(PACKAGED_FILE)
    return path if path.is_file() else None


class PackagedBackend:
    """The data file shipped by ``geoip2fast``, loaded by its absolute path (for a bare file
    name the library would look in the working directory first). Loading takes up to a
    second or two and about 60 MB, once per process."""

    def __init__(self) -> None:
        path = packaged_data()
        if path is None:
            raise GeoError(f"unset, and no packaged country data is installed ({INSTALL_HINT})")
        import geoip2fast  # type: ignore[import-untyped]

        try:
            self._db = geoip2fast.GeoIP2Fast(geoip2fast_data_file=str(path))
        except Exception as exc:  # the library raises its own GeoIPError, or whatever unpickling
            raise GeoError(f"the packaged data {path} does not load ({exc})") from None

    def lookup(self, ip: IpAddress) -> Country | None:
        result = self._db.lookup(str(ip))
        code, name = result.country_code, result.country_name
        if result.is_private or not isinstance(code, str) or not _ISO2.fullmatch(code):
            return None  # "--" (private, not found) or "" (invalid)
        return code, name if isinstance(name, str) and name else code


def open_backend(database: str | None) -> Backend:
    """The MaxMind database at ``database``, or the packaged data when it is None."""
    return PackagedBackend() if database is None else MaxMindBackend(database)


def public_address(text: str) -> IpAddress | None:
    """The address in ``text`` when it is a global unicast one (IPv4-mapped as IPv4)."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip if ip.is_global and not ip.is_multicast else None


class GeoIP:
    """Country lookups with a bounded cache, and the enrichment step of the node."""

    def __init__(self, backend: Backend, cache_size: int = CACHE_SIZE) -> None:
        self._backend = backend
        self._cached = functools.lru_cache(maxsize=cache_size)(self._lookup)

    def country(self, ip: str) -> Country | None:
        """(ISO 3166 alpha-2, name) of a public address the data knows; None otherwise."""
        if not isinstance(ip, str) or len(ip) > MAX_ADDRESS_CHARS:
            return None
        return self._cached(ip)

    def _lookup(self, text: str) -> Country | None:
        ip = public_address(text)
        return None if ip is None else self._backend.lookup(ip)

    def enrich(self, event: dict[str, Any]) -> None:
        """Set ``data.src_geo`` on a normalized event (whose ``data`` is its own copy) when its
        ``data.src_ip`` has a country; an event without one is left as it is."""
        data = event["data"]
        found = self.country(data.get("src_ip"))
        if found is not None:
            data["src_geo"] = {"country": found[0], "name": found[1]}
