"""The timezones a subscriber may choose: canonical IANA zones only, grouped by region, the common ones first.

Read from the tz database that the `tzdata` package ships: `zone.tab` lists the zones people live in (one or more
per country), `tzdata.zi` the old names that link to them (`US/Eastern` -> `America/New_York`). Neither
`localtime` (the server's own zone), `Factory` nor a deprecated alias is offered or accepted; an alias is refused
with the zone it stands for.
"""

from __future__ import annotations

import difflib
from datetime import datetime
from functools import cache
from importlib import resources
from zoneinfo import ZoneInfo

from digest.text.i18n import _

# Easy to find at the top of the list: where most readers are, by population and by the network's members.
COMMON = (
    "UTC",
    "Europe/London",
    "Europe/Paris",
    "Europe/Berlin",
    "Europe/Madrid",
    "Africa/Lagos",
    "Africa/Nairobi",
    "Africa/Johannesburg",
    "Asia/Kolkata",
    "Asia/Shanghai",
    "Asia/Tokyo",
    "Australia/Sydney",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/Mexico_City",
    "America/Bogota",
    "America/Sao_Paulo",
)


def _read(name: str) -> str:
    return resources.files("tzdata").joinpath("zoneinfo", name).read_text(encoding="utf-8")


@cache
def canonical_zones() -> frozenset[str]:
    """Every zone a person may choose: those of zone.tab, and UTC."""
    zones = {"UTC"}
    for line in _read("zone.tab").splitlines():
        if line and not line.startswith("#"):
            zones.add(line.split("\t")[2])
    return frozenset(zones)


@cache
def aliases() -> dict[str, str]:
    """Old and other names of the canonical zones (tzdata.zi's links), each to the zone it stands for."""
    links: dict[str, str] = {}
    for line in _read("tzdata.zi").splitlines():
        if line.startswith("L "):
            _, target, alias = line.split()
            links[alias] = target
    # UTC's other names (Etc/UTC, GMT, Zulu ...) all stand for the UTC offered.
    links.update({"Etc/UTC": "UTC", "Etc/GMT": "UTC"})
    zones = canonical_zones()
    resolved = {}
    for alias, target in links.items():
        while target in links and target not in zones:
            target = links[target]  # a link to a link
        if target in zones:
            resolved[alias] = target
    return resolved


def zone_groups() -> list[tuple[str, list[str]]]:
    """The zones to offer: "Common" first, then each region (the name's first part) in order, zones sorted."""
    regions: dict[str, list[str]] = {}
    for zone in sorted(canonical_zones() - {"UTC"}):
        regions.setdefault(zone.split("/", 1)[0], []).append(zone)
    return [("Common", list(COMMON)), *sorted(regions.items())]


def unknown_zone(name: str) -> str:
    """Why ``name`` is not a zone to choose (naming the zone an alias stands for, or the zone it nearly is), in the
    reader's language; "" when it is one."""
    if name in canonical_zones():
        return ""
    if name in aliases():
        return _("%(name)r is another name of %(zone)s: use %(zone)s", name=name, zone=aliases()[name])
    near = near_zone(name)
    if near:
        return _("%(name)r is not an IANA timezone: did you mean %(zone)s?", name=name, zone=near)
    return _("%(name)r is not an IANA timezone such as Europe/Paris", name=name)


def near_zone(name: str) -> str | None:
    """The zone ``name`` was probably meant to be: the same but for case ("europe/paris"), else a close spelling
    ("Europe/Pari", "America/New York", an old name misspelt: "Asia/Calcuta")."""
    folded = {alias.casefold(): zone for alias, zone in aliases().items()}
    folded |= {zone.casefold(): zone for zone in canonical_zones()}
    spelled = name.strip().replace(" ", "_").casefold()
    if spelled in folded:
        return folded[spelled]
    found = difflib.get_close_matches(spelled, folded, n=1, cutoff=0.8)
    return folded[found[0]] if found else None


def local(instant: str | None, zone: ZoneInfo) -> datetime | None:
    """A stored instant (ISO 8601, as the store's reads give it) in the reader's zone: every date and time shown
    to a subscriber is theirs (a pause reads back as the day they chose)."""
    return datetime.fromisoformat(instant).astimezone(zone) if instant else None
