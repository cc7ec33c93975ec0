"""Drive the customer admin's pages against the emulator: admin sign-in (wids), admin consent (.default),
settings forms with the session's CSRF token."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import requests

from service.cli.demo import CSRF_FIELD, browser_session
from tests.support.connect import sign_in_at_emulator

GLOBAL_ADMIN = "62e90394-69f5-4237-9190-012177145e10"
PRIVILEGED_ROLE_ADMIN = "e8611ab8-c189-46e8-94e1-60213ab1f814"


def csrf_token(stack, session: requests.Session, path: str = "/admin/tenant") -> str:
    page = session.get(f"{stack.url}{path}", timeout=10)
    match = CSRF_FIELD.search(page.text)
    assert match is not None, f"no form on {path} ({page.status_code})"
    return match.group(1)


def admin_session(stack, admin_id: str) -> tuple[requests.Session, requests.Response]:
    """Sign in at /admin/signin as the emulated user; returns the session and the callback's final answer."""
    session = browser_session()
    token = csrf_token(stack, session)
    started = session.post(f"{stack.url}/admin/signin", data={"csrf_token": token}, allow_redirects=False,
                           timeout=30)
    assert started.status_code == 303, started.status_code
    answer = session.get(sign_in_at_emulator(stack, started.headers["Location"], admin_id), timeout=30)
    return session, answer


def grant_consent(stack, session: requests.Session, admin_id: str) -> requests.Response:
    """The admin follows /admin/consent to the v2 admin-consent endpoint and accepts."""
    started = session.get(f"{stack.url}/admin/consent", allow_redirects=False, timeout=10)
    assert started.status_code == 303
    return session.get(sign_in_at_emulator(stack, started.headers["Location"], admin_id), timeout=30)


def save_settings(stack, session: requests.Session, **fields) -> requests.Response:
    token = csrf_token(stack, session)
    return session.post(f"{stack.url}/admin/tenant/settings", data={"csrf_token": token, **fields},
                        allow_redirects=False, timeout=30)


def connect_tenant(stack, admin_id: str, **settings) -> requests.Session:
    """Admin signs in, consents and turns tenant-wide on; the directory job is queued (run stack.run_jobs())."""
    session, answer = admin_session(stack, admin_id)
    assert answer.status_code == 200 and "Your organisation" in answer.text, answer.status_code
    consent = grant_consent(stack, session, admin_id)
    assert consent.status_code == 200 and "Admin consent granted" in consent.text, consent.status_code
    assert save_settings(stack, session, mode="tenant_wide", **settings).status_code == 303
    return session


def meeting_soon(days_ahead: int = 2) -> dict:
    """A meeting inside the sync window, whatever today is."""
    start = (datetime.now(UTC) + timedelta(days=days_ahead)).replace(hour=10, minute=0, second=0, microsecond=0)
    return {"subject": "Planning", "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
            "end": {"dateTime": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}}


def new_tenant(stack, name: str = "Contoso") -> str:
    return stack.emulator.control.create_tenant(display_name=name)["id"]


def active_subscriptions(stack, user_id: str) -> list[dict]:
    return [s for s in stack.emulator.control.subscriptions()
            if s["userId"] == user_id and s["status"] == "active"]


def grant_application_permissions(stack, admin: dict) -> None:
    """The tenant's admin consents to calsync's application permissions (the app's registered roles)."""
    url = (f"{stack.emulator.base_url}/{admin['tenant_id']}/adminconsent?client_id={stack.settings.client_id}"
           f"&redirect_uri={stack.url}/admin/consent/callback&state=s")
    assert "admin_consent=True" in sign_in_at_emulator(stack, url, admin["id"])
