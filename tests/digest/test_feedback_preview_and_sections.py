"""Tip feedback asks before recording, the digest as a page, prep mails' own unsubscribe, one Save per settings
section with errors next to the field, and no digest on a day the person did not choose."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from service.digest import links, send
from service.insights import coaching
from service.store import coaching as coaching_store
from service.store import users as users_store
from tests.support.factories import add_event, add_people, add_user, attendee

DAY = date(2026, 7, 1)   # a Wednesday


def _tip_path(rt, user_id, verdict=None):
    found = coaching.suggest(rt.db, users_store.get(rt.db, user_id), DAY, record=False)[0]
    url = links.feedback_url(rt.settings, user_id, found.tip.key, found.person_id, verdict)
    return url.removeprefix(rt.settings.public_url), found


def test_following_a_tip_link_records_nothing_and_the_button_records_the_verdict(client, rt, db):
    user = add_user(db)
    add_people(db)
    add_event(db, user.id, "g-1", datetime(2026, 7, 1, 9, tzinfo=UTC), datetime(2026, 7, 1, 10, tzinfo=UTC),
              attendees=[attendee("ana@example.com")])
    path, found = _tip_path(rt, user.id, "not_useful")
    token = path.split("t=")[1]

    page = client.get(path)                                  # what a mail scanner does
    assert coaching_store.feedback(db, user.id) == {}
    done = client.post("/digest/tips", data={"t": token, "v": "not_useful"})

    assert page.status_code == 200 and found.tip.text in page.get_data(as_text=True)
    assert done.status_code == 200 and "will not show you this tip again" in done.get_data(as_text=True)
    assert coaching_store.feedback(db, user.id) == {found.tip.key: "not_useful"}
    assert client.post("/digest/tips", data={"t": token, "v": "meh"}).status_code == 400
    assert client.post("/digest/tips", data={"t": "forged", "v": "useful"}).status_code == 403


def test_the_digest_as_a_page_is_the_mail_with_a_preview_note_inline_style_and_no_script(client, rt, db):
    user = add_user(db, time_zone="UTC", digest={"days": [0, 1, 2, 3, 4]})
    add_people(db)
    today = datetime.now(UTC).date()
    saturday = today + timedelta(days=(5 - today.weekday()) % 7)      # previews reach 31 days either side
    nine = datetime(saturday.year, saturday.month, saturday.day, 9, tzinfo=UTC)
    add_event(db, user.id, "g-1", nine, nine + timedelta(hours=1), subject="Weekend standup",
              attendees=[attendee("ana@example.com")])
    path = links.preview_url(rt.settings, user.id, saturday.isoformat()).removeprefix(rt.settings.public_url)

    page = client.get(path, headers={"Accept": "text/html"})

    html = page.get_data(as_text=True)
    policy = page.headers["Content-Security-Policy"]
    assert page.status_code == 200 and "Weekend standup" in html
    assert "Saturdays are not among your digest days (Mon to Fri)" in html
    assert "style-src 'unsafe-inline'" in policy and "script-src" not in policy and "default-src 'none'" in policy
    assert "<script" not in html
    assert client.get(f"{path.split('&date=')[0]}&date=soon").status_code == 400


def test_a_digest_is_not_sent_on_a_day_the_person_did_not_choose(rt, db, smtp_inbox):
    user = add_user(db, digest={"days": [0, 1, 2, 3, 4]})
    add_people(db)
    add_event(db, user.id, "g-1", datetime(2026, 7, 4, 9, tzinfo=UTC), datetime(2026, 7, 4, 10, tzinfo=UTC),
              attendees=[attendee("ana@example.com")])

    assert send.deliver(rt.db, rt.settings, rt.mailer, user.id, "2026-07-04") == "skipped:not-a-digest-day"
    assert smtp_inbox.messages == []


def test_prep_mails_have_their_own_one_click_unsubscribe_and_the_digest_stays_on(client, rt, db):
    user = add_user(db)
    url = links.unsubscribe_prep_url(rt.settings, user.id).removeprefix(rt.settings.public_url)

    asked = client.get(url)
    done = client.post(url, data={"List-Unsubscribe": "One-Click"})

    assert "Unsubscribe from meeting prep mails?" in asked.get_data(as_text=True)
    assert done.status_code == 200 and "You will not receive meeting prep mails" in done.get_data(as_text=True)
    stored = users_store.get(db, user.id)
    assert stored.prep.enabled is False and stored.digest.enabled is True
    assert client.post(url.replace("list=prep", "list=spam")).status_code == 400


def test_each_settings_section_saves_alone_and_a_mistake_is_shown_next_to_its_field(client, rt, db):
    user = add_user(db, time_zone="Europe/Paris")
    token = links.settings_token(rt.settings, user.id)

    zone = client.post("/digest/settings", data={"t": token, "section": "zone", "time_zone": "Asia/Tokyo"})
    bad = client.post("/digest/settings", data={"t": token, "section": "prep", "prep_minutes": "90",
                                                "prep_meetings": "all"})
    page = client.get(f"/digest/settings?t={token}").get_data(as_text=True)

    stored = users_store.get(db, user.id)
    assert zone.status_code == 200 and stored.time_zone == "Asia/Tokyo" and stored.digest.enabled is True
    html = bad.get_data(as_text=True)
    assert bad.status_code == 400 and stored.prep.minutes == 15
    assert 'aria-invalid="true"' in html and 'id="prep_minutes-error"' in html
    assert 'aria-describedby="prep_minutes-hint prep_minutes-error"' in html
    assert 'value="90"' in html                              # what was typed stays, to be corrected
    assert "Nothing in “Meeting prep” was saved" in html
    assert 'list="zones"' in page and '<option value="Europe/Paris">' in page and "<script" not in page
    assert page.count('type="submit"') == 5     # one Save per section (no calendars yet; channels, hours)


def test_the_digest_groups_unnamed_outsiders_by_domain_and_sums_up_the_day(rt, db):
    user = add_user(db)
    add_people(db)
    nine = datetime(2026, 7, 1, 9, tzinfo=UTC)
    add_event(db, user.id, "g-1", nine, nine + timedelta(hours=1), subject="Pitch",
              attendees=[attendee("ana@example.com"), attendee("sales@fabrikam.com", "Sales"),
                         attendee("ops@fabrikam.com", "ops@fabrikam.com"), attendee("jane.doe@fabrikam.com"),
                         attendee("x@globex.com", "")])
    add_event(db, user.id, "g-2", nine + timedelta(hours=1, minutes=5), nine + timedelta(hours=2),
              subject="Debrief", attendees=[attendee("ana@example.com")])

    digest = send.compose(rt.db, rt.settings, users_store.get(db, user.id), DAY, record=False)

    pitch = digest.meetings[0]
    assert [a.name for a in pitch.external_named] == ["Jane.Doe"]
    assert [g.words for g in pitch.outsiders] == ["2 people from fabrikam.com", "1 person from globex.com"]
    assert digest.summary.words == ("2 meetings with 5 people, 1 h 55 min in all; heaviest stretch 09:00–11:00 "
                                    "(2 back to back).")
