"""The "your week" page and the working-hours section of the settings page."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

from service.digest import links, render, send
from service.store import people as people_store
from service.store import workhours as workhours_store
from tests.support.factories import add_event, add_people, add_user, attendee

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 3, 4, 12, tzinfo=UTC)


@pytest.fixture
def me(db):
    add_people(db)
    user = add_user(db, time_zone="Europe/Paris")
    monday = datetime(2026, 3, 2, 9, tzinfo=PARIS)
    for n, hour in enumerate((9, 10, 11)):
        start = monday.replace(hour=hour)
        add_event(db, user.id, f"g{n}", start, start + timedelta(minutes=55), attendees=[attendee("ana@example.com")],
                  subject=f"Plan {n}")
    add_event(db, user.id, "secret", monday.replace(hour=19), monday.replace(hour=20), subject="Hiring Zoe",
              sensitivity="private", attendees=[attendee("ben@example.com")])
    return user


def test_the_week_page_shows_measures_charts_and_dates_in_the_persons_zone(client, settings, me):
    with time_machine.travel(NOW, tick=False):
        page = client.get(links.week_url(settings, me.id, "2026-W10").removeprefix(links.base(settings)))

    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Mon 2 Mar to Sun 8 Mar (2026-W10)" in html and "Europe/Paris" in html
    assert "<svg" in html and 'role="img"' in html and "<script" not in html and "style=" not in html
    assert "3 h 45 min" in html                          # in meetings: 3 × 55 min + the private hour
    assert "Meetings after hours</dt><dd>1 h" in html
    assert "Hiring Zoe" not in html                      # a private meeting counts, never named
    assert "Heaviest day: Mon 2 Mar" in html


def test_a_week_that_does_not_exist_is_a_400_page(client, settings, me):
    page = client.get(f"/insights/week?t={links.settings_token(settings, me.id)}&week=2026-W99")

    assert page.status_code == 400 and "2026 has no ISO week 99" in page.get_data(as_text=True)


def test_without_a_link_or_session_the_page_is_refused(client, me):
    assert client.get("/insights/week").status_code == 403


def test_the_settings_page_has_working_hours_and_saves_them(client, settings, db, me):
    token = links.settings_token(settings, me.id)
    page = client.get(f"/digest/settings?t={token}").get_data(as_text=True)
    assert 'id="working-hours-heading"' in page and 'value="09:00"' in page

    saved = client.post("/digest/settings/working-hours", data={"t": token, "wh_start": "08:00", "wh_end": "16:00",
                                                                "wh_days": ["0", "1", "2", "3"]})

    assert saved.status_code == 200 and "Saved." in saved.get_data(as_text=True)
    assert workhours_store.get(db, me.id) == {"start": "08:00", "end": "16:00", "days": [0, 1, 2, 3],
                                              "source": "settings"}


@pytest.mark.parametrize(("form", "field"), [({"wh_start": "17:00", "wh_end": "09:00", "wh_days": ["0"]}, "wh_end"),
                                             ({"wh_start": "9", "wh_end": "17:00", "wh_days": ["0"]}, "wh_start"),
                                             ({"wh_start": "09:00", "wh_end": "17:00"}, "wh_days")])
def test_bad_working_hours_on_the_page_name_the_field_and_store_nothing(client, settings, db, me, form, field):
    token = links.settings_token(settings, me.id)

    answer = client.post("/digest/settings/working-hours", data={"t": token, **form})

    html = answer.get_data(as_text=True)
    assert answer.status_code == 400
    assert re.search(rf'id="{field}-error"', html) and "Working hours" in html
    assert workhours_store.get(db, me.id) is None


def test_the_digest_links_to_the_say_page_only_for_a_person_the_directory_describes(settings, db, me):
    stranger = add_user(db, "user-2", email="stranger@elsewhere.example")

    with time_machine.travel(NOW, tick=False):
        digest = send.compose(db, settings, me, NOW.date(), record=False)
        theirs = send.compose(db, settings, stranger, NOW.date(), record=False)

    assert digest.say_link.startswith(f"{links.base(settings)}/people/say?t=")
    with time_machine.travel(NOW, tick=False):    # the token names me, and only me
        assert links.read_say_token(settings, digest.say_link.split("t=", 1)[1]) == \
            people_store.by_email(db, "me@example.com")["_id"]
    assert f"Who sees tips about you: {digest.say_link}" in render.render_text(digest)
    assert f'href="{digest.say_link}"' in render.render_html(digest)
    assert theirs.say_link is None and "/people/say" not in render.render_text(theirs) + render.render_html(theirs)


def test_the_person_described_chooses_who_sees_tips_about_them_through_a_signed_link(client, settings, db, me):
    settings_page = client.get(f"/digest/settings?t={links.settings_token(settings, me.id)}").get_data(as_text=True)
    link = re.search(r'href="([^"]*/people/say\?t=[^"]+)"', settings_page).group(1)
    token = link.split("t=", 1)[1]
    ana = people_store.by_email(db, "ana@example.com")

    page = client.get(link.removeprefix(links.base(settings)))
    saved = client.post("/people/say", data={"t": token, "visibility": "restricted", "viewers": "ben@example.com"})
    refused = client.post("/people/say", data={"t": token, "visibility": "everyone"})
    forged = client.post("/people/say", data={"t": links.say_token(settings, ana["_id"]) + "x",
                                              "visibility": "private"})

    assert page.status_code == 200 and "Tips about you" in page.get_data(as_text=True)
    assert saved.status_code == 200 and "Saved." in saved.get_data(as_text=True)
    mine = people_store.by_email(db, "me@example.com")
    assert (mine["visibility"], mine["viewers"], mine["external_tips"]) == ("restricted", ["ben@example.com"], False)
    assert refused.status_code == 400 and people_store.by_email(db, "me@example.com")["visibility"] == "restricted"
    assert forged.status_code == 403 and "visibility" not in people_store.by_email(db, "ana@example.com")
