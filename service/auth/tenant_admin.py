"""The customer admin's view of their tenant (not the operators' pages): sign-in, counts and a paged, searchable
list of people, CSV export, enrolment and opt settings, the scope checker's results, a "policy changed" re-check
and disconnecting the whole tenant. Every route reads the tenant from the admin's session only: an admin sees
their own tenant and nothing else. Also the personal opt-out (signed link, connection page)."""

from __future__ import annotations

import csv
import io
import logging
import re

from flask import Blueprint, Response, current_app, jsonify, redirect, render_template, request, session

from service.digest import links
from service.runtime import Runtime
from service.store import tenantwide, users
from service.web.csrf import csrf

log = logging.getLogger(__name__)
bp = Blueprint("tenant_admin", __name__, template_folder="templates")

PAGE_SIZE = 50
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _rt() -> Runtime:
    return current_app.extensions["calsync"]


def _wants_json() -> bool:
    return request.accept_mimetypes.best == "application/json"


def _tenant() -> str | None:
    tenant_id = session.get("admin_tenant")
    return tenant_id if isinstance(tenant_id, str) and GUID.match(tenant_id) else None


def _refuse():
    if _wants_json():
        return jsonify({"title": "Sign in as your organisation's administrator", "status": 403}), 403
    return render_template("auth/tenant_admin.html", tenant_id=None), 403


def person_row(doc: dict) -> dict:
    person = tenantwide.person(doc)
    return {"id": person["user_id"], "email": person["email"], "name": person["name"],
            "state": tenantwide.person_state_words(person["state"]), "reason": person["reason"],
            "scope": person["scope"], "last_sync": person["last_sync_at"]}


@bp.get("/admin/tenant")
def tenant_page():
    tenant_id = _tenant()
    if tenant_id is None:
        return _refuse()
    db = _rt().db
    search = request.args.get("q", "")[:200]
    after = request.args.get("after", "")[:320] or None
    rows = [person_row(d) for d in tenantwide.people_page(db, tenant_id, search, after, PAGE_SIZE)]
    counts = tenantwide.counts(db, tenant_id)
    stored = tenantwide.settings(db, tenant_id)
    config = {k: v for k, v in stored.items() if k in tenantwide.DEFAULTS}
    disconnecting = tenantwide.disconnection(stored, counts)
    scopes = {state: db.users.count_documents({"tenant_id": tenant_id, "scope.state": state})
              for state in ("in_scope", "out_of_scope", "no_mailbox", "invalid")}
    following = rows[-1]["email"] if len(rows) == PAGE_SIZE else None
    if _wants_json():
        return jsonify({"tenant_id": tenant_id, "counts": counts, "settings": config, "scope": scopes,
                        "disconnecting": disconnecting, "people": rows, "next": following})
    return render_template("auth/tenant_admin.html", tenant_id=tenant_id, counts=counts, config=config,
                           disconnecting=disconnecting, scopes=scopes, rows=rows, search=search, following=following,
                           admin=session.get("admin_email"))


