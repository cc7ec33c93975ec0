from __future__ import annotations

import pytest

from service.timezones import to_iana, windows_zones, zone


@pytest.mark.parametrize(("name", "expected"), [
    ("Pacific Standard Time", "America/Los_Angeles"),
    ("pacific standard time", "America/Los_Angeles"),
    ("Hawaiian Standard Time", "Pacific/Honolulu"),
    ("Tonga Standard Time", "Pacific/Tongatapu"),
    ("W. Europe Standard Time", "Europe/Berlin"),
    ("Europe/Paris", "Europe/Paris"),
    ("UTC", "UTC"),
    ("tzone://Microsoft/Utc", "UTC"),
    ("Customized Time Zone", "UTC"),
    ("", "UTC"),
    (None, "UTC"),
    ("../../etc/passwd", "UTC"),
    ("x" * 500, "UTC"),
])
def test_windows_and_iana_names_map_to_iana(name, expected):
    assert to_iana(name) == expected


def test_every_shipped_windows_zone_maps_to_a_loadable_iana_zone():
    mapping = windows_zones()

    assert len(mapping) > 130
    for windows, iana in mapping.items():
        assert to_iana(windows) == to_iana(iana)
        assert zone(windows).key in (iana, "UTC")


def test_zone_accepts_windows_names():
    assert zone("Eastern Standard Time").key == "America/New_York"
