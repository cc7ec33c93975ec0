"""The JSON API for the coaching product (service-to-service, bearer CALSYNC_OPS_TOKEN).

Users are addressed by email or Graph id. Lists are paginated with an opaque ``cursor`` and ``limit``.
Event bodies are never stored, so never returned.
"""

from __future__ import annotations

import logging
import re
from datetime import date, datetime, timedelta

from flask import current_app, jsonify, request

from service import cursors, inputs
from service.api import base
from service.digest import plan, schedule
from service.insights import coaching, days, meetings, org, visibility
from service.insights import people as people_io
from service.insights.collaborators import DEFAULT_DAYS, MAX_DAYS, top_collaborators
from service.insights.matching import Directory, attendee_emails, is_resource
from service.insights.people import styles
from service.store import people as people_store
from service.store import tenants as tenants_store
from service.store import users as users_store
from service.store import utcnow
from service.store.records import PREP_MIN_SIZE, PREP_MINUTES, PrepMeetings, User
from service.web import problems

log = logging.getLogger(__name__)

bp = base.blueprint("digest_api", __name__)

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_WINDOW = timedelta(days=366)
MAX_IMPORT_ROWS = 5000


# --- users --------------------------------------------------------------------------------------------

@bp.get("/users/<key>")
def get_user(key: str):
    """Connection status, time zone and sync state of one user."""
    user = base.user_or_none(key)
    if user is None:
        return base.not_found()
    connection, sync = user.connection, user.sync
    return jsonify({
        "id": user.id,
        "email": user.email,
        "display_name": user.display_name,
        "connection": {"status": connection.status, "reason": connection.reason, "since": base.iso(connection.since)},
        "time_zone": user.time_zone or "UTC",
        "graph_time_zone": user.graph_time_zone,
        "last_sync_at": base.iso(sync.last_sync_at),
        "last_notification_at": base.iso(sync.last_notification_at),
        "last_sync_result": sync.last_result,
        **_settings_json(user),
    })


def _pointer(name: str) -> str:
    """``digest.time`` as the JSON Pointer ``/digest/time`` (the body itself is ``""``)."""
    name = name.removeprefix("body").lstrip(".")
    return "/" + name.replace("~", "~0").replace("/", "~1").replace(".", "/") if name else ""


CLOCK = re.compile(r"^\d{1,2}:\d{2}$")
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _settings_json(user: User) -> dict:
    digest, prep = user.digest, user.prep
    return {"digest": {"enabled": digest.enabled, "time": digest.time, "send_empty": digest.send_empty,
                       "days": [DAY_NAMES[d] for d in digest.days]},
            "prep": {"enabled": prep.enabled, "minutes": prep.minutes, "meetings": str(prep.meetings),
                     "min_size": prep.min_size}}


@bp.get("/users/<key>/settings")
def get_settings(key: str):
    """The user's digest and meeting-prep settings."""
    user = base.user_or_none(key)
    if user is None:
        return base.not_found()
    return jsonify(_settings_json(user))


def _fields(body: object, name: str, allowed: set[str]) -> dict:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise base.BadRequest(f"{name} must be an object", pointer=_pointer(name))
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise base.BadRequest(f"unknown {name} setting: {', '.join(map(str, unknown))[:100]}",
                         pointer=_pointer(f"{name}.{unknown[0]}"))
    return body


def _flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise base.BadRequest(f"{name} must be true or false", pointer=_pointer(name))
    return value


