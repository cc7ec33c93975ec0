"""The time side of coaching in the JSON API: a person's week, 1:1 rhythm, recurring hygiene and network, their
working hours, and a directory person's say over tips about them. Routes on the API blueprint (bearer token).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from flask import current_app, jsonify, request

from service.api import base
from service.insights import days, timeside, week
from service.insights import people as people_io
from service.insights.workhours import InvalidWorkingHours, from_doc, validated
from service.store import people as people_store
from service.store import utcnow
from service.store import workhours as workhours_store
from service.web import problems

bp = base.blueprint("timeside_api", __name__)

log = logging.getLogger(__name__)

SAY_FIELDS = {"visibility", "viewers", "external_tips", "manager"}


def _week_arg(user) -> tuple[int, int]:
    raw = request.args.get("week")
    if raw in (None, ""):
        return week.week_of(utcnow(), days.user_zone(user))
    try:
        return week.parse_week(raw)
    except week.InvalidWeek as exc:
        raise base.BadRequest(str(exc), parameter="week") from None


def _horizon() -> datetime:
    return utcnow() + timedelta(days=current_app.extensions["calsync"].settings.sync_days_ahead)


@bp.get("/users/<key>/insights/week")
def get_week(key: str):
    """One ISO week (``week=2026-W05``; default: this week in the person's zone): meeting, focus, fragmented,
    after-hours and double-booked hours, back-to-back runs, the load of each day."""
    user = base.user_or_none(key)
    if user is None:
        return base.not_found()
    year, number = _week_arg(user)
    report = timeside.week_report(base.db(), user, year, number)
    hygiene = timeside.hygiene_report(base.db(), user, _horizon())
    return jsonify({**report.as_dict(), "working_hours": from_doc(workhours_store.get(base.db(), user.id)).as_doc(),
                    "recurring": hygiene.as_dict()})


@bp.get("/users/<key>/insights/rhythm")
def get_rhythm(key: str):
    """The 1:1 rhythm with the people met most and the manager: usual interval, last and next 1:1, overdue."""
    user = base.user_or_none(key)
    if user is None:
        return base.not_found()
    found = timeside.rhythm_report(base.db(), user)
    return jsonify({"people": [r.as_dict() for r in found], "overdue_factor": 1.5})


@bp.get("/users/<key>/insights/network")
def get_network(key: str):
    """The style mix of the people met over 28 days, inside and outside, new and fading collaborators."""
    user = base.user_or_none(key)
    if user is None:
        return base.not_found()
    return jsonify(timeside.network_report(base.db(), user).as_dict())


@bp.get("/users/<key>/working-hours")
def get_working_hours(key: str):
    user = base.user_or_none(key)
    if user is None:
        return base.not_found()
    return jsonify(from_doc(workhours_store.get(base.db(), user.id)).as_doc())


@bp.put("/users/<key>/working-hours")
def put_working_hours(key: str):
    """Set working hours: ``{"start": "09:00", "end": "17:00", "days": [0, 1, 2, 3, 4]}`` (0 is Monday), in the
    person's zone or ``time_zone``; they then win over Outlook's."""
    user = base.user_or_none(key)
    if user is None:
        return base.not_found()
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise base.BadRequest('body must be a JSON object like '
                              '{"start": "09:00", "end": "17:00", "days": [0, 1, 2, 3, 4]}')
    unknown = sorted(set(body) - {"start", "end", "days", "time_zone"})
    if unknown:
        raise base.BadRequest(f"unknown field {unknown[0]!r}", pointer=f"/{unknown[0]}")
    try:
        hours = validated(body.get("start"), body.get("end"), body.get("days"), time_zone=body.get("time_zone"))
    except InvalidWorkingHours as exc:
        raise base.BadRequest(str(exc), pointer=f"/{exc.field}") from None
    workhours_store.save(base.db(), user.id, hours.as_doc())
    log.info("working hours set through the API for user %s", user.id)
    return jsonify(hours.as_doc())


def _person_or_none(key: str) -> dict | None:
    return people_store.find(base.db(), key.strip()) if 0 < len(key) <= 320 else None


def _say(person: dict) -> dict:
    return {"visibility": person.get("visibility") or "organization", "viewers": person.get("viewers") or [],
            "external_tips": person.get("external_tips") is not False, "manager": person.get("manager")}


@bp.get("/people/<key>/visibility")
def get_visibility(key: str):
    person = _person_or_none(key)
    if person is None:
        return problems.problem("not-found", "no such person")
    return jsonify(_say(person))


@bp.put("/people/<key>/visibility")
def put_visibility(key: str):
    """A person's say: ``visibility`` (organization, restricted, private), ``viewers`` (addresses, at most 200),
    ``external_tips`` (bool), ``manager`` (an address). Fields not given stay as they are."""
    person = _person_or_none(key)
    if person is None:
        return problems.problem("not-found", "no such person")
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not body:
        raise base.BadRequest('body must be a JSON object like {"visibility": "restricted", "viewers": ["a@b.com"]}')
    unknown = sorted(set(body) - SAY_FIELDS)
    if unknown:
        raise base.BadRequest(f"unknown field {unknown[0]!r}", pointer=f"/{unknown[0]}")
    for name in sorted(body):
        try:
            people_io.validate_say({name: body[name] if body[name] is not None else ""})
        except people_io.InvalidPerson as exc:
            raise base.BadRequest(str(exc), pointer=f"/{name}") from None
    changes = people_io.validate_say(body)
    updated = people_store.replace_fields(base.db(), person["_id"], changes)
    log.info("visibility of person %s changed through the API", person["_id"])
    return jsonify(_say(updated or person))
