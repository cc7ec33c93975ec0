"""Calendar items: parsing control input, expanding recurring series, and rendering Graph's event JSON."""

from __future__ import annotations

import base64
import calendar
import datetime as dt
import hashlib
import html
import os
import re
from dataclasses import dataclass, field
from typing import Any

from emulator.errors import bad_request
from emulator.zones import windows_name, zone

UTC = dt.UTC
NO_TIME = "0001-01-01T00:00:00Z"
ITEM_PREFIX = "AAMkAGI2"
OCCURRENCE_PREFIX = "AAMkADAw"
REST_PREFIX = "AAMkAGR1"  # regular (non-immutable) item ids: they change when the item moves to another folder
RESPONSES = ("none", "organizer", "tentativelyAccepted", "accepted", "declined", "notResponded")
ATTENDEE_TYPES = ("required", "optional", "resource")
SHOW_AS = ("free", "tentative", "busy", "oof", "workingElsewhere", "unknown")
IMPORTANCE = ("low", "normal", "high")
SENSITIVITY = ("normal", "personal", "private", "confidential")
PROVIDERS = ("unknown", "teamsForBusiness", "skypeForBusiness", "skypeForConsumer")
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
INDEXES = ("first", "second", "third", "fourth", "last")
PATTERNS = ("daily", "weekly", "absoluteMonthly", "relativeMonthly", "absoluteYearly", "relativeYearly")
# Fields an exception may override on one occurrence of a series.
OVERRIDABLE = (
    "subject", "body", "start", "end", "is_all_day", "location", "attendees", "show_as", "is_cancelled",
    "is_online_meeting", "online_meeting_provider", "importance", "sensitivity", "categories",
)


def new_item_id() -> str:
    return ITEM_PREFIX + base64.urlsafe_b64encode(os.urandom(33)).decode()


def rest_item_id(item_id: str, generation: int) -> str:
    """An item's regular id while it sits in its ``generation``-th folder (Outlook ids change on a move; the
    immutable id, ``item_id``, does not: outlook-immutable-id)."""
    digest = hashlib.sha256(f"{item_id}\x00{generation}".encode()).digest()
    return REST_PREFIX + base64.urlsafe_b64encode(digest + digest[:12]).decode()


def occurrence_id(master_id: str, key: str) -> str:
    return OCCURRENCE_PREFIX + base64.urlsafe_b64encode(f"{master_id}\x00{key}".encode()).decode()


def parse_occurrence_id(item_id: str) -> tuple[str, str] | None:
    """(master id, occurrence key) for an occurrence id, else None."""
    if not item_id.startswith(OCCURRENCE_PREFIX):
        return None
    try:
        raw = base64.urlsafe_b64decode(item_id[len(OCCURRENCE_PREFIX):].encode()).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    master_id, sep, key = raw.partition("\x00")
    return (master_id, key) if sep and master_id and key else None


def new_change_key() -> str:
    return base64.b64encode(os.urandom(12)).decode()


def new_ical_uid() -> str:
    return "040000008200E00074C5B7101A82E00800000000" + os.urandom(20).hex().upper()


def occurrence_ical_uid(uid: str, day: dt.date) -> str:
    """Graph embeds the occurrence date in the iCalUId, so each occurrence gets its own."""
    return uid[:32] + f"{day.year:04X}{day.month:02X}{day.day:02X}" + uid[40:]


def derived_change_key(change_key: str, key: str) -> str:
    digest = hashlib.sha256(f"{change_key}|{key}".encode()).digest()[:12]
    return base64.b64encode(digest).decode()


