"""Operator pages and APIs, behind CALSYNC_OPS_TOKEN (bearer header, or a session after /ops/login)."""

from __future__ import annotations

import hmac
from datetime import datetime, timedelta
from functools import wraps

from flask import Blueprint, current_app, redirect, render_template, request, session, url_for
from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from service import cursors, inputs, queues, store, when
from service.ops import queues as queue_health
from service.outbound import endpoints
from service.store import ops as ops_store
from service.store import outbound as outbound_store
from service.store import users
from service.store.records import ConnectionStatus, SubscriptionStatus, connection_words
from service.sync import mailboxes
from service.sync.requests import request_sync
from service.web import health, problems
from service.web.csrf import CSRFError, csrf

bp = Blueprint("ops", __name__, url_prefix="/ops", template_folder="templates")
csrf.exempt(bp)  # the same URLs serve bearer-token scripts; session requests are checked in ops_required

EXPIRING_SOON = timedelta(hours=24)
OPERATOR_ZONE = "UTC"      # operators' pages show UTC, and say so
PAGE_SIZE = 50             # rows of the subscriptions table per page
HEALTH_PAGE_SIZE = 500     # /ops/api/health lists the first 500, as it always has
MAX_PAGE = 500
MAX_SEARCH = 320           # an email address's longest
STATUSES = tuple(str(status) for status in SubscriptionStatus)


def _runtime():
    return current_app.extensions["calsync"]


def _token_ok(candidate: str) -> bool:
    return hmac.compare_digest(candidate.encode(), _runtime().settings.ops_token.encode())


