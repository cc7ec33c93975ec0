"""Operators' outbound webhook endpoints: the ops API (``/ops/api/webhooks``) and pages (``/ops/webhooks``).

Same token (or operator session) as the rest of /ops. The same POST URLs serve scripts (JSON in and out)
and the pages' forms (form fields, CSRF-checked by ``ops_required``, then back to a page). A secret is in
the answer to creation and rotation only.
"""

from __future__ import annotations

import logging
from datetime import datetime

from flask import Blueprint, current_app, redirect, render_template, request, url_for

from service import inputs, outbox
from service.ops.routes import failure, form_expired, ops_required
from service.outbound import endpoints
from service.store import outbound as store
from service.web.csrf import CSRFError, csrf

log = logging.getLogger(__name__)

bp = Blueprint("ops_outbound", __name__, url_prefix="/ops", template_folder="templates")
csrf.exempt(bp)  # as /ops: bearer-token scripts need no form token; ops_required checks session requests
bp.register_error_handler(CSRFError, form_expired)

MAX_LIST = 500
STATUSES = (store.PENDING, store.DELIVERED, store.FAILED)


def _rt():
    return current_app.extensions["calsync"]


def _form() -> bool:
    return "csrf_token" in request.form


def _input() -> dict:
    if _form():
        data = request.form.to_dict()
        if "event_types" in request.form:
            data["event_types"] = request.form.getlist("event_types")
        return data
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise endpoints.InvalidEndpoint("body must be a JSON object")
    return data


@bp.errorhandler(endpoints.InvalidEndpoint)
@bp.errorhandler(inputs.BadInput)
def _invalid(exc: ValueError):
    return failure("bad-request", str(exc))


def _missing():
    return failure("not-found", "no such endpoint", back=url_for("ops_outbound.page"))


def _endpoint(endpoint_id: str) -> store.Endpoint | None:
    return store.get_endpoint(_rt().db, endpoint_id) if 0 < len(endpoint_id) <= 64 else None


def _time(data: dict, name: str) -> datetime:
    raw = data.get(name)
    if not isinstance(raw, str):
        raise endpoints.InvalidEndpoint(f"{name} must be an ISO 8601 date-time")
    return inputs.instant(raw, name)


# ------------------------------------------------------------------ API

@bp.get("/api/webhooks")
@ops_required
def list_api():
    db = _rt().db
    return {"endpoints": [endpoints.describe(db, e) for e in store.endpoints(db)],
            "event_types": list(outbox.EVENT_TYPES)}


@bp.post("/api/webhooks")
@ops_required
def create():
    data = _input()
    created = endpoints.register(_rt().db, _rt().settings, data.get("url"), data.get("event_types"),
                                 data.get("description", ""))
    log.info("operator registered outbound endpoint %s", created.endpoint.id)
    body = {"endpoint": endpoints.describe(_rt().db, created.endpoint), "secret": created.secret}
    if _form():
        return render_template("ops/webhook_secret.html", endpoint=body["endpoint"], secret=created.secret,
                               created=True), 201, {"Cache-Control": "no-store"}
    return body, 201, {"Cache-Control": "no-store"}


@bp.get("/api/webhooks/<endpoint_id>")
@ops_required
def show_api(endpoint_id: str):
    endpoint = _endpoint(endpoint_id)
    if endpoint is None:
        return _missing()
    return endpoints.describe(_rt().db, endpoint, attempts=store.ATTEMPT_LOG_SIZE)


@bp.delete("/api/webhooks/<endpoint_id>")
@ops_required
def remove(endpoint_id: str):
    if not endpoints.remove(_rt().db, endpoint_id):
        return _missing()
    log.info("operator removed outbound endpoint %s", endpoint_id)
    return "", 204


@bp.post("/api/webhooks/<endpoint_id>/remove")
@ops_required
def remove_form(endpoint_id: str):
    if not endpoints.remove(_rt().db, endpoint_id):
        return _missing()
    log.info("operator removed outbound endpoint %s", endpoint_id)
    return redirect(url_for("ops_outbound.page")) if _form() else ("", 204)


