"""One user, as an operator sees them: who they are, their connection (whatever status and reason are stored),
subscription, calendars, mails, and a timeline of notifications, syncs, errors, digests and prep mails, with the
actions (resync, recreate the subscription, export, delete). ``/ops/users/<id or email>`` is the page,
``/ops/api/users/<id or email>`` the same as JSON."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, current_app, render_template

from service import when
from service.ops.routes import OPERATOR_ZONE, failure, form_expired, ops_required
from service.store import activity, as_utc, digests, preps, users
from service.store import calendars as calendar_store
from service.store import subscriptions as subscription_store
from service.store.records import User, connection_words
from service.web.csrf import CSRFError, csrf

bp = Blueprint("ops_users", __name__, url_prefix="/ops", template_folder="templates")
csrf.exempt(bp)  # as /ops: bearer-token scripts need no form token; ops_required checks session requests
bp.register_error_handler(CSRFError, form_expired)

TIMELINE = 150
KINDS = ("notification", "sync", "error", "connection", "subscription", "digest", "prep")


def _rt():
    return current_app.extensions["calsync"]


def _user(key: str) -> User | None:
    return users.find(_rt().db, key) if 0 < len(key) <= 320 else None


def _iso(value: datetime | None) -> str | None:
    value = as_utc(value)
    return value.isoformat().replace("+00:00", "Z") if value else None


def timeline(db, user: User) -> list[dict]:
    """Newest first: ``{at, kind, text, ok}`` from the activity log, the digest and prep records and the
    subscription's own stamps."""
    entries = [{"at": e["at"], "kind": e["kind"], "text": e.get("text") or e["kind"],
                "ok": e["kind"] not in ("error",) and e.get("status") not in ("needs_reconnect", "disconnected")}
               for e in activity.for_user(db, user.id)]
    for record in digests.for_user(db, user.id):
        at = as_utc(record.get("sent_at") or record.get("finished_at") or record.get("claimed_at"))
        if at is None:
            continue
        day = when.day(datetime.fromisoformat(record["local_date"]))
        outcome = record.get("status")
        detail = {"sent": f"{when.count(record.get('meetings') or 0, 'meeting')}",
                  "skipped": record.get("reason"), "failed": record.get("error")}.get(outcome)
        entries.append({"at": at, "kind": "digest", "text": f"digest for {day}: {outcome}"
                        + (f" ({detail})" if detail else ""), "ok": outcome != "failed"})
    for record in preps.for_user(db, user.id):
        at = as_utc(record.get("sent_at") or record.get("finished_at") or record.get("claimed_at"))
        if at is None:
            continue
        start = when.moment(record.get("start"), OPERATOR_ZONE, relative=False)
        outcome = record.get("status")
        detail = record.get("reason") if outcome == "skipped" else record.get("error")
        entries.append({"at": at, "kind": "prep", "text": f"prep mail for the meeting at {start}: {outcome}"
                        + (f" ({detail})" if detail else ""), "ok": outcome != "failed"})
    subscription = subscription_store.for_user(db, user.id)
    if subscription is not None:
        for at, what in ((subscription.created_at, "subscription created"),
                         (subscription.renewed_at, "subscription renewed"),
                         (subscription.reauthorized_at, "subscription reauthorized")):
            if at is not None:
                entries.append({"at": at, "kind": "subscription", "text": what, "ok": True})
    entries.sort(key=lambda e: e["at"], reverse=True)
    return entries[:TIMELINE]


def _profile(db, user: User) -> dict:
    subscription = subscription_store.for_user(db, user.id)
    return {
        "user": user, "status_words": connection_words(user.connection.status),
        "subscription": subscription, "calendars": calendar_store.for_user(db, user.id),
        "timeline": timeline(db, user),
    }


@bp.get("/users/<key>")
@ops_required
def page(key: str):
    user = _user(key)
    if user is None:
        return failure("not-found", f"no user {key[:80]!r} (give a Graph user id or an email)")
    return render_template("ops/user.html", now=datetime.now(UTC), **_profile(_rt().db, user))


@bp.get("/api/users/<key>")
@ops_required
def show(key: str):
    """The user's profile, connection, subscription and timeline, as JSON (times ISO 8601 with Z)."""
    user = _user(key)
    if user is None:
        return failure("not-found", "no such user")
    found = _profile(_rt().db, user)
    subscription = found["subscription"]
    return {
        "id": user.id, "email": user.email, "display_name": user.display_name, "tenant_id": user.tenant_id,
        "time_zone": user.time_zone,
        "connection": {"status": user.connection.status, "reason": user.connection.reason,
                       "since": _iso(user.connection.since)},
        "subscription": None if subscription is None else {
            "id": subscription.id, "status": str(subscription.status), "expires_at": _iso(subscription.expires_at),
            "last_notification_at": _iso(subscription.last_notification_at), "failures": subscription.failures,
            "last_error": subscription.last_error},
        "timeline": [{"at": _iso(e["at"]), "kind": e["kind"], "text": e["text"], "ok": e["ok"]}
                     for e in found["timeline"]],
    }