def ops_required(view):
    """Bearer token (APIs, scripts) or the operator session set by /ops/login (browser; CSRF-checked)."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer ") and _token_ok(header[7:]):
            return view(*args, **kwargs)
        if session.get("ops"):
            csrf.protect()  # a browser sends the session cookie by itself, so a POST needs the form's token
            return view(*args, **kwargs)
        if request.accept_mimetypes.accept_html and request.method == "GET" and \
                not request.path.startswith("/ops/api/"):
            return redirect(url_for("ops.login"))
        return problems.problem("unauthorized", "operator token required", headers={"WWW-Authenticate": "Bearer"})

    return wrapper


def wants_page() -> bool:
    """Whether a failure goes back to a person (a page's form, a page) rather than a script (a problem)."""
    if "csrf_token" in request.form:
        return True
    accept = request.accept_mimetypes
    browser = any(value == "text/html" for value, _ in accept) and \
        accept.quality("text/html") >= accept.quality("application/json")   # not a script's */*
    return request.method == "GET" and not request.path.startswith("/ops/api/") and browser


def failure(kind: str, detail: str, back: str | None = None):
    """An operator's mistake or a missing thing: a page with a way back for the browser, an RFC 9457 problem for
    scripts; the same status either way."""
    found = problems.kind_of(kind)
    if wants_page():
        return render_template("ops/error.html", kind=found, detail=detail,
                               back=back or request.referrer or url_for("ops.dashboard")), found.status
    return problems.problem(kind, detail)


@bp.app_template_filter("ops_time")
def ops_time(value) -> str:
    """An operator's time in words, in UTC (the pages say so): datetimes and the APIs' ISO strings alike."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    return when.moment(value, OPERATOR_ZONE) if value else ""


@bp.app_template_filter("status_words")
def status_words(value) -> str:
    return connection_words(value)


@bp.errorhandler(CSRFError)
def form_expired(exc: CSRFError):
    """A form whose CSRF token expired (every /ops blueprint answers it so): a page saying so, or a problem."""
    current_app.logger.info("ops form refused: %s", exc.description)
    return failure("forbidden", "This form expired: reload the page and try again.")


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        csrf.protect()  # no signing a browser in as the operator from another site
        if _token_ok(request.form.get("token", "")):
            session.clear()
            session["ops"] = True
            return redirect(url_for("ops.dashboard"))
        current_app.logger.warning("ops login refused from %s", request.remote_addr)
        error = "That token is not right."
    return render_template("ops/login.html", error=error), (401 if error else 200)


@bp.post("/logout")
def logout():
    csrf.protect()
    session.pop("ops", None)
    return redirect(url_for("ops.login"))


def _overview() -> dict:
    """The dashboard's figures; a dependency that does not answer is named in ``failed`` and its parts
    are left empty (None), so operators see what is down instead of an error page."""
    rt = _runtime()
    now = store.utcnow()
    checks = health.probe(rt)
    data = {"generated_at": now, "dependencies": checks, "counts": None, "needs_reconnect": [],
            "unsubscribed": [], "cannot_sync": [], "queues": [], "workers": None, "stats": [], "deliveries": None}
    if checks["mongodb"] == "ok":
        try:
            data.update(counts=ops_store.counts(rt.db, now, EXPIRING_SOON),
                        needs_reconnect=users.needing_reconnect(rt.db), unsubscribed=users.missing_subscriptions(rt.db),
                        deliveries=_delivery_health(rt.db, now),
                        cannot_sync=users.with_status(rt.db, ConnectionStatus.CANNOT_SYNC, MAX_USERS))
        except PyMongoError as exc:
            checks["mongodb"] = _failed("MongoDB", exc)
    if checks["redis"] == "ok":
        try:
            data.update(queues=queue_health.queue_health(rt.redis), workers=queue_health.worker_count(rt.redis),
                        stats=queue_health.stats(rt.redis))
        except RedisError as exc:
            checks["redis"] = _failed("Redis", exc)
    data["failed"] = sorted(name for name, state in checks.items() if state != "ok")
    return data


COUNT_LABELS = {
    "users_total": "Users", "users_connected": "Connected", "users_needs_reconnect": "Need to reconnect",
    "subscriptions_total": "Subscriptions", "subscriptions_failing": "Subscriptions failing",
    "subscriptions_expiring_soon": "Expiring within 24 h", "subscriptions_expired": "Subscriptions expired",
    "users_with_sync_errors": "Users with sync errors", "events_stored": "Meetings stored",
}
BAD_COUNTS = {"users_needs_reconnect", "subscriptions_failing", "subscriptions_expired", "users_with_sync_errors"}
DELIVERY_LABELS = {"digests_sent": "Digests sent today", "digests_failed": "Digests failed today",
                   "preps_sent": "Prep mails sent today", "preps_failed": "Prep mails failed today",
                   "endpoints_failing": "Webhook endpoints failing", "endpoints_paused": "Webhook endpoints paused"}


def _delivery_health(db, now: datetime) -> dict[str, int]:
    """Today's mail outcomes (the operators' day is UTC) and the outbound endpoints not delivering."""
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    found = ops_store.delivery_health(db, start)
    states = [endpoints.health(e) for e in outbound_store.endpoints(db)]
    found.update(endpoints_failing=states.count("failing"), endpoints_paused=states.count("paused"))
    return found


def _failed(name: str, exc: Exception) -> str:
    current_app.logger.warning("ops: %s failed while reading the overview (%s)", name, type(exc).__name__)
    return "unreachable"


class BadListing(ValueError):
    """A listing query (cursor, limit, status) that cannot be answered; the message is safe to show."""


@bp.errorhandler(BadListing)
def _bad_listing(exc: BadListing):
    return failure("bad-request", str(exc))


def _listing(args, default_limit: int) -> dict:
    """The subscriptions table for ``q`` (a search), or the page at ``cursor``, of ``status``, ``limit`` rows."""
    limit = _whole_number(args.get("limit"), default_limit, MAX_PAGE)
    status = args.get("status") or None
    if status is not None and status not in STATUSES:
        raise BadListing(f"status must be one of {', '.join(STATUSES)}")
    text = (args.get("q") or "").strip()[:MAX_SEARCH]
    db = _runtime().db
    if text:
        rows, truncated = ops_store.search_subscriptions(db, text, limit, status)
        return {"rows": rows, "q": text, "status": status, "limit": limit, "truncated": truncated,
                "next_cursor": None, "previous_cursor": None}
    after = before = None
    if args.get("cursor"):
        direction, key = _read_cursor(args["cursor"])
        after, before = (key, None) if direction == "after" else (None, key)
    page = ops_store.subscriptions_page(db, limit, status, after=after, before=before)
    return {"rows": page.rows, "q": "", "status": status, "limit": limit, "truncated": False,
            "next_cursor": _cursor("after", page.next_key), "previous_cursor": _cursor("before", page.previous_key)}


def _cursor(direction: str, key: ops_store.Key | None) -> str | None:
    return cursors.encode([direction, key[0].isoformat(), key[1]]) if key else None


def _read_cursor(raw: str) -> tuple[str, ops_store.Key]:
    try:
        direction, at, subscription_id = cursors.decode(raw, 3)
        expires_at = inputs.instant(at, "cursor")
    except ValueError:
        raise BadListing("cursor is not valid") from None
    if direction not in ("after", "before"):
        raise BadListing("cursor is not valid")
    return direction, (expires_at, subscription_id)


def _whole_number(raw: str | None, default: int, high: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        return inputs.whole_number(raw, "limit", 1, high)
    except inputs.BadInput as exc:
        raise BadListing(str(exc)) from None


def _subscription_json(row: dict) -> dict:
    return {
        "id": row["_id"], "user_id": row.get("user_id"), "user_email": row.get("user_email"),
        "status": row.get("status"), "connection_status": row.get("connection_status"),
        "expires_at": _iso(row.get("expires_at")), "last_notification_at": _iso(row.get("last_notification_at")),
        "renewed_at": _iso(row.get("renewed_at")), "failures": row.get("failures", 0),
        "last_error": row.get("last_error"), "next_attempt_at": _iso(row.get("next_attempt_at")),
    }


@bp.get("/")
@ops_required
def dashboard():
    data = _overview()
    listing = _listing(request.args, PAGE_SIZE) if "mongodb" not in data["failed"] else None
    return render_template("ops/dashboard.html", soon=data["generated_at"] + EXPIRING_SOON, listing=listing,
                           statuses=STATUSES, count_labels=COUNT_LABELS, bad_counts=BAD_COUNTS,
                           delivery_labels=DELIVERY_LABELS, describe=mailboxes.describe, **data)


@bp.get("/api/subscriptions")
@ops_required
def subscriptions_api():
    """Subscriptions soonest expiry first, a page at a time (``cursor``, ``limit``), or a search (``q``: a
    subscription id, a user id, or the start of an email), optionally of one ``status``."""
    listing = _listing(request.args, PAGE_SIZE)
    return {"subscriptions": [_subscription_json(row) for row in listing["rows"]], "limit": listing["limit"],
            "next_cursor": listing["next_cursor"], "previous_cursor": listing["previous_cursor"],
            "truncated": listing["truncated"]}


@bp.get("/api/health")
@ops_required
def health_api():
    """Everything the dashboard shows, as JSON; 503 (with the same body) naming what is down, if anything."""
    data = _overview()
    first = _listing({}, HEALTH_PAGE_SIZE) if "mongodb" not in data["failed"] else None
    body = {
        "generated_at": _iso(data["generated_at"]),
        "status": "degraded" if data["failed"] else "ok",
        "dependencies": data["dependencies"],
        "failed": data["failed"],
        "counts": data["counts"],
        "subscriptions": [_subscription_json(row) for row in first["rows"]] if first else None,
        "subscriptions_next_cursor": first["next_cursor"] if first else None,  # /ops/api/subscriptions?cursor=
        "needs_reconnect": [
            {"user_id": u.id, "email": u.email, "reason": u.connection.reason, "since": _iso(u.connection.since)}
            for u in data["needs_reconnect"]
        ],
        "connected_without_subscription": [{"user_id": u.id, "email": u.email} for u in data["unsubscribed"]],
        "cannot_sync": [_user_json(u) for u in data["cannot_sync"]],
        "queues": data["queues"],
        "workers": data["workers"],
        "stats": [{"name": name, "key": label, "value": value} for name, label, value in data["stats"]],
        "deliveries": data["deliveries"],
    }
    return (body, 503, {"Retry-After": "5"}) if data["failed"] else body


USER_STATUSES = tuple(str(s) for s in ConnectionStatus)
MAX_USERS = 500


@bp.get("/api/users")
@ops_required
def users_api():
    """Users of one connection ``status`` (``cannot_sync``: the mailbox cannot be read, with the reason and the
    next daily check), at most ``limit``."""
    status = request.args.get("status") or ""
    if status not in USER_STATUSES:
        raise BadListing(f"status must be one of {', '.join(USER_STATUSES)}")
    limit = _whole_number(request.args.get("limit"), PAGE_SIZE, MAX_USERS)
    found = users.with_status(_runtime().db, status, limit + 1)
    return {"users": [_user_json(u) for u in found[:limit]], "status": status, "limit": limit,
            "truncated": len(found) > limit}


def _user_json(user) -> dict:
    connection = user.connection
    return {"user_id": user.id, "email": user.email, "status": connection.status, "reason": connection.reason,
            "reason_text": mailboxes.describe(connection.reason) if connection.status == "cannot_sync" else None,
            "since": _iso(connection.since), "next_check_at": _iso(connection.next_check_at),
            "last_sync_at": _iso(user.sync.last_sync_at)}


@bp.post("/users/<user_id>/resync")
@ops_required
def resync_user(user_id: str):
    rt = _runtime()
    if users.get(rt.db, user_id) is None:
        return failure("not-found", "no such user")
    queued = request_sync(rt.redis, user_id, "operator")
    return _done({"user_id": user_id, "queued": queued})


@bp.post("/users/<user_id>/subscription")
@ops_required
def recreate_subscription(user_id: str):
    rt = _runtime()
    if users.get(rt.db, user_id) is None:
        return failure("not-found", "no such user")
    job = queues.enqueue(rt.redis, queues.SUBSCRIPTIONS, queues.ENSURE_SUBSCRIPTION, user_id)
    return _done({"user_id": user_id, "job_id": job.id})


@bp.post("/queues/<name>/requeue-failed")
@ops_required
def requeue_failed(name: str):
    if name not in queues.ALL:
        return failure("not-found", f"no queue {name[:40]!r}; the queues are {', '.join(queues.ALL)}")
    return _done({"queue": name, "requeued": queue_health.requeue_failed(_runtime().redis, name)})


def _done(body: dict):
    """JSON for API callers; back where the browser form was (the dashboard, or a user's page)."""
    if request.form.get("csrf_token"):
        back = request.form.get("back") or ""
        return redirect(back if back.startswith("/ops/") else url_for("ops.dashboard"), 303)
    return body, 202


def _iso(value):
    value = store.as_utc(value)
    return value.isoformat().replace("+00:00", "Z") if value else None
