"""Every page passes axe-core (WCAG 2.1 A and AA, and axe's best practices) with no serious or critical
violation, at 1280 px and at 390 px wide (a phone), in headless Chromium; no page scrolls sideways on the phone;
the digest and prep mails pass too. ``CALSYNC_SCREENSHOTS=DIR`` also saves a full-page screenshot of each page at
each width, and ``CALSYNC_AXE_REPORT=FILE`` the figures (violations by impact, per page and width)."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

import pytest

from service.digest import prep, send
from service.digest.render import environment, render_html
from service.insights import days, org
from service.insights.matching import Directory, attendee_emails
from service.store import as_utc, users
from service.store import events as events_store
from tests.support.pages import pages, seed
from tests.support.serving import OPS_TOKEN, served_app

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
WIDTHS = ((1280, 900), (390, 844))
RULES = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]},
         "resultTypes": ["violations"]}
BLOCKING = ("serious", "critical")


@pytest.fixture
def served(make_settings, db, redis_conn):
    with served_app(make_settings, db, redis_conn) as found:
        yield found


def _mails(rt, seeded) -> dict[str, str]:
    """The digest and a prep mail of the seeded user, as HTML."""
    user = users.get(rt.db, seeded.user_id)
    event = events_store.get(rt.db, user.id, seeded.meeting_graph_id)
    day = as_utc(event["start"]).astimezone(days.user_zone(user)).date()     # the day of the seeded meetings
    digest = send.compose(rt.db, rt.settings, user, day, record=False)
    directory = Directory.for_emails(rt.db, attendee_emails([event]) | {user.email})
    mail = prep.compose(rt.db, rt.settings, user, event, directory, org.for_user(rt.db, user), "record")
    return {"digest mail": render_html(digest), "prep mail": environment().get_template("prep.html").render(p=mail)}


def _check(page, axe) -> tuple[list[tuple[str, str, int]], Counter, int]:
    found = axe.run(page, options=RULES).response["violations"]
    blocking = [(v["id"], v["impact"], len(v["nodes"])) for v in found if v["impact"] in BLOCKING]
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    return blocking, Counter(v["impact"] for v in found), overflow


@pytest.mark.slow
@pytest.mark.browser
def test_every_page_and_mail_passes_axe_at_1280_and_390_px_without_sideways_scrolling(served, db):
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import sync_playwright

    rt, url = served
    seeded = seed(db)
    mails = _mails(rt, seeded)
    shots = Path(os.environ["CALSYNC_SCREENSHOTS"]) if os.environ.get("CALSYNC_SCREENSHOTS") else None
    axe, figures, problems, statuses = Axe(), {}, {}, {}

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            for width, height in WIDTHS:
                context = browser.new_context(viewport={"width": width, "height": height})
                page = context.new_page()
                signed_in = False
                for item in pages(rt.settings, seeded, url):
                    if item.operator and not signed_in:
                        page.goto(f"{url}/ops/login")
                        page.fill("#token", OPS_TOKEN)
                        page.get_by_role("button", name="Sign in").click()
                        page.get_by_role("heading", name="Operations").wait_for(timeout=15000)
                        signed_in = True
                    response = page.goto(item.url)
                    statuses[(item.name, width)] = response.status
                    blocking, impacts, overflow = _check(page, axe)
                    figures[f"{item.name} @ {width}"] = {**impacts, "overflow_px": max(overflow, 0)}
                    problems[(item.name, width)] = (blocking, overflow)
                    if shots:
                        shots.mkdir(parents=True, exist_ok=True)
                        slug = re.sub(r"\W+", "-", item.name).strip("-")
                        page.screenshot(path=str(shots / f"{slug}-{width}.png"), full_page=True)
                for name, html in mails.items():
                    page.goto("about:blank")        # out of calsync's pages: their CSP would block the mail's styles
                    page.set_content(html)
                    blocking, impacts, overflow = _check(page, axe)
                    figures[f"{name} @ {width}"] = {**impacts, "overflow_px": max(overflow, 0)}
                    problems[(name, width)] = (blocking, overflow)
                    if shots:
                        page.screenshot(path=str(shots / f"{name.replace(' ', '-')}-{width}.png"), full_page=True)
                context.close()
        finally:
            browser.close()
    if os.environ.get("CALSYNC_AXE_REPORT"):
        Path(os.environ["CALSYNC_AXE_REPORT"]).write_text(json.dumps(figures, indent=1, sort_keys=True))

    expected = {(item.name, width): item.status for item in pages(rt.settings, seeded, url) for width, _ in WIDTHS}
    assert statuses == expected
    assert {k: v[0] for k, v in problems.items() if v[0]} == {}          # no serious or critical violation
    assert {k: v[1] for k, v in problems.items() if v[1] > 0} == {}      # nothing scrolls sideways
    assert len(problems) == 2 * (len(expected) // 2 + len(mails))
