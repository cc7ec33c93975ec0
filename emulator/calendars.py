"""Calendars: the folders a mailbox lists, its own and local copies of calendars other users share with it.

Every user has a default calendar ("Calendar") from creation. An own calendar holds events; a shared copy
(``source_id`` set) is the recipient's entry for a calendar another user owns: it has its own id in the
recipient's mailbox, as Graph documents, and shows the owner's events, which stay in the owner's mailbox.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from typing import Any

from emulator.errors import bad_request
from emulator.events import new_change_key

CALENDAR_PREFIX = "AAMkADNi"
COLORS = ("auto", "lightBlue", "lightGreen", "lightOrange", "lightGray", "lightYellow", "lightTeal", "lightPink",
          "lightBrown", "lightRed", "maxColor")
PROVIDERS = ["teamsForBusiness"]
MAX_NAME = 255


def new_calendar_id() -> str:
    return CALENDAR_PREFIX + base64.urlsafe_b64encode(os.urandom(30)).decode() + "AAA="


@dataclass
class Calendar:
    """One entry in a mailbox's calendar list."""

    id: str
    user_id: str  # the mailbox that lists it
    name: str
    change_key: str
    is_default: bool = False
    color: str = "auto"
    owner_id: str | None = None  # for a shared copy: the user who shared it
    source_id: str | None = None  # for a shared copy: the owner's calendar it shows

    @property
    def shared(self) -> bool:
        return self.source_id is not None

    def rename(self, name: str) -> None:
        self.name = name
        self.change_key = new_change_key()


def parse_name(data: Any, required: bool = True) -> str | None:
    """A calendar name from control input: a non-empty string of at most 255 characters."""
    name = data.get("name") if isinstance(data, dict) else None
    if name is None and not required:
        return None
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise bad_request(f"'name' must be a non-empty string of at most {MAX_NAME} characters.", "InvalidRequest")
    return name.strip()


def parse_color(data: dict) -> str:
    color = data.get("color", "auto")
    if color not in COLORS:
        raise bad_request(f"'color' must be one of: {', '.join(COLORS)}.", "InvalidRequest")
    return color


def render(calendar: Calendar, owner: dict, tenant_id: str, viewer_id: str | None = None) -> dict[str, Any]:
    """Graph's calendar JSON as ``viewer_id`` (default: the listing mailbox) sees it; shares are read-only."""
    own = not calendar.shared and viewer_id in (None, calendar.user_id)
    return {
        "@odata.id": f"https://graph.microsoft.com/v1.0/users('{calendar.user_id}@{tenant_id}')"
                     f"/calendars('{calendar.id}')",
        "id": calendar.id,
        "name": calendar.name,
        "color": calendar.color,
        "hexColor": "",
        "isDefaultCalendar": calendar.is_default,
        "changeKey": calendar.change_key,
        "canShare": own,
        "canViewPrivateItems": own,
        "canEdit": own,
        "allowedOnlineMeetingProviders": list(PROVIDERS),
        "defaultOnlineMeetingProvider": PROVIDERS[0],
        "isTallyingResponses": calendar.is_default,
        "isRemovable": not calendar.is_default,
        "owner": {"name": owner["display_name"], "address": owner["mail"]},
    }
