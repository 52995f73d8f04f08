"""Rebuild ``netsentinel_websocket/static/world.json``, the dashboard's world map.

Usage::

    npm pack world-atlas@2.0.2 && tar xzf world-atlas-2.0.2.tgz
    pip install pycountry
    python tools/world_map.py package/countries-110m.json > netsentinel_websocket/static/world.json

The input is Natural Earth's 1:110m Admin 0 countries (public domain) as the ``world-atlas``
npm package (ISC) ships them in TopoJSON. Each country becomes one SVG path, keyed by its ISO
3166 alpha-2 code (the code ``data.src_geo.country`` carries), in an equirectangular
projection of 720 x 300 (two units a degree, latitude 84 to -66: Antarctica is left out) with
whole-unit coordinates, so the file stays small (about 50 KB). Of the features without an ISO
numeric code in the source, Kosovo gets the code databases use for it (XK); Northern Cyprus and
Somaliland have none to match and are left out. ``pycountry`` is needed only here, never by the
package.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from itertools import pairwise
from typing import Any

WIDTH, HEIGHT = 720, 300
TOP = 84  # the latitude at y = 0 (Greenland's and Ellesmere's north coasts)
ANTARCTICA = "010"
#: Features the source gives no ISO numeric code, by name, with the alpha-2 code lookups return.
UNCODED = {"Kosovo": "XK"}
SOURCE = "Natural Earth 1:110m Admin 0 countries (public domain), via world-atlas 2.0.2"

Point = tuple[int, int]


def decode_arcs(topology: dict[str, Any]) -> list[list[tuple[float, float]]]:
    """The topology's arcs as (longitude, latitude) lists (they are quantized and
    delta-encoded)."""
    (sx, sy), (tx, ty) = topology["transform"]["scale"], topology["transform"]["translate"]
    arcs = []
    for arc in topology["arcs"]:
        x = y = 0
        points = []
        for dx, dy in arc:
            x, y = x + dx, y + dy
            points.append((x * sx + tx, y * sy + ty))
        arcs.append(points)
    return arcs


def project(lon: float, lat: float) -> Point:
    return round((lon + 180) * WIDTH / 360), round((TOP - lat) * HEIGHT / 150)


def ring_points(ring: list[int], arcs: list[list[tuple[float, float]]]) -> list[Point]:
    """A ring's projected points without the repeats rounding makes; an arc index ``~i`` is
    arc ``i`` reversed, and each arc after the first repeats the previous one's last point.
    A ring across the antimeridian continues off one edge rather than across the map, and a
    ring drawn mostly off the map is moved a whole map width to the side it shows on."""
    points: list[Point] = []
    last_lon: float | None = None
    for index in ring:
        arc = arcs[index] if index >= 0 else arcs[~index][::-1]
        for lon, lat in arc:
            if last_lon is not None:
                lon += 360 * round((last_lon - lon) / 360)
            last_lon = lon
            point = project(lon, lat)
            if not points or point != points[-1]:
                points.append(point)
    middle = sum(x for x, _ in points) / max(1, len(points))
    shift = -WIDTH if middle > WIDTH else WIDTH if middle < 0 else 0
    return [(x + shift, y) for x, y in points]


def ring_path(points: list[Point]) -> str:
    """``M x y`` then relative ``l`` steps."""
    steps = "".join(f"l{x - px} {y - py}" for (px, py), (x, y) in pairwise(points))
    return f"M{points[0][0]} {points[0][1]}{steps}z"


def polygons(geometry: dict[str, Any]) -> Iterator[list[list[int]]]:
    if geometry["type"] == "Polygon":
        yield geometry["arcs"]
    elif geometry["type"] == "MultiPolygon":
        yield from geometry["arcs"]


def world(topology: dict[str, Any]) -> dict[str, Any]:
    import pycountry  # only needed to rebuild the map

    arcs = decode_arcs(topology)
    countries: dict[str, dict[str, str]] = {}
    for geometry in topology["objects"]["countries"]["geometries"]:
        name = geometry["properties"]["name"]
        numeric = geometry.get("id")
        if numeric == ANTARCTICA:
            continue
        country = pycountry.countries.get(numeric=numeric) if numeric else None
        code = country.alpha_2 if country else UNCODED.get(name)
        if code is None:
            continue
        rings = [
            ring_path(points)
            for polygon in polygons(geometry)
            for ring in polygon
            if len(points := ring_points(ring, arcs)) > 2  # smaller than a unit: left out
        ]
        countries[code] = {"d": "".join(rings), "name": name}
    return {
        "countries": dict(sorted(countries.items())),
        "height": HEIGHT,
        "source": SOURCE,
        "width": WIDTH,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as file:
        topology = json.load(file)
    json.dump(world(topology), sys.stdout, separators=(",", ":"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