def graph_datetime(value: dt.datetime) -> str:
    """A DateTimeOffset as Graph writes it: UTC with seven fractional digits and Z."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S") + f".{value.microsecond:06d}0Z"


def wall_time(value: dt.datetime) -> str:
    """The dateTime part of a dateTimeTimeZone: wall time, seven fractional digits, no offset."""
    return value.strftime("%Y-%m-%dT%H:%M:%S") + f".{value.microsecond:06d}0"


def parse_instant(text: Any, name: str) -> dt.datetime:
    """An ISO 8601 instant from a query parameter; no offset means UTC."""
    if not isinstance(text, str) or not text.strip():
        raise bad_request(f"{name} is required and must be an ISO 8601 date-time.", "ErrorInvalidParameter")
    value = _parse_iso(text.strip())
    if value is None:
        raise bad_request(f"{name} is not a valid ISO 8601 date-time.", "ErrorInvalidParameter")
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _parse_iso(text: str) -> dt.datetime | None:
    text = text.replace("Z", "+00:00").replace("z", "+00:00")
    match = re.fullmatch(r"(\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2})?)?)(\.\d+)?([+-]\d{2}:\d{2})?", text)
    if not match:
        return None
    base, fraction, offset = match.groups()
    micro = (fraction[1:] + "000000")[:6] if fraction else "000000"
    try:
        value = dt.datetime.fromisoformat(base + "." + micro + (offset or ""))
    except ValueError:
        return None
    return value


@dataclass
class Item:
    """One stored calendar item: a single instance or a series master (with its exceptions)."""

    id: str
    user_id: str
    type: str  # singleInstance | seriesMaster
    subject: str
    body: dict
    start: dt.datetime  # naive wall time in tz
    end: dt.datetime
    tz: str  # zone name as given (Windows or IANA)
    is_all_day: bool
    location: str
    attendees: list[dict]
    organizer: dict
    show_as: str
    is_cancelled: bool
    is_online_meeting: bool
    online_meeting_provider: str
    importance: str
    sensitivity: str
    categories: list[str]
    recurrence: dict | None
    ical_uid: str
    created: dt.datetime
    last_modified: dt.datetime
    change_key: str
    is_organizer: bool
    response: dict
    exceptions: dict[str, dict] = field(default_factory=dict)  # key -> overrides (+ _modified, _change_key)
    deleted: set[str] = field(default_factory=set)  # keys of deleted occurrences
    seq: int = 0  # the state's change counter when this item last changed
    calendar_id: str = ""  # the owner's calendar holding the item
    generation: int = 0  # how many times it moved to another calendar: its regular id changes each time
    owner_mail: str = ""  # the mailbox holding this copy (hideAttendees shows its owner only themselves)
    hide_attendees: bool = False

    @property
    def rest_id(self) -> str:
        return rest_item_id(self.id, self.generation)

    def touch(self, now: dt.datetime) -> None:
        self.last_modified = now
        self.change_key = new_change_key()


@dataclass
class Instance:
    """What calendarView returns: a single instance, an occurrence or an exception, resolved."""

    id: str
    item: Item
    type: str  # singleInstance | occurrence | exception
    key: str | None
    fields: dict
    start_utc: dt.datetime
    end_utc: dt.datetime
    change_key: str
    last_modified: dt.datetime

    def overlaps(self, start: dt.datetime, end: dt.datetime) -> bool:
        if self.start_utc == self.end_utc:
            return start <= self.start_utc < end
        return self.start_utc < end and self.end_utc > start


# ---------------------------------------------------------------- parsing control input

def _text(data: dict, name: str, default: str = "", limit: int = 10_000) -> str:
    value = data.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str) or len(value) > limit:
        raise bad_request(f"'{name}' must be a string of at most {limit} characters.", "ErrorInvalidProperty")
    return value


def _choice(data: dict, name: str, allowed: tuple[str, ...], default: str) -> str:
    value = data.get(name, default)
    if value not in allowed:
        raise bad_request(f"'{name}' must be one of: {', '.join(allowed)}.", "ErrorInvalidProperty")
    return value


def _bool(data: dict, name: str, default: bool = False) -> bool:
    value = data.get(name, default)
    if not isinstance(value, bool):
        raise bad_request(f"'{name}' must be true or false.", "ErrorInvalidProperty")
    return value


def _date_time_zone(data: dict, name: str) -> tuple[dt.datetime, str]:
    value = data.get(name)
    if not isinstance(value, dict) or not isinstance(value.get("dateTime"), str):
        raise bad_request(
            f"'{name}' must be a dateTimeTimeZone object with dateTime and timeZone.", "ErrorInvalidProperty"
        )
    tz_name = value.get("timeZone") or "UTC"
    try:
        tz = zone(tz_name)
    except ValueError:
        raise bad_request(f"'{name}.timeZone' is not a known time zone.", "ErrorTimeZoneNotSupported") from None
    parsed = _parse_iso(value["dateTime"].strip())
    if parsed is None:
        raise bad_request(f"'{name}.dateTime' is not a valid date-time.", "ErrorInvalidProperty")
    if not 1900 <= parsed.year <= 8999:
        raise bad_request(f"'{name}.dateTime' must be between the years 1900 and 8999.", "ErrorInvalidProperty")
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(tz).replace(tzinfo=None)
    return parsed, tz_name


def _recipient(value: Any, name: str) -> dict:
    if not isinstance(value, dict) or not isinstance(value.get("emailAddress"), dict):
        raise bad_request(f"'{name}' must have an emailAddress object.", "ErrorInvalidProperty")
    email = value["emailAddress"]
    address = email.get("address")
    if not isinstance(address, str) or "@" not in address or len(address) > 320:
        raise bad_request(f"'{name}.emailAddress.address' must be an email address.", "ErrorInvalidRecipients")
    display = email.get("name", address)
    if not isinstance(display, str) or len(display) > 256:
        raise bad_request(f"'{name}.emailAddress.name' must be a string.", "ErrorInvalidProperty")
    return {"emailAddress": {"name": display, "address": address}}


def _attendees(value: Any) -> list[dict]:
    if not isinstance(value, list) or len(value) > 500:
        raise bad_request("'attendees' must be a list of at most 500 attendees.", "ErrorInvalidProperty")
    result = []
    for position, raw in enumerate(value):
        attendee = _recipient(raw, f"attendees[{position}]")
        attendee["type"] = _choice(raw, "type", ATTENDEE_TYPES, "required")
        status = raw.get("status") or {}
        if not isinstance(status, dict):
            raise bad_request(f"'attendees[{position}].status' must be an object.", "ErrorInvalidProperty")
        response = _choice(status, "response", RESPONSES, "none")
        when = status.get("time", NO_TIME)
        if not isinstance(when, str):
            raise bad_request(f"'attendees[{position}].status.time' must be a string.", "ErrorInvalidProperty")
        attendee["status"] = {"response": response, "time": when}
        result.append(attendee)
    return result


def _recurrence(value: Any, start: dt.datetime) -> dict:
    if not isinstance(value, dict) or not isinstance(value.get("pattern"), dict):
        raise bad_request("'recurrence' must have a pattern and a range.", "ErrorInvalidRecurrence")
    pattern, rng = value["pattern"], value.get("range") or {}
    if not isinstance(rng, dict):
        raise bad_request("'recurrence.range' must be an object.", "ErrorInvalidRecurrence")
    kind = pattern.get("type")
    if kind not in PATTERNS:
        raise bad_request(f"'recurrence.pattern.type' must be one of: {', '.join(PATTERNS)}.", "ErrorInvalidRecurrence")
    interval = pattern.get("interval", 1)
    if not isinstance(interval, int) or isinstance(interval, bool) or not 1 <= interval <= 999:
        raise bad_request("'recurrence.pattern.interval' must be between 1 and 999.", "ErrorInvalidRecurrence")
    days = pattern.get("daysOfWeek") or []
    if not isinstance(days, list) or any(d not in DAYS for d in days):
        raise bad_request("'recurrence.pattern.daysOfWeek' must list week days.", "ErrorInvalidRecurrence")
    if kind in ("weekly", "relativeMonthly", "relativeYearly") and not days:
        days = [DAYS[start.weekday()]]
    first_day = pattern.get("firstDayOfWeek", "sunday")
    index = pattern.get("index", "first")
    if first_day not in DAYS or index not in INDEXES:
        raise bad_request("'recurrence.pattern' has a bad firstDayOfWeek or index.", "ErrorInvalidRecurrence")
    day_of_month = pattern.get("dayOfMonth", start.day if kind in ("absoluteMonthly", "absoluteYearly") else 0)
    month = pattern.get("month", start.month if kind in ("absoluteYearly", "relativeYearly") else 0)
    for name, number, high in (("dayOfMonth", day_of_month, 31), ("month", month, 12)):
        if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number <= high:
            raise bad_request(f"'recurrence.pattern.{name}' is out of range.", "ErrorInvalidRecurrence")
    range_type = rng.get("type", "noEnd")
    if range_type not in ("endDate", "noEnd", "numbered"):
        raise bad_request("'recurrence.range.type' must be endDate, noEnd or numbered.", "ErrorInvalidRecurrence")
    start_date = _date(rng.get("startDate"), start.date(), "startDate")
    end_date = _date(rng.get("endDate"), None, "endDate") if range_type == "endDate" else None
    if range_type == "endDate" and (end_date is None or end_date < start_date):
        raise bad_request("'recurrence.range.endDate' must be on or after startDate.", "ErrorInvalidRecurrence")
    count = rng.get("numberOfOccurrences", 0)
    if range_type == "numbered" and (not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 999):
        raise bad_request("'recurrence.range.numberOfOccurrences' must be 1..999.", "ErrorInvalidRecurrence")
    return {
        "pattern": {
            "type": kind, "interval": interval, "month": month, "dayOfMonth": day_of_month,
            "daysOfWeek": days, "firstDayOfWeek": first_day, "index": index,
        },
        "range": {
            "type": range_type, "startDate": start_date.isoformat(),
            "endDate": end_date.isoformat() if end_date else "0001-01-01",
            "recurrenceTimeZone": rng.get("recurrenceTimeZone") or "",
            "numberOfOccurrences": count if range_type == "numbered" else 0,
        },
    }


def _date(value: Any, default: dt.date | None, name: str) -> dt.date | None:
    if value is None:
        return default
    try:
        return dt.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise bad_request(f"'recurrence.range.{name}' must be a date (YYYY-MM-DD).", "ErrorInvalidRecurrence") from None


def parse_fields(data: Any, *, partial: bool, allow_recurrence: bool = True) -> dict:
    """Validate Graph-shaped event input into internal fields (only the given ones when ``partial``)."""
    if not isinstance(data, dict):
        raise bad_request("The request body must be a JSON object.", "ErrorInvalidRequest")
    out: dict[str, Any] = {}
    if "subject" in data or not partial:
        out["subject"] = _text(data, "subject", "", 255)
    if "body" in data or not partial:
        body = data.get("body") or {}
        if not isinstance(body, dict):
            raise bad_request("'body' must be an itemBody object.", "ErrorInvalidProperty")
        out["body"] = {
            "contentType": _choice(body, "contentType", ("text", "html"), "html"),
            "content": _text(body, "content", "", 100_000),
        }
    if "start" in data or "end" in data or not partial:
        if not ("start" in data and "end" in data):
            raise bad_request("'start' and 'end' must be given together.", "ErrorInvalidProperty")
        start, tz = _date_time_zone(data, "start")
        end, end_tz = _date_time_zone(data, "end")
        end = end.replace(tzinfo=zone(end_tz)).astimezone(zone(tz)).replace(tzinfo=None)
        if end < start:
            raise bad_request("The event end must not be before its start.", "ErrorInvalidProperty")
        out.update(start=start, end=end, tz=tz)
    if "isAllDay" in data or not partial:
        out["is_all_day"] = _bool(data, "isAllDay")
    if "location" in data or not partial:
        location = data.get("location") or ""
        if isinstance(location, dict):
            location = location.get("displayName") or ""
        if not isinstance(location, str) or len(location) > 255:
            raise bad_request("'location' must be a location object or a string.", "ErrorInvalidProperty")
        out["location"] = location
    if "attendees" in data or not partial:
        out["attendees"] = _attendees(data.get("attendees") or [])
    if "organizer" in data and data["organizer"] is not None:
        out["organizer"] = _recipient(data["organizer"], "organizer")
    for name, key, allowed, default in (
        ("showAs", "show_as", SHOW_AS, "busy"),
        ("importance", "importance", IMPORTANCE, "normal"),
        ("sensitivity", "sensitivity", SENSITIVITY, "normal"),
        ("onlineMeetingProvider", "online_meeting_provider", PROVIDERS, "unknown"),
    ):
        if name in data or not partial:
            out[key] = _choice(data, name, allowed, default)
    for name, key in (("isCancelled", "is_cancelled"), ("isOnlineMeeting", "is_online_meeting"),
                      ("hideAttendees", "hide_attendees")):
        if name in data or not partial:
            out[key] = _bool(data, name)
    if "categories" in data or not partial:
        categories = data.get("categories") or []
        if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
            raise bad_request("'categories' must be a list of strings.", "ErrorInvalidProperty")
        out["categories"] = categories
    if "responseStatus" in data:
        status = data["responseStatus"]
        if not isinstance(status, dict):
            raise bad_request("'responseStatus' must be an object.", "ErrorInvalidProperty")
        out["response"] = {"response": _choice(status, "response", RESPONSES, "none"), "time": NO_TIME}
    if data.get("recurrence") is not None:
        if not allow_recurrence:
            raise bad_request("An occurrence cannot have its own recurrence.", "ErrorInvalidRecurrence")
        start = out.get("start") or dt.datetime(2000, 1, 1)
        out["recurrence"] = _recurrence(data["recurrence"], start)
    elif "recurrence" in data:
        out["recurrence"] = None
    return out


def new_item(user: dict, fields: dict, now: dt.datetime, calendar_id: str = "") -> Item:
    """A stored item in ``calendar_id`` from validated fields, organized by ``user`` unless they name someone else."""
    me = {"emailAddress": {"name": user["display_name"], "address": user["mail"]}}
    organizer = fields.get("organizer", me)
    is_organizer = organizer["emailAddress"]["address"].lower() == user["mail"].lower()
    response = fields.get("response") or {"response": "organizer" if is_organizer else "none", "time": NO_TIME}
    recurrence = fields.get("recurrence")
    if recurrence is not None:
        recurrence["range"]["startDate"] = fields["start"].date().isoformat()
        if not recurrence["range"]["recurrenceTimeZone"]:
            recurrence["range"]["recurrenceTimeZone"] = windows_name(fields["tz"])
    return Item(
        id=new_item_id(), user_id=user["id"], type="seriesMaster" if recurrence else "singleInstance",
        subject=fields["subject"], body=fields["body"], start=fields["start"], end=fields["end"],
        tz=fields["tz"], is_all_day=fields["is_all_day"], location=fields["location"],
        attendees=fields["attendees"], organizer=organizer, show_as=fields["show_as"],
        is_cancelled=fields["is_cancelled"], is_online_meeting=fields["is_online_meeting"],
        online_meeting_provider=fields["online_meeting_provider"], importance=fields["importance"],
        sensitivity=fields["sensitivity"], categories=fields["categories"], recurrence=recurrence,
        ical_uid=new_ical_uid(), created=now, last_modified=now, change_key=new_change_key(),
        is_organizer=is_organizer, response=response, calendar_id=calendar_id, owner_mail=user["mail"],
        hide_attendees=fields.get("hide_attendees", False),
    )


def apply_fields(item: Item, fields: dict, now: dt.datetime) -> None:
    """Update a stored item in place (a series keeps its exceptions only if its times did not move)."""
    for name, value in fields.items():
        setattr(item, name, value)
    if "organizer" in fields:
        item.is_organizer = False
    if "recurrence" in fields:
        item.type = "seriesMaster" if item.recurrence else "singleInstance"
        if item.recurrence:
            item.recurrence["range"]["startDate"] = item.start.date().isoformat()
            item.recurrence["range"]["recurrenceTimeZone"] = windows_name(item.tz)
        item.exceptions.clear()
        item.deleted.clear()
    elif "start" in fields and item.recurrence:
        item.recurrence["range"]["startDate"] = item.start.date().isoformat()
        item.exceptions.clear()
        item.deleted.clear()
    item.touch(now)


# ---------------------------------------------------------------- recurrence expansion

def _add_months(day: dt.date, months: int) -> tuple[int, int]:
    total = day.year * 12 + day.month - 1 + months
    return total // 12, total % 12 + 1


def _nth_weekday(year: int, month: int, weekdays: list[str], index: str) -> list[dt.date]:
    last = calendar.monthrange(year, month)[1]
    result = []
    for name in weekdays:
        target = DAYS.index(name)
        matches = [dt.date(year, month, d) for d in range(1, last + 1) if dt.date(year, month, d).weekday() == target]
        chosen = matches[-1] if index == "last" else matches[INDEXES.index(index)]
        result.append(chosen)
    return sorted(result)


def occurrence_dates(recurrence: dict, until: dt.date):
    """Yield the series' occurrence dates in order, up to ``until`` and the range's end or count."""
    pattern, rng = recurrence["pattern"], recurrence["range"]
    start = dt.date.fromisoformat(rng["startDate"])
    end = dt.date.fromisoformat(rng["endDate"]) if rng["type"] == "endDate" else dt.date.max
    limit = rng["numberOfOccurrences"] if rng["type"] == "numbered" else None
    emitted = 0
    for day in _candidates(pattern, start):
        if day > end or day > until or (limit is not None and emitted >= limit):
            return
        if day >= start:
            emitted += 1
            yield day


def _candidates(pattern: dict, start: dt.date):
    kind, interval = pattern["type"], pattern["interval"]
    if kind == "daily":
        day = start
        while day < dt.date.max - dt.timedelta(days=interval):
            yield day
            day += dt.timedelta(days=interval)
    elif kind == "weekly":
        first = DAYS.index(pattern["firstDayOfWeek"])
        week_start = start - dt.timedelta(days=(start.weekday() - first) % 7)
        wanted = sorted((DAYS.index(d) - first) % 7 for d in pattern["daysOfWeek"])
        while week_start.year < 9000:
            for offset in wanted:
                yield week_start + dt.timedelta(days=offset)
            week_start += dt.timedelta(weeks=interval)
    else:
        step = interval * (12 if kind.endswith("Yearly") else 1)
        anchor = dt.date(start.year, pattern["month"] or start.month, 1) if kind.endswith("Yearly") else start
        months = 0
        while True:
            year, month = _add_months(anchor, months)
            if year >= 9000:
                return
            if kind in ("absoluteMonthly", "absoluteYearly"):
                if pattern["dayOfMonth"] <= calendar.monthrange(year, month)[1]:
                    yield dt.date(year, month, pattern["dayOfMonth"])
            else:
                yield from _nth_weekday(year, month, pattern["daysOfWeek"], pattern["index"])
            months += step


def _utc(wall: dt.datetime, tz_name: str) -> dt.datetime:
    return wall.replace(tzinfo=zone(tz_name)).astimezone(UTC)


def instances(item: Item, window_start: dt.datetime, window_end: dt.datetime) -> list[Instance]:
    """The item's calendarView entries overlapping the window (occurrences and exceptions for a series)."""
    if item.type == "singleInstance":
        single = _single(item)
        return [single] if single.overlaps(window_start, window_end) else []
    result = []
    until = (window_end + dt.timedelta(days=2)).date()
    for day in occurrence_dates(item.recurrence, until):
        key = day.isoformat()
        if key in item.deleted:
            continue
        instance = occurrence(item, key)
        if instance.overlaps(window_start, window_end):
            result.append(instance)
    return result