@bp.get("/admin/tenant/people.csv")
def export_people():
    tenant_id = _tenant()
    if tenant_id is None:
        return _refuse()
    db = _rt().db

    def lines():
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["email", "name", "state", "reason", "scope", "last_sync"])
        for doc in tenantwide.people_all(db, tenant_id):
            row = person_row(doc)
            writer.writerow([_cell(row[k]) for k in ("email", "name", "state", "reason", "scope", "last_sync")])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()

    return Response(lines(), mimetype="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="calsync-people.csv"'})


def _cell(value) -> str:
    """A CSV cell a spreadsheet will not run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


@bp.post("/admin/tenant/settings")
def save_settings():
    tenant_id = _tenant()
    if tenant_id is None:
        return _refuse()
    data = request.get_json(silent=True) if request.is_json else request.form
    data = data if isinstance(data, dict) or hasattr(data, "get") else {}
    changes: dict = {}
    for name, allowed in (("enrolment", tenantwide.ENROLMENTS), ("opt", tenantwide.OPTS)):
        value = data.get(name)
        if value is not None:
            if value not in allowed:
                return _bad(f"'{name}' must be one of {', '.join(allowed)}")
            changes[name] = value
    group_id = data.get("group_id")
    if group_id:
        if not GUID.match(str(group_id)):
            return _bad("'group_id' must be a group's object id")
        changes["group_id"] = str(group_id).lower()
    if changes.get("enrolment") == "group" and not (changes.get("group_id")
                                                      or tenantwide.settings(_rt().db, tenant_id).get("group_id")):
        return _bad("enrolment by group needs 'group_id'")
    rt = _rt()
    if changes:
        tenantwide.update_settings(rt.db, tenant_id, changes)
    mode = data.get("mode")
    result: dict = {}
    if mode is not None:
        if mode not in tenantwide.MODES:
            return _bad(f"'mode' must be one of {', '.join(tenantwide.MODES)}")
        result = rt.tenant_wide.set_mode(tenant_id, mode)
    elif changes and tenantwide.settings(rt.db, tenant_id)["mode"] == "tenant_wide":
        rt.tenant_wide.set_mode(tenant_id, "tenant_wide")   # re-read who is enrolled
    if _wants_json() or request.is_json:
        return jsonify({"settings": {k: v for k, v in tenantwide.settings(rt.db, tenant_id).items()
                                     if k in tenantwide.DEFAULTS}} | result)
    return redirect("/admin/tenant", 303)


def _bad(detail: str):
    if _wants_json() or request.is_json:
        return jsonify({"title": "Invalid settings", "detail": detail, "status": 400}), 400
    return render_template("auth/error.html", title="Invalid settings", detail=detail, status=400), 400


@bp.post("/admin/tenant/policy-changed")
def policy_changed():
    tenant_id = _tenant()
    if tenant_id is None:
        return _refuse()
    queued = _rt().tenant_wide.policy_changed(tenant_id)
    if _wants_json():
        return jsonify({"rechecking": queued})
    return redirect("/admin/tenant", 303)


@bp.post("/admin/tenant/disconnect")
def disconnect_tenant():
    tenant_id = _tenant()
    if tenant_id is None:
        return _refuse()
    done = _rt().tenant_wide.disconnect_tenant(tenant_id)
    if _wants_json():
        return jsonify(done), 202
    return render_template("auth/tenant_disconnecting.html", purging=done["purging"]), 202


# ----- personal opt-out ----------------------------------------------------------------------------------

@bp.get("/opt-out")
def opt_out_page():
    user_id = links.read_opt_out_token(_rt().settings, request.args.get("t"))
    if user_id is None:
        return render_template("auth/error.html", title="This link has expired",
                               detail="Open the opt-out link from a recent mail, or your connection page.",
                               status=400), 400
    return render_template("auth/opt_out.html", token=request.args.get("t"), done=False)


@bp.post("/opt-out")
@csrf.exempt   # authorised by the signed link token ``t`` (no session, as for unsubscribe)
def opt_out():
    """One click from a signed link (no session: the token is the proof, as for unsubscribe)."""
    user_id = links.read_opt_out_token(_rt().settings, request.form.get("t") or request.args.get("t"))
    if user_id is None:
        return render_template("auth/error.html", title="This link has expired",
                               detail="Open the opt-out link from a recent mail, or your connection page.",
                               status=400), 400
    _rt().tenant_wide.opt_out(user_id)
    return render_template("auth/opt_out.html", done=True)


@bp.post("/connections/me/opt-out")
def opt_out_signed_in():
    user_id = session.get("user_id")
    if not isinstance(user_id, str) or users.get(_rt().db, user_id) is None:
        return _refuse()
    _rt().tenant_wide.opt_out(user_id)
    session.clear()
    return render_template("auth/opt_out.html", done=True)
