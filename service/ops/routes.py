"""Operator pages and APIs, behind CALSYNC_OPS_TOKEN (bearer header, or a session after /ops/login)."""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta
from functools import wraps

from flask import Blueprint, abort, current_app, redirect, render_template, request, session, url_for

from service import store
from service.ops import queues as queue_health
from service.store import ops as ops_store
from service.store import users
from service.sync.requests import request_sync
from service.workers import queues

bp = Blueprint("ops", __name__, url_prefix="/ops", template_folder="templates")

EXPIRING_SOON = timedelta(hours=24)


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
            if request.method == "POST" and not hmac.compare_digest(
                request.form.get("csrf", ""), session.get("ops_csrf", "")
            ):
                abort(403)
            return view(*args, **kwargs)
        if request.accept_mimetypes.accept_html and request.method == "GET":
            return redirect(url_for("ops.login"))
        return {"error": "operator token required"}, 401, {"WWW-Authenticate": "Bearer"}

    return wrapper


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        if _token_ok(request.form.get("token", "")):
            session.clear()
            session["ops"] = True
            session["ops_csrf"] = secrets.token_urlsafe(24)
            return redirect(url_for("ops.dashboard"))
        current_app.logger.warning("ops login refused from %s", request.remote_addr)
        error = "That token is not right."
    return render_template("ops/login.html", error=error), (401 if error else 200)


@bp.post("/logout")
def logout():
    session.pop("ops", None)
    session.pop("ops_csrf", None)
    return redirect(url_for("ops.login"))


def _overview() -> dict:
    rt = _runtime()
    now = store.utcnow()
    return {
        "generated_at": now,
        "counts": ops_store.counts(rt.db, now, EXPIRING_SOON),
        "subscriptions": ops_store.subscriptions_overview(rt.db),
        "needs_reconnect": users.needing_reconnect(rt.db),
        "unsubscribed": users.missing_subscriptions(rt.db),
        "queues": queue_health.queue_health(rt.redis),
        "workers": queue_health.worker_count(rt.redis),
        "stats": queue_health.stats(rt.redis),
    }


@bp.get("/")
@ops_required
def dashboard():
    data = _overview()
    return render_template("ops/dashboard.html", soon=data["generated_at"] + EXPIRING_SOON,
                           csrf=session.get("ops_csrf", ""), **data)


@bp.get("/api/health")
@ops_required
def health_api():
    data = _overview()
    subscriptions = [
        {
            "id": row["_id"], "user_id": row.get("user_id"), "user_email": row.get("user_email"),
            "status": row.get("status"), "connection_status": row.get("connection_status"),
            "expires_at": _iso(row.get("expires_at")), "last_notification_at": _iso(row.get("last_notification_at")),
            "renewed_at": _iso(row.get("renewed_at")), "failures": row.get("failures", 0),
            "last_error": row.get("last_error"), "next_attempt_at": _iso(row.get("next_attempt_at")),
        }
        for row in data["subscriptions"]
    ]
    return {
        "generated_at": _iso(data["generated_at"]),
        "counts": data["counts"],
        "subscriptions": subscriptions,
        "needs_reconnect": [
            {"user_id": u.id, "email": u.email, "reason": u.connection.reason, "since": _iso(u.connection.since)}
            for u in data["needs_reconnect"]
        ],
        "connected_without_subscription": [{"user_id": u.id, "email": u.email} for u in data["unsubscribed"]],
        "queues": data["queues"],
        "workers": data["workers"],
        "stats": [{"name": name, "key": label, "value": value} for name, label, value in data["stats"]],
    }


@bp.get("/metrics")
@ops_required
def metrics():
    """Prometheus text exposition of the same figures."""
    data = _overview()
    lines = []
    for name, value in data["counts"].items():
        lines.append(f"calsync_{name} {value}")
    for row in data["queues"]:
        for state in ("queued", "started", "scheduled", "deferred", "failed"):
            lines.append(f'calsync_queue_jobs{{queue="{row["queue"]}",state="{state}"}} {row[state]}')
    lines.append(f"calsync_workers {data['workers']}")
    for name, label, value in data["stats"]:
        metric = "calsync_" + "".join(c if c.isalnum() else "_" for c in name)
        lines.append(f'{metric}{{key="{_label(label)}"}} {value}' if label else f"{metric} {value}")
    return "\n".join(lines) + "\n", 200, {"Content-Type": "text/plain; version=0.0.4"}


@bp.post("/users/<user_id>/resync")
@ops_required
def resync_user(user_id: str):
    rt = _runtime()
    if users.get(rt.db, user_id) is None:
        return {"error": "unknown user"}, 404
    queued = request_sync(rt.redis, user_id, "operator")
    return _done({"user_id": user_id, "queued": queued})


@bp.post("/users/<user_id>/subscription")
@ops_required
def recreate_subscription(user_id: str):
    rt = _runtime()
    if users.get(rt.db, user_id) is None:
        return {"error": "unknown user"}, 404
    job = queues.enqueue(rt.redis, queues.SUBSCRIPTIONS, queues.ENSURE_SUBSCRIPTION, user_id)
    return _done({"user_id": user_id, "job_id": job.id})


@bp.post("/queues/<name>/requeue-failed")
@ops_required
def requeue_failed(name: str):
    if name not in queues.ALL:
        return {"error": "unknown queue"}, 404
    return _done({"queue": name, "requeued": queue_health.requeue_failed(_runtime().redis, name)})


def _done(body: dict):
    """JSON for API callers; back to the dashboard for the browser form."""
    if request.form.get("csrf"):
        return redirect(url_for("ops.dashboard"))
    return body, 202


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def _iso(value):
    value = store.as_utc(value)
    return value.isoformat().replace("+00:00", "Z") if value else None