def _single(item: Item) -> Instance:
    return Instance(
        id=item.id, item=item, type="singleInstance", key=None, fields=_base_fields(item),
        start_utc=_utc(item.start, item.tz), end_utc=_utc(item.end, item.tz),
        change_key=item.change_key, last_modified=item.last_modified,
    )


def _base_fields(item: Item) -> dict:
    return {name: getattr(item, name) for name in OVERRIDABLE} | {"tz": item.tz}


def occurrence(item: Item, key: str) -> Instance:
    """One occurrence (or exception) of a series by its key (the original local start date)."""
    day = dt.date.fromisoformat(key)
    start = dt.datetime.combine(day, item.start.time())
    fields = _base_fields(item) | {"start": start, "end": start + (item.end - item.start)}
    override = item.exceptions.get(key)
    change_key, modified, kind = derived_change_key(item.change_key, key), item.last_modified, "occurrence"
    if override is not None:
        fields.update({k: v for k, v in override.items() if not k.startswith("_")})
        change_key, modified, kind = override["_change_key"], override["_modified"], "exception"
    return Instance(
        id=occurrence_id(item.id, key), item=item, type=kind, key=key, fields=fields,
        start_utc=_utc(fields["start"], fields["tz"]), end_utc=_utc(fields["end"], fields["tz"]),
        change_key=change_key, last_modified=max(modified, item.last_modified),
    )


