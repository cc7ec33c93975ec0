"""The main pages in headless Chromium under their Content-Security-Policy: no violation reported, and
their forms and charts work (digest settings saved, the meeting chart drawn, the operator signed in, a
search and a resync posted). The connect and status pages get the same check in tests/auth/test_browser.py."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from werkzeug.serving import make_server

from harness.loopback import Deferred
from service.app import create_app
from service.digest import links
from service.runtime import Runtime
from tests.support.factories import add_event, add_people, add_user, attendee
from tests.support.serving import OPS_TOKEN

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
# Chromium fires this event for every blocked inline script, style or resource; the page keeps a list.
LISTEN = ("window.__violations = [];"
          "document.addEventListener('securitypolicyviolation',"
          " e => window.__violations.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline')));")


@pytest.fixture
def served(make_settings, db, redis_conn):
    holder = Deferred()
    server = make_server("127.0.0.1", 0, holder, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    rt = Runtime(make_settings(public_url=url), db=db, redis_conn=redis_conn)
    holder.app = create_app(runtime=rt)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rt, url
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture
def browser_page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.add_init_script(LISTEN)
        console = []
        page.on("console", lambda message: console.append(message.text))
        yield page, console
        browser.close()


def violations(page) -> list[str]:
    return page.evaluate("window.__violations")


@pytest.mark.browser
def test_main_pages_work_under_their_csp_with_no_violation(served, db, browser_page):
    rt, url = served
    page, console = browser_page
    user = add_user(db, time_zone="Europe/Paris")
    add_people(db)
    start = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
    event = add_event(db, user.id, "g-1", start, start + timedelta(hours=1), subject="Roadmap",
                      attendees=[attendee("ana@example.com"), attendee("ben@example.com")])
    db.subscriptions.insert_one({"_id": "sub-1", "user_id": user.id, "status": "active", "failures": 0,
                                 "expires_at": datetime.now(UTC) + timedelta(days=2)})
    seen = {}

    response = page.goto(f"{url}/connect")
    seen["connect"] = violations(page)
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert page.input_value("#tz")            # the external script filled in the browser's time zone

    page.goto(links.settings_url(rt.settings, user.id))
    page.fill("#time", "07:15")
    page.get_by_role("button", name="Save digest settings").click()
    page.get_by_text("Saved.").wait_for(timeout=10000)
    seen["digest settings"] = violations(page)
    assert page.locator("main").evaluate("e => getComputedStyle(e).maxWidth") == "736px"   # its stylesheet

    page.goto(links.dashboard_url(rt.settings, str(event["_id"]), user.id, "g-1"))
    chart = page.locator("svg.style-mix[data-framework='disc']")
    chart.wait_for(timeout=10000)
    seen["meeting dashboard"] = violations(page)
    assert chart.bounding_box()["width"] > 100

    page.goto(f"{url}/ops/")
    page.fill("#token", OPS_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Queues").wait_for(timeout=10000)
    page.fill("#q", "me@")
    page.get_by_role("button", name="Show").click()
    page.get_by_role("button", name="Resync").click()     # a POST form with its CSRF token
    page.get_by_role("heading", name="Queues").wait_for(timeout=10000)
    seen["ops dashboard"] = violations(page)
    header = page.locator("header").evaluate("e => getComputedStyle(e).backgroundColor")

    assert seen == {"connect": [], "digest settings": [], "meeting dashboard": [], "ops dashboard": []}
    assert not [line for line in console if "Content Security Policy" in line], console
    assert db.users.find_one({"_id": user.id})["digest"]["time"] == "07:15"
    assert rt.redis.exists(f"calsync:sync-pending:{user.id}")   # the resync was queued
    assert header == "rgb(36, 59, 83)"                          # the ops stylesheet applied
