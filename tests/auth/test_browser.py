"""The whole connect flow in headless Chromium against the emulator's sign-in page."""

import pytest

from service.store import users
from tests.support.connect import emulated_user

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        context = browser.new_context(ignore_https_errors=True, timezone_id="America/Los_Angeles")
        violations = []   # every Content-Security-Policy violation on any page of the flow
        context.expose_binding("cspViolation", lambda _source, text: violations.append(text))
        context.add_init_script("document.addEventListener('securitypolicyviolation', e => window.cspViolation("
                                "e.violatedDirective + ' ' + (e.blockedURI || 'inline') + ' ' + location.pathname))")
        page = context.new_page()
        page.csp_violations = violations
        yield page
        context.close()
        browser.close()


@pytest.mark.browser
def test_a_user_connects_their_calendar_in_a_real_browser(stack, page):
    alice = emulated_user(stack, mail="alice@contoso.com", display_name="Alice Liddell")

    page.goto(f"{stack.url}/connect")
    page.get_by_role("button", name="Connect Microsoft 365 calendar").click()
    page.wait_for_url(f"{stack.emulator.base_url}/**")
    page.get_by_label("Alice Liddell").check()
    page.get_by_role("button", name="Accept").click()
    page.wait_for_url(f"{stack.url}/auth/callback?**")

    assert page.get_by_role("heading", level=1).inner_text() == "Your calendar is connected"
    user = users.get(stack.runtime.db, alice["id"])
    assert user.connection.status == users.CONNECTED
    assert user.time_zone == "America/Los_Angeles"  # the browser's zone, sent with the connect form
    cookie = next(c for c in page.context.cookies() if c["name"] == "calsync_session")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Lax"

    page.get_by_role("link", name="See your connection status").click()
    assert page.locator("#connection-status").inner_text() == "Connected"
    page.get_by_label("Keep my stored meetings").check()
    page.get_by_role("button", name="Disconnect").click()

    assert page.get_by_role("heading", level=1).inner_text() == "Your calendar is disconnected"
    assert users.get(stack.runtime.db, alice["id"]).connection.status == users.DISCONNECTED
    assert page.csp_violations == []   # connect, Microsoft's redirect (form-action), callback, status, disconnect


@pytest.mark.browser
def test_cancelling_at_microsoft_shows_a_friendly_page(stack, page):
    alice = emulated_user(stack, display_name="Alice Liddell")

    page.goto(f"{stack.url}/connect")
    page.get_by_role("button", name="Connect Microsoft 365 calendar").click()
    page.get_by_label("Alice Liddell").check()
    page.get_by_role("button", name="Cancel").click()
    page.wait_for_url(f"{stack.url}/auth/callback?**")

    assert page.get_by_role("heading", level=1).inner_text() == "Calendar access was not granted"
    assert users.get(stack.runtime.db, alice["id"]) is None