@bp.post("/api/webhooks/<endpoint_id>/pause")
@ops_required
def pause(endpoint_id: str):
    if not endpoints.pause(_rt().db, endpoint_id):
        return _missing()
    return _after(endpoint_id)


@bp.post("/api/webhooks/<endpoint_id>/resume")
@ops_required
def resume(endpoint_id: str):
    if not endpoints.resume(_rt().db, _rt().redis, endpoint_id):
        return _missing()
    return _after(endpoint_id)


@bp.post("/api/webhooks/<endpoint_id>/rotate-secret")
@ops_required
def rotate(endpoint_id: str):
    secret = endpoints.rotate(_rt().db, _rt().settings, endpoint_id)
    if secret is None:
        return _missing()
    log.info("operator rotated the secret of outbound endpoint %s", endpoint_id)
    described = endpoints.describe(_rt().db, _endpoint(endpoint_id))
    if _form():
        return render_template("ops/webhook_secret.html", endpoint=described, secret=secret,
                               created=False), 200, {"Cache-Control": "no-store"}
    return {"endpoint": described, "secret": secret}, 200, {"Cache-Control": "no-store"}


@bp.get("/api/webhooks/<endpoint_id>/deliveries")
@ops_required
def deliveries(endpoint_id: str):
    if _endpoint(endpoint_id) is None:
        return _missing()
    status = request.args.get("status") or None
    if status is not None and status not in STATUSES:
        raise endpoints.InvalidEndpoint(f"status must be one of {', '.join(STATUSES)}")
    limit = inputs.whole_number(request.args.get("limit") or "50", "limit", 1, MAX_LIST)
    rows = store.deliveries_for(_rt().db, endpoint_id, limit, status)
    return {"items": [endpoints.delivery_json(d) for d in rows]}


@bp.post("/api/webhooks/<endpoint_id>/replay")
@ops_required
def replay(endpoint_id: str):
    """``{"delivery_id": …}`` sends one delivery again; ``{"since": …, "until": …}`` every event in that range."""
    endpoint = _endpoint(endpoint_id)
    if endpoint is None:
        return _missing()
    data = _input()
    rt = _rt()
    if data.get("delivery_id"):
        if not isinstance(data["delivery_id"], str) or not endpoints.replay_delivery(
                rt.db, rt.redis, endpoint_id, data["delivery_id"]):
            return failure("not-found", "no such delivery for this endpoint")
        queued = 1
    else:
        queued = endpoints.replay_range(rt.db, rt.redis, endpoint, _time(data, "since"), _time(data, "until"))
    log.info("operator replayed %d delivery(ies) to outbound endpoint %s", queued, endpoint_id)
    return _after(endpoint_id, {"endpoint_id": endpoint_id, "queued": queued})


def _after(endpoint_id: str, body: dict | None = None):
    if _form():
        return redirect(url_for("ops_outbound.endpoint_page", endpoint_id=endpoint_id))
    return body or endpoints.describe(_rt().db, _endpoint(endpoint_id)), 202 if body else 200


# ------------------------------------------------------------------ pages

@bp.app_context_processor
def _paused_endpoints():
    """``outbound_paused()`` for the /ops dashboard: the paused endpoints, read only when a page asks."""
    return {"outbound_paused": lambda: [e for e in store.endpoints(_rt().db) if e.status == store.PAUSED]}


@bp.get("/webhooks")
@ops_required
def page():
    db = _rt().db
    return render_template("ops/webhooks.html", endpoints=[endpoints.describe(db, e) for e in store.endpoints(db)],
                           event_types=outbox.EVENT_TYPES)


@bp.get("/webhooks/<endpoint_id>")
@ops_required
def endpoint_page(endpoint_id: str):
    endpoint = _endpoint(endpoint_id)
    if endpoint is None:
        return _missing()
    db = _rt().db
    return render_template("ops/webhook.html", endpoint=endpoints.describe(db, endpoint, store.ATTEMPT_LOG_SIZE),
                           deliveries=[endpoints.delivery_json(d) for d in store.deliveries_for(db, endpoint.id, 50)])
