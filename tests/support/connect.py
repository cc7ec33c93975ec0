"""Connect an emulated Microsoft 365 user to calsync through the real code flow, without a browser.

    from tests.support.connect import connect_user, emulated_user

    def test_something(stack):
        alice = emulated_user(stack, mail="alice@contoso.com")
        user_id = connect_user(stack, alice["id"])       # == alice["id"], now connected with stored tokens
        stack.run_jobs()                                  # runs the queued subscription + initial sync jobs

The flow is the production one: GET /connect (CSRF token), POST /connect (MSAL builds PKCE/state/nonce),
the emulator's sign-in completed through its control API as the user would click "Accept", then our
/auth/callback with the same cookie jar. Connect users *before* moving the emulator's clock far from real
time: calsync checks the id token's exp/nbf against real time (with five minutes of skew).
"""

from __future__ import annotations

import uuid

import requests

from service.cli import demo
from service.cli.demo import browser_session


class ConnectFailed(AssertionError):
    """The connect flow did not end on the "connected" page."""


def emulated_user(stack, mail: str | None = None, tenant_id: str | None = None, **fields) -> dict:
    """Create a user in the emulator's directory (and a tenant if it has none); returns the emulator's user."""
    control = stack.emulator.control
    if tenant_id is None:
        tenants = control.request("GET", "/tenants")["value"]
        tenant_id = tenants[0]["id"] if tenants else control.create_tenant(display_name="Contoso")["id"]
    mail = mail or f"user-{uuid.uuid4().hex[:8]}@contoso.com"
    return control.create_user(mail=mail, tenant_id=tenant_id, **fields)


def start_connect(stack, session: requests.Session, time_zone: str = "") -> str:
    """GET /connect then POST it; returns the authorize URL calsync redirected to."""
    try:
        return demo.start_connect(stack.url, session, time_zone)
    except demo.DemoFailed as exc:
        raise ConnectFailed(str(exc)) from None


def sign_in_at_emulator(stack, authorize_url: str, emulated_user_id: str, accept: bool = True) -> str:
    """Complete the emulator's sign-in page as the user; returns the redirect URL (our callback)."""
    return demo.sign_in_at_emulator(stack.emulator.control, authorize_url, emulated_user_id, accept)


def connect_session(stack, emulated_user_id: str, time_zone: str = "") -> tuple[str, requests.Session]:
    """Connect and return ``(user_id, session)``; the session is signed in to calsync as that user."""
    session = browser_session()
    authorize_url = start_connect(stack, session, time_zone)
    callback = session.get(sign_in_at_emulator(stack, authorize_url, emulated_user_id), timeout=30)
    if callback.status_code != 200 or "Your calendar is connected" not in callback.text:
        raise ConnectFailed(f"/auth/callback answered {callback.status_code}")
    status = session.get(f"{stack.url}/connections/me", headers={"Accept": "application/json"}, timeout=10)
    return status.json()["user_id"], session


def connect_user(stack, emulated_user_id: str, time_zone: str = "") -> str:
    """Run the real connect flow for an emulated user; returns calsync's user id (the Graph id)."""
    user_id, session = connect_session(stack, emulated_user_id, time_zone)
    session.close()
    return user_id
