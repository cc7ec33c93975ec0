"""The tenant-wide connection through the JSON API (bearer token, as the rest of /api): a tenant's settings,
counts and scope results, its people page by page, a re-check after a scope change, disconnecting the tenant,
and a person's opt-out. The customer admin's own pages answer the same as JSON (``/admin/tenant`` with
``Accept: application/json``), for their tenant only."""

from __future__ import annotations

import re

from flask import current_app, jsonify, request

from service.api import base
from service.store import tenantwide

bp = base.blueprint("tenantwide_api", __name__)

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
SCOPE_STATES = ("in_scope", "out_of_scope", "no_mailbox", "invalid")


def _rt():
    return current_app.extensions["calsync"]


def _tenant(tenant_id: str) -> str:
    if not GUID.match(tenant_id):
        raise base.BadRequest("tenant id must be an Entra tenant id (a GUID)")
    return tenant_id.lower()


def _connection(tenant_id: str) -> dict:
    db = _rt().db
    config = tenantwide.settings(db, tenant_id)
    counts = tenantwide.counts(db, tenant_id)
    return {"tenant_id": tenant_id,
            "settings": {k: config.get(k) for k in ("mode", "enrolment", "group_id", "opt")},
            "counts": counts, "disconnecting": tenantwide.disconnection(config, counts),
            "scope": {s: db.users.count_documents({"tenant_id": tenant_id, "scope.state": s}) for s in SCOPE_STATES}}


def _person(doc: dict) -> dict:
    person = tenantwide.person(doc)
    return person | {"state_words": tenantwide.person_state_words(person["state"])}


@bp.get("/tenants/<tenant_id>/connection")
def get_tenant_connection(tenant_id: str):
    """A tenant's connection: settings, counts of people by state, the scope checker's results."""
    return jsonify(_connection(_tenant(tenant_id)))


@bp.put("/tenants/<tenant_id>/connection")
def set_tenant_connection(tenant_id: str):
    """Change some of mode / enrolment / group_id / opt."""
    tenant_id = _tenant(tenant_id)
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not data or set(data) - {"mode", "enrolment", "group_id", "opt"}:
        raise base.BadRequest("body must be an object with some of mode, enrolment, group_id, opt")
    changes = {}
    for name, allowed in (("enrolment", tenantwide.ENROLMENTS), ("opt", tenantwide.OPTS),
                          ("mode", tenantwide.MODES)):
        if name in data:
            if data[name] not in allowed:
                raise base.BadRequest(f"{name} must be one of {', '.join(allowed)}", pointer=f"/{name}")
            changes[name] = data[name]
    if "group_id" in data:
        if not (isinstance(data["group_id"], str) and GUID.match(data["group_id"])):
            raise base.BadRequest("group_id must be a group's object id", pointer="/group_id")
        changes["group_id"] = data["group_id"].lower()
    rt = _rt()
    config = tenantwide.settings(rt.db, tenant_id)
    if changes.get("enrolment", config["enrolment"]) == "group" and not changes.get("group_id", config["group_id"]):
        raise base.BadRequest("enrolment by group needs group_id", pointer="/group_id")
    mode = changes.pop("mode", None)
    if changes:
        tenantwide.update_settings(rt.db, tenant_id, changes)
    if mode is not None or (changes and config["mode"] == "tenant_wide"):
        rt.tenant_wide.set_mode(tenant_id, mode or config["mode"])
    return jsonify(_connection(tenant_id))


@bp.delete("/tenants/<tenant_id>/connection")
def delete_tenant_connection(tenant_id: str):
    """Disconnect the whole tenant: enrolment stops now; every subscription is deleted at Graph and every person's
    data purged by jobs (202: ``purging`` people; ``GET`` shows ``disconnecting`` until the last is gone)."""
    tenant_id = _tenant(tenant_id)
    return jsonify({"tenant_id": tenant_id} | _rt().tenant_wide.disconnect_tenant(tenant_id)), 202


@bp.post("/tenants/<tenant_id>/connection/recheck")
def recheck_tenant_scope(tenant_id: str):
    """After an RBAC scope or access-policy change: probe every tenant-wide mailbox now and in an hour."""
    tenant_id = _tenant(tenant_id)
    return jsonify({"tenant_id": tenant_id, "rechecking": _rt().tenant_wide.policy_changed(tenant_id)})


@bp.get("/tenants/<tenant_id>/connection/people")
def list_tenant_people(tenant_id: str):
    """The tenant's people by email, ``limit`` at a time (``after``: the last email of the previous page)."""
    tenant_id = _tenant(tenant_id)
    limit = base.int_arg("limit", 50, 1, 200)
    search, after = request.args.get("q", "")[:200], request.args.get("after", "")[:320] or None
    found = tenantwide.people_page(_rt().db, tenant_id, search, after, limit)
    return jsonify({"tenant_id": tenant_id, "people": [_person(d) for d in found],
                    "next": found[-1].get("email") if len(found) == limit else None})


@bp.post("/users/<key>/opt-out")
def opt_out_user(key: str):
    """The person opts out: subscription deleted, data purged, never enrolled again."""
    user = base.user_or_none(key)
    if user is None:
        return base.not_found()
    done = _rt().tenant_wide.opt_out(user.id)
    return jsonify({"user_id": user.id, "opted_out": bool(done.get("opted_out")),
                    "pending": bool(done.get("pending"))})
