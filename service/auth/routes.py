"""Connect, admin consent, status and disconnect pages.

The MSAL auth-code flow dict holds the PKCE verifier, so it lives in Redis under a random one-time key
(ten minutes); the signed cookie session carries only that key, the signed-in user id and the CSRF
token, never a token. Consuming the key on the first callback makes a replayed callback fail.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import smtplib
import warnings
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode, urlsplit

import requests
from flask import Blueprint, Response, current_app, redirect, render_template, request, session

from service import when
from service.auth import signin
from service.connections import export as mydata
from service.digest import links, overview, render, send
from service.identity.apptokens import TENANT_ID
from service.identity.msal_app import (
    GRAPH_RESOURCE,
    admin_consent_redirect_uri,
    build_app,
    redirect_uri,
    sign_in_scopes,
)
from service.insights import days
from service.runtime import Runtime
from service.store import tenants, tenantwide, users
from service.store.records import ConnectionStatus, User, connection_words
from service.sync import mailboxes
from service.tenantwide import enrolment
from service.web import problems
from service.web.csrf import CSRFError

log = logging.getLogger(__name__)
bp = Blueprint("auth", __name__, template_folder="templates")

FLOW_SECONDS = 600
FLOW_KEY = "calsync:auth-flow:{}"
CONSENT_KEY = "calsync:admin-consent:{}"
DENIED_ERRORS = ("access_denied", "consent_required")


def _rt() -> Runtime:
    return current_app.extensions["calsync"]


@bp.context_processor
def _template_helpers() -> dict:
    return {"scopes": sign_in_scopes(_rt().settings)}


@bp.errorhandler(CSRFError)
def _form_expired(exc: CSRFError):
    """A form without this session's CSRF token (forged, or from a session that has ended)."""
    log.info("auth form refused: %s", exc.description)
    return _page_error(400, "Please try again", "This form expired. Reload the page and try again.")


@bp.after_request
def _private(response):
    """Auth pages are per user: never cached, never framed, and the callback URL never leaks as a Referer."""
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


def _page_error(status: int, title: str, detail: str):
    return render_template("auth/error.html", title=title, detail=detail, status=status), status


def _signed_in_user() -> User | None:
    user_id = session.get("user_id")
    if not isinstance(user_id, str):
        return None
    user = users.get(_rt().db, user_id)
    if user is None:
        session.pop("user_id", None)
    return user


# ----- connect ------------------------------------------------------------------------------------

@bp.get("/connect")
def connect_page():
    """Explain what calsync reads, then offer the sign-in button."""
    authority = _rt().settings.authority_host.rstrip("/")
    emulated = urlsplit(authority).hostname in ("127.0.0.1", "localhost", "::1")
    return render_template("auth/connect.html", user=_signed_in_user(), emulated=emulated, authority=authority)


@bp.post("/connect")
def start_connect():
    """Start MSAL's auth-code flow (PKCE, state, nonce) and send the browser to Microsoft's sign-in."""
    rt = _rt()
    try:
        flow = _initiate_flow(rt)
    except (requests.RequestException, ValueError) as exc:
        log.warning("connect: could not reach the identity platform (%s)", type(exc).__name__)
        return _page_error(502, "Microsoft sign-in is unavailable", "Please try again in a minute.")
    key = secrets.token_urlsafe(32)
    record = {"flow": flow, "tz": request.form.get("tz", "")[:64]}
    rt.redis.set(FLOW_KEY.format(key), json.dumps(record), ex=FLOW_SECONDS)
    session["auth_flow"] = key
    return redirect(flow["auth_uri"], 303)