def is_occurrence_of(item: Item, key: str) -> bool:
    """True when ``key`` is a real, not deleted, occurrence date of the series."""
    try:
        day = dt.date.fromisoformat(key)
    except ValueError:
        return False
    if item.recurrence is None or key in item.deleted:
        return False
    return any(d == day for d in occurrence_dates(item.recurrence, day))


# ---------------------------------------------------------------- rendering

def _render_dtz(wall: dt.datetime, tz_name: str, is_all_day: bool, out_tz: str | None) -> dict:
    if is_all_day:
        return {"dateTime": wall_time(wall), "timeZone": out_tz or "UTC"}
    target = zone(out_tz) if out_tz else UTC
    local = wall.replace(tzinfo=zone(tz_name)).astimezone(target).replace(tzinfo=None)
    return {"dateTime": wall_time(local), "timeZone": out_tz or "UTC"}


def body_preview(body: dict) -> str:
    text = body.get("content", "")
    if body.get("contentType") == "html":
        text = html.unescape(re.sub(r"<[^>]*>", " ", text))
    return " ".join(text.split())[:255]


def _location(name: str) -> dict:
    if not name:
        return {
            "displayName": "", "locationType": "default", "uniqueIdType": "unknown", "address": {}, "coordinates": {},
        }
    return {
        "displayName": name, "locationType": "default", "uniqueId": name, "uniqueIdType": "private",
        "address": {}, "coordinates": {},
    }


