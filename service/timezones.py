"""Time-zone names: Graph reports Windows names ("Pacific Standard Time"); calsync stores IANA names.

The mapping is CLDR's windowsZones table (territory 001), shipped as data in ``service/data``.
"""

from __future__ import annotations

import json
import logging
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

log = logging.getLogger(__name__)

DATA_FILE = Path(__file__).parent / "data" / "windows_zones.json"
UTC_NAME = "UTC"

# Names Graph uses that are neither Windows ids in CLDR nor IANA names.
_ALIASES = {
    "utc": UTC_NAME,
    "gmt": UTC_NAME,
    "z": UTC_NAME,
    "etc/utc": UTC_NAME,
    "coordinated universal time": UTC_NAME,
    "tzone://microsoft/utc": UTC_NAME,
}


@cache
def windows_zones() -> dict[str, str]:
    """Windows time-zone id → IANA name (loaded once per process)."""
    return json.loads(DATA_FILE.read_text(encoding="utf-8"))["windows_to_iana"]


@cache
def _windows_casefolded() -> dict[str, str]:
    return {name.casefold(): iana for name, iana in windows_zones().items()}


def to_iana(name: str | None) -> str:
    """A Windows or IANA zone name as an IANA name; anything unknown or empty is "UTC"."""
    if not name or not isinstance(name, str):
        return UTC_NAME
    cleaned = name.strip()
    if cleaned.casefold() in _ALIASES:
        return _ALIASES[cleaned.casefold()]
    iana = windows_zones().get(cleaned) or _windows_casefolded().get(cleaned.casefold())
    if iana:
        return iana
    if _is_iana(cleaned):
        return cleaned
    log.info("unknown time zone name %r; using UTC", cleaned[:64])
    return UTC_NAME


def zone(name: str | None) -> ZoneInfo:
    """The ZoneInfo for a Windows or IANA name (UTC when unknown)."""
    return _zoneinfo(to_iana(name))


@cache
def _zoneinfo(iana: str) -> ZoneInfo:
    return ZoneInfo(iana)


@cache
def _is_iana(name: str) -> bool:
    if len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


LEGACY_AREAS = ("Etc/", "SystemV/", "posix/", "right/", "US/", "Canada/", "Brazil/", "Chile/", "Mexico/")


@cache
def iana_names() -> tuple[str, ...]:
    """Every IANA zone name people pick from (``Area/City`` and UTC; not the legacy aliases like ``US/Eastern``)."""
    names = {n for n in available_timezones() if "/" in n and not n.startswith(LEGACY_AREAS)}
    return tuple(sorted(names | {UTC_NAME}))