@bp.get("/auth/callback")
def callback():
    """Finish the sign-in; every bad input gets a friendly 400/403 page and stores nothing."""
    record = _take_flow(session.pop("auth_flow", None))
    if record is None:
        return _page_error(400, "This sign-in link has expired",
                           "It was already used or is too old. Start again from the connect page.")
    flow, args = record["flow"], request.args.to_dict()
    if not hmac.compare_digest(str(args.get("state", "")).encode(), str(flow.get("state", "")).encode()):
        log.warning("connect: callback state does not match the flow")
        return _page_error(400, "Sign-in could not be verified", "Please start again from the connect page.")
    if args.get("error"):
        return _identity_error(args)
    if record.get("admin"):
        return _admin_signed_in(flow, args)
    if not args.get("code"):
        return _page_error(400, "Sign-in did not complete", "Microsoft sent no authorization code. Please retry.")
    try:
        rt = _rt()
        result = signin.complete_sign_in(rt.connections, rt.http, rt.id_tokens, flow, args, record.get("tz"))
    except signin.SignInFailed as exc:
        return _page_error(exc.status, exc.title, exc.detail)
    except requests.RequestException as exc:
        log.warning("connect: identity platform unreachable during sign-in (%s)", type(exc).__name__)
        return _page_error(502, "Microsoft sign-in is unavailable", "Please try again in a minute.")
    session.clear()  # a fresh session for the signed-in user (no fixation)
    session["user_id"] = result.user.id
    session.permanent = True
    return render_template("auth/connected.html", user=result.user, first_time=result.first_time)


def _initiate_flow(rt: Runtime) -> dict:
    """MSAL's flow dict, with the response in the query string.

    MSAL recommends form_post, but the identity platform's POST back is cross-site, so the SameSite=Lax
    session cookie that binds the flow to this browser would not come with it. The query mode's risk (the
    code in a URL) is covered by PKCE (a leaked code is useless without the verifier kept in Redis), one-time
    codes, and Referrer-Policy: no-referrer on our pages.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="response_mode='form_post' is recommended", category=UserWarning)
        app = build_app(rt.settings, rt.http)
        return app.initiate_auth_code_flow(list(sign_in_scopes(rt.settings)), redirect_uri=redirect_uri(rt.settings),
                                           response_mode="query")


def _take_flow(key: object) -> dict | None:
    if not isinstance(key, str) or not key:
        return None
    raw = _rt().redis.getdel(FLOW_KEY.format(key))
    if raw is None:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return record if isinstance(record, dict) and isinstance(record.get("flow"), dict) else None


def _identity_error(args: dict[str, str]):
    error = str(args.get("error"))[:64]
    log.info("connect: the identity platform returned %s", error)
    if error in DENIED_ERRORS:
        return _page_error(403, "Calendar access was not granted",
                           "Nothing was connected. If your organization requires it, ask an administrator to "
                           "approve calsync first, then connect again.")
    return _page_error(400, "Sign-in did not complete", f"Microsoft reported: {error}. Please try again.")


# ----- status, sign-out, disconnect ----------------------------------------------------------------

def _page_user() -> tuple[User | None, bool]:
    """(user, signed_in): the signed-in user, else the one a signed link from their mails names (``t``), who may
    read their page and ask for a preview but must sign in to disconnect or delete."""
    user = _signed_in_user()
    if user is not None:
        return user, True
    user_id = links.read_settings_token(_rt().settings, request.values.get("t"))
    return (users.get(_rt().db, user_id) if user_id else None), False


@bp.get("/connections/me")
def status_page():
    """The person's home: connection, next meetings with their dashboards, the next digest and prep mail, what
    they keep out of insights, their mails and settings, their data (HTML, or JSON when asked for)."""
    user, signed_in = _page_user()
    wants_json = request.accept_mimetypes.best == "application/json"
    if user is None:
        if wants_json:
            return problems.problem("unauthorized", "not signed in")
        return render_template("auth/status.html", user=None), 401
    connection = user.connection
    reason_text = mailboxes.describe(connection.reason) if connection.status == ConnectionStatus.CANNOT_SYNC else None
    if wants_json:
        since = connection.since
        return {"user_id": user.id, "email": user.email, "status": connection.status,
                "reason": connection.reason, "reason_text": reason_text,
                "since": since.isoformat().replace("+00:00", "Z") if since else None}
    rt = _rt()
    now = datetime.now(UTC)
    return render_template("auth/status.html", user=user, connection=connection, signed_in=signed_in,
                           reason_text=reason_text,
                           next_check=when.moment(connection.next_check_at, days.user_zone(user), now)
                           if connection.next_check_at else None,
                           status_words=connection_words(connection.status),
                           since=when.moment(connection.since, days.user_zone(user), now),
                           overview=overview.build(rt.db, rt.settings, user, now),
                           settings_link=links.settings_url(rt.settings, user.id),
                           home_link=None if signed_in else links.home_url(rt.settings, user.id),
                           token=links.settings_token(rt.settings, user.id), sent=request.args.get("sent"),
                           retention_days=rt.settings.retention_days)


@bp.post("/connections/me/preview")
def send_preview():
    """"Send me a preview now": today's digest (the next digest day's when today is not one), as a mail marked
    a preview, right away; nothing is recorded, so the morning's digest still goes out."""
    user, _signed_in = _page_user()
    if user is None:
        return _page_error(401, "Not signed in", "Open your page from a recent digest, or connect again.")
    rt = _rt()
    zone = days.user_zone(user)
    today = datetime.now(UTC).astimezone(zone).date()
    day = next((today + timedelta(days=n) for n in range(7) if (today + timedelta(days=n)).weekday()
                in user.digest.days), today)
    digest = send.compose(rt.db, rt.settings, user, day, record=False, preview=True)
    try:
        rt.mailer.send(render.message(digest, rt.settings.mail_from, preview=True))
    except (OSError, smtplib.SMTPException) as exc:
        log.warning("preview for user %s could not be sent (%s)", user.id, type(exc).__name__)
        return _page_error(502, "The preview could not be sent", "The mail server did not accept it. Please try "
                           "again in a minute.")
    log.info("user %s asked for a digest preview", user.id)
    target = "/connections/me?sent=preview" + (f"&t={request.form['t']}" if request.form.get("t") else "")
    return redirect(target + "#mails", 303)


