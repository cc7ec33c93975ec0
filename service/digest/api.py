"""The JSON API for the coaching product (service-to-service, bearer CALSYNC_OPS_TOKEN).

Users are addressed by email or Graph id. Lists are paginated with an opaque ``cursor`` and ``limit``.
Event bodies are never stored, so never returned.
"""

from __future__ import annotations

import hmac
import logging
from datetime import datetime, timedelta

from flask import Blueprint, current_app, jsonify, request

from service import cursors, inputs
from service.csrf import csrf
from service.digest import meetings
from service.digest import people as people_io
from service.digest.collaborators import DEFAULT_DAYS, MAX_DAYS, top_collaborators
from service.digest.matching import Directory, attendee_emails, is_resource
from service.digest.people import styles
from service.store import as_utc, utcnow
from service.store import people as people_store
from service.store import users as users_store

log = logging.getLogger(__name__)

bp = Blueprint("digest_api", __name__, url_prefix="/api")
csrf.exempt(bp)  # bearer-token calls from other services, never a browser session

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_WINDOW = timedelta(days=366)
MAX_IMPORT_ROWS = 5000


class BadRequest(ValueError):
    """A client error whose message is safe to return."""


@bp.before_request
def require_token():
    """401 unless the request carries the ops bearer token (constant-time comparison)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    expected = current_app.extensions["calsync"].settings.ops_token
    if scheme.lower() != "bearer" or not token or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        return _error(401, "unauthorized", "a valid bearer token is required"), {"WWW-Authenticate": "Bearer"}
    return None


@bp.errorhandler(BadRequest)
@bp.errorhandler(inputs.BadInput)
def bad_request(exc: ValueError):
    return _error(400, "bad_request", str(exc))


def _error(status: int, code: str, message: str):
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    return response


def _db():
    return current_app.extensions["calsync"].db


def _iso(value: datetime | None) -> str | None:
    value = as_utc(value)
    return value.isoformat(timespec="seconds").replace("+00:00", "Z") if value else None


def _parse_time(name: str, default: datetime) -> datetime:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    return inputs.instant(raw, name)


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    return inputs.whole_number(raw, name, low, high)


def _decode_cursor(expected_len: int) -> list | None:
    raw = request.args.get("cursor")
    if not raw:
        return None
    try:
        return cursors.decode(raw, expected_len)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def _user_or_404(key: str) -> dict | None:
    return users_store.find(_db(), key.strip()) if 0 < len(key) <= 320 else None


def _not_found():
    return _error(404, "not_found", "no such user")


# --- users --------------------------------------------------------------------------------------------

@bp.get("/users/<key>")
def get_user(key: str):
    """Connection status, time zone and sync state of one user."""
    user = _user_or_404(key)
    if user is None:
        return _not_found()
    connection, sync, digest = user.connection, user.sync, user.digest
    return jsonify({
        "id": user.id,
        "email": user.email,
        "display_name": user.display_name,
        "connection": {"status": connection.status, "reason": connection.reason, "since": _iso(connection.since)},
        "time_zone": user.time_zone or "UTC",
        "graph_time_zone": user.graph_time_zone,
        "last_sync_at": _iso(sync.last_sync_at),
        "last_notification_at": _iso(sync.last_notification_at),
        "last_sync_result": sync.last_result,
        "digest": {"enabled": digest.enabled, "time": digest.time, "send_empty": digest.send_empty},
    })


def _person_json(person: dict | None) -> dict | None:
    if person is None:
        return None
    return {"id": person["_id"], "name": person.get("name"), "email": person.get("primary_email"),
            "emails": person.get("emails", []), "team": person.get("team"), "styles": styles(person),
            "assessments": person.get("assessments", {})}


def _meeting_json(event: dict, directory: Directory) -> dict:
    attendees = []
    for attendee in event.get("attendees") or []:
        email = (attendee.get("email") or "").lower()
        person = None if is_resource(attendee) else directory.person(email)
        attendees.append({"name": attendee.get("name"), "email": email, "type": attendee.get("type"),
                          "response": attendee.get("response"), "person": _person_json(person)})
    organizer = event.get("organizer") or {}
    return {
        "id": event.get("graph_id"),
        "subject": meetings.subject_of(event),
        "is_private": meetings.is_private(event),
        "start": _iso(event.get("start")),
        "end": _iso(event.get("end")),
        "is_all_day": bool(event.get("is_all_day")),
        "is_cancelled": bool(event.get("is_cancelled")),
        "is_online_meeting": bool(event.get("is_online_meeting")),
        "show_as": event.get("show_as"),
        "type": event.get("type"),
        "series_master_id": event.get("series_master_id"),
        "organizer": {"name": organizer.get("name"), "email": (organizer.get("email") or "").lower() or None,
                      "person": _person_json(directory.person(organizer.get("email")))},
        "attendees": attendees,
    }


@bp.get("/users/<key>/meetings")
def list_meetings(key: str):
    """Stored meetings overlapping [start, end) (default: the next 7 days), earliest first."""
    user = _user_or_404(key)
    if user is None:
        return _not_found()
    now = utcnow().replace(microsecond=0)
    start = _parse_time("start", now)
    end = _parse_time("end", start + timedelta(days=7))
    if end <= start or end - start > MAX_WINDOW:
        raise BadRequest("end must be after start, within 366 days")
    limit = _int_arg("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    cursor = _decode_cursor(2)
    after = (_parse_cursor_time(cursor[0]), cursor[1]) if cursor else None
    page, next_key = meetings.page(_db(), user.id, start, end, after, limit)
    directory = Directory.for_emails(_db(), attendee_emails(page))
    body = {"items": [_meeting_json(e, directory) for e in page], "start": _iso(start), "end": _iso(end),
            "next_cursor": cursors.encode([next_key[0].isoformat(), next_key[1]]) if next_key else None}
    return jsonify(body)


def _parse_cursor_time(raw: str) -> datetime:
    try:
        return inputs.instant(raw, "cursor")
    except inputs.BadInput:
        raise BadRequest("cursor is not valid") from None


@bp.get("/users/<key>/collaborators")
def list_collaborators(key: str):
    """The people the user met most over the last ``days`` days, weighted by length and size."""
    user = _user_or_404(key)
    if user is None:
        return _not_found()
    days = _int_arg("days", DEFAULT_DAYS, 1, MAX_DAYS)
    limit = _int_arg("limit", 10, 1, 100)
    ranked = top_collaborators(_db(), user, days=days, limit=limit)
    people = {p["_id"]: p for p in people_store.by_emails(_db(), [c.email for c in ranked])}
    items = [{**c.as_dict(), "person": _person_json(people.get(c.person_id))} for c in ranked]
    return jsonify({"items": items, "days": days})


# --- people -------------------------------------------------------------------------------------------

@bp.get("/people")
def list_people():
    """The people directory, ordered by id."""
    limit = _int_arg("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    cursor = _decode_cursor(1)
    found = people_store.page(_db(), cursor[0] if cursor else None, limit + 1)
    page = found[:limit]
    return jsonify({"items": [_person_json(p) for p in page],
                    "next_cursor": cursors.encode([page[-1]["_id"]]) if len(found) > limit else None})


@bp.get("/people/<key>")
def get_person(key: str):
    person = people_store.find(_db(), key) if 0 < len(key) <= 320 else None
    if person is None:
        return _error(404, "not_found", "no such person")
    return jsonify(_person_json(person))


@bp.post("/people")
def import_people():
    """Create or update people from a JSON list (or one object); reports created/updated/rejected rows."""
    data = request.get_json(silent=True)
    if isinstance(data, dict) and not isinstance(data.get("people"), list):
        data = [data]
    elif isinstance(data, dict):
        data = data["people"]
    if not isinstance(data, list):
        raise BadRequest('body must be a JSON person, a list of people or {"people": [...]}')
    if len(data) > MAX_IMPORT_ROWS:
        raise BadRequest(f"at most {MAX_IMPORT_ROWS} people per request")
    summary = people_io.import_rows(_db(), enumerate(data, start=1))
    status = 200 if not summary.rejected or summary.created + summary.updated + summary.unchanged else 422
    return jsonify(summary.as_dict()), status


@bp.delete("/people/<key>")
def delete_person(key: str):
    person = people_store.find(_db(), key) if 0 < len(key) <= 320 else None
    if person is None:
        return _error(404, "not_found", "no such person")
    people_store.delete(_db(), person["_id"])
    return "", 204
