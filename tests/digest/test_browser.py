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

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture
def served(make_settings, db, redis_conn):
    """calsync on a real loopback port (public_url points at it, so digest links resolve)."""
    holder = Deferred()
    server = make_server("127.0.0.1", 0, holder, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    rt = Runtime(make_settings(public_url=url), db=db, redis_conn=redis_conn)
    holder.app = create_app(runtime=rt)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rt
    server.shutdown()
    thread.join(timeout=5)


@pytest.mark.browser
def test_dashboard_renders_its_chart_in_headless_chromium(served, db, tmp_path):
    from playwright.sync_api import sync_playwright

    user = add_user(db, time_zone="America/Los_Angeles")
    add_people(db)
    start = datetime(2026, 7, 1, 17, 0, tzinfo=UTC)
    event = add_event(db, user.id, "g-1", start, start + timedelta(hours=1), subject="Roadmap",
                      attendees=[attendee("ana@example.com"), attendee("ben@example.com"), attendee("cy@example.com")])
    url = links.dashboard_url(served.settings, str(event["_id"]), user.id, "g-1")
    shot = tmp_path / "dashboard.png"

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 900})
            response = page.goto(url, timeout=20000)
            chart = page.locator("svg.style-mix[data-framework='disc']")
            chart.wait_for(timeout=10000)
            box = chart.bounding_box()
            bars = page.locator("svg.style-mix[data-framework='disc'] rect.bar").count()
            title = page.title()
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()

    assert response.status == 200
    assert title.startswith("Roadmap")
    assert box["width"] > 100 and box["height"] > 50
    assert bars == 3   # D, S and C: nobody in the room is an I, so it is no row
    assert shot.stat().st_size > 5000