def _whole(value: object, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise base.BadRequest(f"{name} must be a whole number between {low} and {high}", pointer=_pointer(name))
    return value


def _digest_changes(body: dict) -> dict:
    changes: dict = {}
    for name in ("enabled", "send_empty"):
        if name in body:
            changes[name] = _flag(body[name], f"digest.{name}")
    if "time" in body:
        raw = body["time"]
        clock = raw.strip().zfill(5) if isinstance(raw, str) and CLOCK.match(raw.strip()) else ""
        if not clock or schedule.parse_clock(clock, "").strftime("%H:%M") != clock:
            raise base.BadRequest("digest.time must look like 06:30", pointer="/digest/time")
        changes["time"] = clock
    if "days" in body:
        days = body["days"]
        if not isinstance(days, list) or not days or not all(isinstance(d, str) and d.lower() in DAY_NAMES
                                                                for d in days):
            raise base.BadRequest("digest.days must be a non-empty list of mon, tue, wed, thu, fri, sat, sun",
                             pointer="/digest/days")
        changes["days"] = [DAY_NAMES.index(d.lower()) for d in days]
    return changes


def _prep_changes(body: dict) -> dict:
    changes: dict = {}
    if "minutes" in body:
        changes["minutes"] = None if body["minutes"] is None else _whole(body["minutes"], "prep.minutes",
                                                                           *PREP_MINUTES)
    if "enabled" in body and _flag(body["enabled"], "prep.enabled") is False:
        changes["minutes"] = None
    if "meetings" in body:
        if body["meetings"] not in PrepMeetings._value2member_map_:
            raise base.BadRequest("prep.meetings must be one of " + ", ".join(PrepMeetings._value2member_map_),
                             pointer="/prep/meetings")
        changes["meetings"] = body["meetings"]
    if "min_size" in body:
        changes["min_size"] = _whole(body["min_size"], "prep.min_size", *PREP_MIN_SIZE)
    return changes


@bp.patch("/users/<key>/settings")
def change_settings(key: str):
    """Change some of the user's digest and prep settings (the fields given); answers the settings."""
    user = base.user_or_none(key)
    if user is None:
        return base.not_found()
    body = _fields(request.get_json(silent=True), "body", {"digest", "prep"}) or None
    if body is None:
        raise base.BadRequest('body must be a JSON object like {"digest": {...}, "prep": {...}}')
    digest = _digest_changes(_fields(body.get("digest"), "digest", {"enabled", "time", "send_empty", "days"}))
    prep = _prep_changes(_fields(body.get("prep"), "prep", {"enabled", "minutes", "meetings", "min_size"}))
    users_store.set_digest_preferences(base.db(), user.id, **digest)
    users_store.set_prep_preferences(base.db(), user.id, **prep)
    if digest:
        plan.reschedule(base.db(), user.id, current_app.extensions["calsync"].settings.digest_default_time)
    log.info("settings changed through the API for user %s", user.id)
    return jsonify(_settings_json(users_store.get(base.db(), user.id)))


@bp.get("/users/<key>/coaching")
def list_coaching(key: str):
    """Up to five coaching suggestions for the user's local day ``date`` (default: today)."""
    user = base.user_or_none(key)
    if user is None:
        return base.not_found()
    today = utcnow().astimezone(days.user_zone(user)).date()
    raw = request.args.get("date") or ""
    try:
        day = date.fromisoformat(raw.strip()) if raw else today
    except ValueError:
        raise base.BadRequest("date must be a date like 2026-07-01", parameter="date") from None
    if abs((day - today).days) > MAX_COACHING_DAYS:
        raise base.BadRequest(f"date must be within {MAX_COACHING_DAYS} days of today", parameter="date")
    limit = base.int_arg("limit", coaching.LIMIT, 1, coaching.LIMIT)
    found = coaching.suggest(base.db(), user, day, limit=limit)
    return jsonify({"date": day.isoformat(), "time_zone": days.user_zone(user).key,
                    "items": [s.as_dict() for s in found]})


MAX_COACHING_DAYS = 31


def _person_json(person: dict | None) -> dict | None:
    if person is None:
        return None
    return {"id": person["_id"], "name": person.get("name"), "email": person.get("primary_email"),
            "emails": person.get("emails", []), "team": person.get("team"), "styles": styles(person),
            "assessments": person.get("assessments", {})}


def _meeting_json(event: dict, directory: Directory, organization: org.Organization | None = None) -> dict:
    attendees = []
    outside = organization.is_external if organization else (lambda _email: False)
    for attendee in event.get("attendees") or []:
        email = (attendee.get("email") or "").lower()
        person = None if is_resource(attendee) else directory.person(email)
        attendees.append({"name": attendee.get("name"), "email": email, "type": attendee.get("type"),
                          "response": attendee.get("response"), "person": _person_json(person),
                          "external": not is_resource(attendee) and outside(email)})
    organizer = event.get("organizer") or {}
    return {
        "id": event.get("graph_id"),
        "subject": meetings.subject_of(event),
        "is_private": meetings.is_private(event),
        "start": base.iso(event.get("start")),
        "end": base.iso(event.get("end")),
        "is_all_day": bool(event.get("is_all_day")),
        "is_cancelled": bool(event.get("is_cancelled")),
        "is_online_meeting": bool(event.get("is_online_meeting")),
        "show_as": event.get("show_as"),
        "type": event.get("type"),
        "series_master_id": event.get("series_master_id"),
        "organizer": {"name": organizer.get("name"), "email": (organizer.get("email") or "").lower() or None,
                      "person": _person_json(directory.person(organizer.get("email")))},
        "attendees": attendees,
        "attendees_hidden": event.get("hide_attendees") is True,   # the organizer hid the list: it is not complete
    }


@bp.get("/users/<key>/meetings")
def list_meetings(key: str):
    """Stored meetings overlapping [start, end) (default: the next 7 days), earliest first."""
    user = base.user_or_none(key)
    if user is None:
        return base.not_found()
    now = utcnow().replace(microsecond=0)
    start = base.time_arg("start", now)
    end = base.time_arg("end", start + timedelta(days=7))
    if end <= start or end - start > MAX_WINDOW:
        raise base.BadRequest("end must be after start, within 366 days", parameter="end")
    limit = base.int_arg("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    cursor = base.cursor_arg(2)
    after = (_parse_cursor_time(cursor[0]), cursor[1]) if cursor else None
    page, next_key = meetings.page(base.db(), user.id, start, end, after, limit)
    organization = org.for_user(base.db(), user)
    directory = visibility.redact(Directory.for_emails(base.db(), attendee_emails(page)), user, organization)
    body = {"items": [_meeting_json(e, directory, organization) for e in page],
            "start": base.iso(start), "end": base.iso(end),
            "next_cursor": cursors.encode([next_key[0].isoformat(), next_key[1]]) if next_key else None}
    return jsonify(body)


def _parse_cursor_time(raw: str) -> datetime:
    try:
        return inputs.instant(raw, "cursor")
    except inputs.BadInput:
        raise base.BadRequest("cursor is not valid", parameter="cursor") from None


@bp.get("/users/<key>/collaborators")
def list_collaborators(key: str):
    """The people the user met most over the last ``days`` days, weighted by length and size."""
    user = base.user_or_none(key)
    if user is None:
        return base.not_found()
    days = base.int_arg("days", DEFAULT_DAYS, 1, MAX_DAYS)
    limit = base.int_arg("limit", 10, 1, 100)
    ranked = top_collaborators(base.db(), user, days=days, limit=limit)
    people = {p["_id"]: p for p in people_store.by_emails(base.db(), [c.email for c in ranked])}
    items = [{**c.as_dict(), "person": _person_json(people.get(c.person_id))} for c in ranked]
    return jsonify({"items": items, "days": days})


# --- tenants ------------------------------------------------------------------------------------------

def _tenant_key(tenant_id: str) -> str:
    if not 0 < len(tenant_id) <= 100 or not all(c.isalnum() or c in "-_." for c in tenant_id):
        raise base.BadRequest("tenant id must be up to 100 letters, digits, dashes, dots or underscores")
    return tenant_id


@bp.get("/tenants/<tenant_id>/domains")
def get_tenant_domains(tenant_id: str):
    """The domains an operator configured for a tenant (besides each user's own email domain)."""
    return jsonify({"tenant_id": tenant_id, "domains": tenants_store.domains(base.db(), _tenant_key(tenant_id))})


@bp.put("/tenants/<tenant_id>/domains")
def set_tenant_domains(tenant_id: str):
    """Replace the configured domains of a tenant: ``{"domains": ["contoso.com", ...]}`` (at most 100)."""
    tenant_id = _tenant_key(tenant_id)
    data = request.get_json(silent=True)
    domains = data.get("domains") if isinstance(data, dict) else None
    if not isinstance(domains, list) or len(domains) > 100:
        raise base.BadRequest('body must be {"domains": [...]} with at most 100 domain names', pointer="/domains")
    cleaned = [org.clean_domain(d) for d in domains]
    if None in cleaned:
        raise base.BadRequest("every domain must be a domain name like contoso.com",
                         pointer=f"/domains/{cleaned.index(None)}")
    return jsonify({"tenant_id": tenant_id, "domains": tenants_store.set_domains(base.db(), tenant_id, cleaned)})


# --- people -------------------------------------------------------------------------------------------

@bp.get("/people")
def list_people():
    """The people directory, ordered by id."""
    limit = base.int_arg("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    cursor = base.cursor_arg(1)
    found = people_store.page(base.db(), cursor[0] if cursor else None, limit + 1)
    page = found[:limit]
    return jsonify({"items": [_person_json(p) for p in page],
                    "next_cursor": cursors.encode([page[-1]["_id"]]) if len(found) > limit else None})


@bp.get("/people/<key>")
def get_person(key: str):
    person = people_store.find(base.db(), key) if 0 < len(key) <= 320 else None
    if person is None:
        return problems.problem("not-found", "no such person")
    return jsonify(_person_json(person))


@bp.post("/people")
def import_people():
    """Create or update people from a JSON list (or one object); reports created/updated/rejected rows."""
    data = request.get_json(silent=True)
    where = "/people" if isinstance(data, dict) and isinstance(data.get("people"), list) else ""
    if isinstance(data, dict) and not where:
        data, where = [data], None
    elif isinstance(data, dict):
        data = data["people"]
    if not isinstance(data, list):
        raise base.BadRequest('body must be a JSON person, a list of people or {"people": [...]}')
    if len(data) > MAX_IMPORT_ROWS:
        raise base.BadRequest(f"at most {MAX_IMPORT_ROWS} people per request")
    summary = people_io.import_rows(base.db(), enumerate(data, start=1))
    if summary.rejected and not summary.created + summary.updated + summary.unchanged:
        rows = summary.as_dict()
        return problems.problem("unprocessable", f"all {len(data)} row(s) were rejected",
                                [problems.pointer("" if where is None else f"{where}/{r['row'] - 1}", r["reason"])
                                 for r in rows["rejected"]][:100],
                                **rows)
    return jsonify(summary.as_dict())


@bp.delete("/people/<key>")
def delete_person(key: str):
    person = people_store.find(base.db(), key) if 0 < len(key) <= 320 else None
    if person is None:
        return problems.problem("not-found", "no such person")
    people_store.delete(base.db(), person["_id"])
    return "", 204