def render(
    item: Item, instance: Instance | None, base_url: str, out_tz: str | None = None, immutable: bool = True
) -> dict[str, Any]:
    """Graph's event JSON for a stored item (series master or single) or one of its instances, with immutable
    or (``immutable=False``) regular ids."""
    fields = instance.fields if instance else _base_fields(item)
    kind = instance.type if instance else item.type
    master_id = item.id if immutable else item.rest_id
    event_id = (occurrence_id(master_id, instance.key) if instance and instance.key else
                instance.id if instance else item.id)
    if not immutable and not (instance and instance.key):
        event_id = item.rest_id
    change_key = instance.change_key if instance else item.change_key
    modified = instance.last_modified if instance else item.last_modified
    ical_uid = item.ical_uid
    if instance and instance.key:
        ical_uid = occurrence_ical_uid(item.ical_uid, dt.date.fromisoformat(instance.key))
    tz_windows = windows_name(fields["tz"])
    location = fields["location"]
    online = fields["is_online_meeting"]
    event = {
        "@odata.etag": f'W/"{change_key}"',
        "id": event_id,
        "createdDateTime": graph_datetime(item.created),
        "lastModifiedDateTime": graph_datetime(modified),
        "changeKey": change_key,
        "categories": list(fields["categories"]),
        "transactionId": None,
        "originalStartTimeZone": tz_windows,
        "originalEndTimeZone": tz_windows,
        "iCalUId": ical_uid,
        "reminderMinutesBeforeStart": 15,
        "isReminderOn": True,
        "hasAttachments": False,
        "subject": fields["subject"],
        "bodyPreview": body_preview(fields["body"]),
        "importance": fields["importance"],
        "sensitivity": fields["sensitivity"],
        "isAllDay": fields["is_all_day"],
        "isCancelled": fields["is_cancelled"],
        "isOrganizer": item.is_organizer,
        "responseRequested": True,
        "seriesMasterId": master_id if kind in ("occurrence", "exception") else None,
        "showAs": fields["show_as"],
        "type": kind,
        "webLink": f"https://outlook.office365.com/owa/?itemid={event_id}&exvsurl=1&path=/calendar/item",
        "onlineMeetingUrl": None,
        "isOnlineMeeting": online,
        "onlineMeetingProvider": fields["online_meeting_provider"] if online else "unknown",
        "allowNewTimeProposals": True,
        "isDraft": False,
        "hideAttendees": item.hide_attendees,
        "responseStatus": dict(item.response),
        "body": dict(fields["body"]),
        "start": _render_dtz(fields["start"], fields["tz"], fields["is_all_day"], out_tz),
        "end": _render_dtz(fields["end"], fields["tz"], fields["is_all_day"], out_tz),
        "location": _location(location),
        "locations": [_location(location)] if location else [],
        "recurrence": item.recurrence if kind == "seriesMaster" else None,
        "attendees": [
            {"type": a["type"], "status": dict(a["status"]), "emailAddress": dict(a["emailAddress"])}
            for a in _visible_attendees(item, fields["attendees"])
        ],
        "organizer": {"emailAddress": dict(item.organizer["emailAddress"])},
        "onlineMeeting": (
            {"joinUrl": f"https://teams.microsoft.com/l/meetup-join/{event_id[-16:]}"} if online else None
        ),
    }
    if instance and instance.key:
        event["originalStart"] = graph_datetime(
            _utc(dt.datetime.combine(dt.date.fromisoformat(instance.key), item.start.time()), item.tz)
        ).replace(".0000000Z", "Z")
    return event


def _visible_attendees(item: Item, attendees: list[dict]) -> list[dict]:
    """hideAttendees: "each attendee only sees themselves in the meeting request" (event resource); the
    organizer's own copy lists everyone."""
    if not item.hide_attendees or item.is_organizer:
        return attendees
    me = item.owner_mail.lower()
    return [a for a in attendees if a["emailAddress"]["address"].lower() == me]


def select(event: dict, names: list[str] | None) -> dict:
    """Keep only the $select'ed properties (case-insensitive), plus @odata.etag and id as Graph does."""
    if not names:
        return event
    wanted = {n.strip().lower() for n in names if n.strip()}
    return {k: v for k, v in event.items() if k in ("@odata.etag", "id") or k.lower() in wanted}