@bp.post("/connections/me/disconnect")
def disconnect():
    """Delete the subscription and tokens; ``purge=1`` also deletes the stored events."""
    user = _signed_in_user()
    if user is None:
        return _page_error(401, "Not signed in", "Connect your calendar first.")
    purge = request.form.get("purge", "0")
    if purge not in ("0", "1"):
        return _page_error(400, "Please try again", "Choose whether to keep or delete your stored events.")
    done = _rt().connections.disconnect(user.id, purge == "1")
    return render_template("auth/disconnected.html", user=users.get(_rt().db, user.id), purged=purge == "1",
                           done=done)


@bp.get("/connections/me/data")
def export_data():
    """Everything calsync holds about the signed-in user, as a JSON download (streamed)."""
    user = _signed_in_user()
    if user is None:
        return _page_error(401, "Not signed in", "Connect your calendar first.")
    chunks = mydata.export(_rt().db, user.id)
    if chunks is None:
        return _page_error(404, "Nothing to export", "calsync holds no data about you.")
    log.info("user %s downloaded their data", user.id)
    return Response(chunks, mimetype="application/json", headers={
        "Content-Disposition": 'attachment; filename="calsync-my-data.json"', "Cache-Control": "no-store"})


@bp.post("/connections/me/delete")
def delete_data():
    """Delete everything calsync holds about the signed-in user (the typed confirmation guards a slip)."""
    user = _signed_in_user()
    if user is None:
        return _page_error(401, "Not signed in", "Connect your calendar first.")
    if (request.form.get("confirm") or "").strip().upper() != "DELETE":
        return _page_error(400, "Nothing was deleted", "Type DELETE in the box to confirm.")
    done = _rt().connections.delete_all_data(user.id)
    session.clear()
    return render_template("auth/deleted.html", email=user.email, pending=bool(done.get("pending")))


@bp.post("/signout")
def sign_out():
    session.clear()
    return redirect("/connect", 303)


# ----- admin sign-in and consent ----------------------------------------------------------------------

@bp.post("/admin/signin")
def admin_sign_in():
    """An administrator of the customer's tenant signs in (the same code flow, nothing connected): their role
    comes from the id token's ``wids``."""
    rt = _rt()
    try:
        flow = _initiate_flow(rt)
    except (requests.RequestException, ValueError):
        return _page_error(502, "Microsoft sign-in is unavailable", "Please try again in a minute.")
    key = secrets.token_urlsafe(32)
    rt.redis.set(FLOW_KEY.format(key), json.dumps({"flow": flow, "admin": True}), ex=FLOW_SECONDS)
    session["auth_flow"] = key
    return redirect(flow["auth_uri"], 303)


