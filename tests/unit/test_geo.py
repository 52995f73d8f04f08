"""Offline country enrichment: MaxMind-format databases, the packaged data, the node's step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from netsentinel_websocket import geo
from netsentinel_websocket.config import ConfigError, validate
from netsentinel_websocket.geo import GeoError, GeoIP, MaxMindBackend, PackagedBackend
from netsentinel_websocket.node import Node
from tests.conftest import base_config

mmdb_writer = pytest.importorskip("mmdb_writer")
netaddr = pytest.importorskip("netaddr")


def write_mmdb(path: Path, networks: dict[str, dict[str, Any]], ip_version: int = 6) -> str:
    """A MaxMind-format database of ``networks`` (CIDR -> record), as GeoLite2 lays it out."""
    writer = mmdb_writer.MMDBWriter(
        ip_version=ip_version, database_type="GeoLite2-Country", ipv4_compatible=ip_version == 6
    )
    for cidr, record in networks.items():
        writer.insert_network(netaddr.IPSet([cidr]), record)
    writer.to_db_file(str(path))
    return str(path)


GB = {"country": {"iso_code": "GB", "names": {"en": "United Kingdom", "de": "Vereinigtes K"}}}


@pytest.fixture
def mmdb(tmp_path: Path) -> str:
    return write_mmdb(
        tmp_path / "country.mmdb",
        {
            "81.2.69.0/24": GB,
            # only the registering country, as for some mobile and satellite networks
            "2a02:2000::/24": {
                "registered_country": {"iso_code": "DE", "names": {"en": "Germany"}}
            },
            "89.160.20.0/24": {"country": {"iso_code": "SE"}},  # no names
            "5.5.5.0/24": {"country": {"iso_code": "gb1"}},  # not an ISO alpha-2 code
            "6.6.6.0/24": {"continent": {"code": "EU"}},  # no country at all
            "10.0.0.0/8": GB,  # a private range a database should not have
        },
    )


def test_maxmind_database_gives_iso_code_and_english_name(mmdb):
    geoip = GeoIP(MaxMindBackend(mmdb))
    assert geoip.country("81.2.69.142") == ("GB", "United Kingdom")
    assert geoip.country("2a02:2000::1") == ("DE", "Germany")
    assert geoip.country("89.160.20.112") == ("SE", "SE")
    assert geoip.country("::ffff:81.2.69.142") == ("GB", "United Kingdom")


@pytest.mark.parametrize(
    "ip",
    [
        "8.8.8.8",  # not in this database
        "5.5.5.5",  # bad code
        "6.6.6.6",  # no country
        "10.1.2.3",  # private: never looked up
        "127.0.0.1",
        "::1",
        "169.254.1.1",
        "203.0.113.7",  # documentation
        "224.0.0.1",
        "not an address",
        "",
        "1" * 100,
        None,
        42,
    ],
)
def test_no_country_for_unknown_private_or_invalid_addresses(mmdb, ip):
    assert GeoIP(MaxMindBackend(mmdb)).country(ip) is None


def test_ipv6_in_an_ipv4_only_database_has_no_country(tmp_path):
    path = write_mmdb(tmp_path / "v4.mmdb", {"81.2.69.0/24": GB}, ip_version=4)
    geoip = GeoIP(MaxMindBackend(path))
    assert geoip.country("81.2.69.1") == ("GB", "United Kingdom")
    assert geoip.country("2a02:2000::1") is None


def test_lookups_are_cached_in_a_bounded_lru(mmdb):
    calls: list[str] = []

    class Counting:
        def lookup(self, ip):
            calls.append(str(ip))
            return ("GB", "United Kingdom")

    geoip = GeoIP(Counting(), cache_size=2)
    for ip in ["81.2.69.1", "81.2.69.1", "81.2.69.2", "81.2.69.1", "81.2.69.3", "81.2.69.2"]:
        assert geoip.country(ip) == ("GB", "United Kingdom")
    assert calls == ["81.2.69.1", "81.2.69.2", "81.2.69.3", "81.2.69.2"]


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    path = tmp_path / "junk.mmdb"
    path.write_bytes(b"not a maxmind database")
    with pytest.raises(GeoError, match="is not a readable MaxMind-format database"):
        MaxMindBackend(str(path))


def test_enrich_sets_src_geo_only_when_the_country_is_known(mmdb):
    geoip = GeoIP(MaxMindBackend(mmdb))
    known = {"data": {"src_ip": "81.2.69.142"}}
    geoip.enrich(known)
    assert known["data"]["src_geo"] == {"country": "GB", "name": "United Kingdom"}
    for data in [{"src_ip": "10.0.0.1"}, {"src_ip": "8.8.8.8"}, {}, {"src_ip": ["81.2.69.142"]}]:
        event = {"data": dict(data)}
        geoip.enrich(event)
        assert event["data"] == data


# --- the packaged data (geoip2fast) ---


@pytest.fixture(scope="module")
def packaged() -> GeoIP:
    if geo.packaged_data() is None:
        pytest.skip("geoip2fast is not installed (the geoip extra)")
    return GeoIP(PackagedBackend())


@pytest.mark.parametrize(
    ("ip", "iso"),
    [
        ("8.8.8.8", "US"),  # Google public DNS
        ("2001:4860:4860::8888", "US"),
        ("193.0.6.139", "NL"),  # RIPE NCC, Amsterdam
        ("81.2.69.142", "GB"),  # MaxMind's own test address
    ],
)
def test_packaged_data_knows_well_known_public_addresses(packaged, ip, iso):
    found = packaged.country(ip)
    assert found is not None and found[0] == iso


@pytest.mark.parametrize("ip", ["10.0.0.1", "127.0.0.1", "192.168.1.1", "203.0.113.7", "::1", "x"])
def test_packaged_data_gives_nothing_for_private_or_invalid_addresses(packaged, ip):
    assert packaged.country(ip) is None


def test_packaged_data_is_loaded_from_the_package_not_the_working_directory(tmp_path, monkeypatch):
    if geo.packaged_data() is None:
        pytest.skip("geoip2fast is not installed (the geoip extra)")
    (tmp_path / geo.PACKAGED_FILE).write_bytes(b"planted")
    monkeypatch.chdir(tmp_path)
    assert geo.packaged_data() != tmp_path / geo.PACKAGED_FILE
    assert geo.packaged_data().parent.name == "geoip2fast"


# --- configuration and the node ---


def test_geoip_is_off_by_default():
    settings = validate(base_config())
    assert settings["websocket.geoip.enabled"] is False
    assert settings["websocket.geoip.database"] is None
    assert settings.websocket.node.geoip.enabled is False
    assert Node(settings.websocket).geoip is None


def test_database_is_typed_into_the_settings(mmdb):
    settings = validate(
        base_config(websocket__geoip__enabled=True, websocket__geoip__database=mmdb)
    )
    assert settings.websocket.node.geoip.enabled is True
    assert settings.websocket.node.geoip.database == mmdb


def test_enabled_without_any_data_names_the_database_key(monkeypatch):
    monkeypatch.setattr(geo, "packaged_data", lambda: None)
    with pytest.raises(ConfigError) as caught:
        validate(base_config(websocket__geoip__enabled=True))
    assert caught.value.key == "websocket.geoip.database"
    assert "pip install 'netsentinel-websocket[geoip]'" in str(caught.value)


def test_a_database_that_does_not_open_names_its_key(tmp_path):
    junk = tmp_path / "junk.mmdb"
    junk.write_text("junk")
    with pytest.raises(ConfigError) as caught:
        validate(base_config(websocket__geoip__enabled=True, websocket__geoip__database=str(junk)))
    assert caught.value.key == "websocket.geoip.database"
    with pytest.raises(ConfigError, match="file not found or not readable"):
        validate(base_config(websocket__geoip__database=str(tmp_path / "missing.mmdb")))
    with pytest.raises(ConfigError, match="must be true or false"):
        validate(base_config(websocket__geoip__enabled="yes"))


def test_node_publishes_events_with_the_country_of_their_source(mmdb):
    settings = validate(
        base_config(websocket__geoip__enabled=True, websocket__geoip__database=mmdb)
    )
    node = Node(settings.websocket)
    published: list[Any] = []
    node.broker.publish = lambda channel, prepared: published.append(prepared)  # type: ignore[method-assign]
    caller_data = {"src_ip": "81.2.69.142"}
    node.publish(
        {"event_type": "honeypot.ssh.login_attempt", "severity": "high", "data": caller_data}
    )
    node.publish({"event_type": "honeypot.ssh.login_attempt", "data": {"src_ip": "10.0.0.9"}})
    events = [p.event for p in published]
    assert events[0]["data"]["src_geo"] == {"country": "GB", "name": "United Kingdom"}
    assert b'"src_geo":{"country":"GB","name":"United Kingdom"}' in published[0].json(None)
    assert "src_geo" not in events[-1]["data"]
    assert caller_data == {"src_ip": "81.2.69.142"}  # the pipeline's own event is not changed