def _admin_signed_in(flow: dict, args: dict[str, str]):
    rt = _rt()
    try:
        claims = signin.verify_admin(rt.settings, rt.http, rt.id_tokens, flow, args)
    except signin.SignInFailed as exc:
        return _page_error(exc.status, exc.title, exc.detail)
    if not enrolment.is_admin(claims):
        log.info("admin sign-in refused: no administrator role in tenant %s", claims.get("tid"))
        return _page_error(403, "Only your organisation's administrator can do this",
                           "Sign in as a Global Administrator or Privileged Role Administrator of your organisation.")
    session["admin_tenant"] = str(claims["tid"]).lower()
    session["admin_email"] = str(claims.get("preferred_username") or claims.get("email") or "")[:320]
    return redirect("/admin/tenant", 303)


@bp.get("/admin/consent")
def admin_consent():
    """Send an administrator to the v2 admin-consent endpoint for calsync's application permissions
    (``.default``: the ones on the app registration: Calendars.Read, User.Read.All, GroupMember.Read.All)."""
    settings = _rt().settings
    state = secrets.token_urlsafe(24)
    _rt().redis.set(CONSENT_KEY.format(state), session.get("admin_tenant") or "-", ex=FLOW_SECONDS)
    tenant = settings.tenant if settings.tenant.lower() not in ("common", "consumers") else "organizations"
    tenant = session.get("admin_tenant") or tenant
    query = urlencode({
        "client_id": settings.client_id,
        "scope": f"{GRAPH_RESOURCE}/.default",
        "redirect_uri": admin_consent_redirect_uri(settings),
        "state": state,
    })
    return redirect(f"{settings.authority_host.rstrip('/')}/{tenant}/v2.0/adminconsent?{query}", 303)


@bp.get("/admin/consent/callback")
def admin_consent_callback():
    """Record the consenting tenant, or show the error Microsoft returned."""
    args = request.args
    state = args.get("state", "")
    expected = _rt().redis.getdel(CONSENT_KEY.format(state)) if state and len(state) <= 128 else None
    if not expected:
        return _page_error(400, "This consent link has expired", "Start again from the admin consent link.")
    if args.get("error"):
        error = args.get("error", "")[:64]
        description = args.get("error_description", "")[:300]
        log.info("admin consent: the identity platform returned %s", error)
        status = 403 if error in DENIED_ERRORS else 400
        return _page_error(status, "Admin consent was not granted", f"Microsoft reported: {error}. {description}")
    tenant_id = args.get("tenant", "")
    if args.get("admin_consent", "").lower() != "true" or not TENANT_ID.match(tenant_id):
        return _page_error(400, "Admin consent did not complete", "Microsoft's answer was incomplete.")
    expected = expected.decode() if isinstance(expected, bytes) else str(expected)
    if expected != "-" and expected != tenant_id.lower():
        log.warning("admin consent: the consent is for tenant %s, the signed-in admin's is %s", tenant_id, expected)
        return _page_error(403, "That consent was for another organisation",
                           "Sign in as an administrator of the organisation you are connecting.")
    # The redirect itself proves nothing (anyone can type its query string): ask the identity platform for a
    # token of that tenant and believe the consent only if it carries application permissions.
    _rt().app_tokens.forget(tenant_id.lower())
    if not _rt().app_tokens.roles(tenant_id.lower()):
        log.warning("admin consent callback for tenant %s, but the identity platform grants nothing there",
                    tenant_id.lower())
        return _page_error(400, "Admin consent did not complete",
                           "Microsoft has not confirmed calsync's permissions in that organisation. Please try again.")
    user = _signed_in_user()
    by = session.get("admin_email") or (user.email if user else None)
    record = tenants.record_consent(_rt().db, tenant_id.lower(), by, [f"{GRAPH_RESOURCE}/.default"])
    if by:
        tenantwide.update_settings(_rt().db, tenant_id.lower(), {"admin_email": by})
    _rt().tenant_wide.consent_restored(tenant_id.lower())
    log.info("admin consent recorded for tenant %s", tenant_id.lower())
    return render_template("auth/admin_consented.html", tenant=record,
                           granted=when.moment(record["consented_at"], "UTC"))
