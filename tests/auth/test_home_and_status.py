"""The front door (/), friendly error pages, and the person's own page (/connections/me) as their home."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.digest import links
from service.store import digests as digests_store
from service.store import exclusions, users
from tests.support.factories import add_event, add_people, add_user, attendee


def test_the_front_door_says_what_calsync_is_and_where_each_visitor_goes(client):
    page = client.get("/")

    html = page.get_data(as_text=True)
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "<h1>Know the people you meet today</h1>" in html
    assert 'href="/connect"' in html and 'href="/ops/"' in html and 'href="/admin/consent"' in html
    assert 'href="/api/openapi.json"' in html


def test_an_unknown_page_is_a_friendly_404_with_a_way_back_and_problem_types_are_documented(client):
    missing = client.get("/nothing/here", headers={"Accept": "text/html"})
    documented = client.get("/problems/not-found")
    unknown_kind = client.get("/problems/no-such-kind")

    assert missing.status_code == 404 and "Page not found" in missing.get_data(as_text=True)
    assert "<code>/nothing/here</code>" in missing.get_data(as_text=True)
    assert 'href="/"' in missing.get_data(as_text=True) and 'href="/connect"' in missing.get_data(as_text=True)
    assert documented.status_code == 200 and "application/problem+json" in documented.get_data(as_text=True)
    assert unknown_kind.status_code == 404


def _home(rt, db, status="connected", reason=None):
    now = datetime.now(UTC)
    user = add_user(db, time_zone="Europe/Paris", status=status)
    if reason:
        db.users.update_one({"_id": user.id}, {"$set": {"connection.reason": reason}})
    add_people(db)
    soon = now + timedelta(hours=3)
    event = add_event(db, user.id, "g-soon", soon, soon + timedelta(minutes=30), subject="Roadmap review",
                      attendees=[attendee("ana@example.com"), attendee("ben@example.com")])
    add_event(db, user.id, "g-series", soon + timedelta(days=1), soon + timedelta(days=1, hours=1),
              subject="Weekly social", attendees=[attendee("ben@example.com")], series_master_id="series-9")
    exclusions.add(db, user.id, exclusions.SERIES, "series-9")
    return user, event


def test_the_persons_page_is_their_home_meetings_mails_and_what_they_keep_out(client, rt, db):
    user, event = _home(rt, db)

    page = client.get(links.home_url(rt.settings, user.id).removeprefix(rt.settings.public_url))

    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Hello, Morgan Me" in html and 'id="connection-status">Connected' in html
    upcoming = html.split('id="upcoming"')[1].split('id="mails"')[0]
    assert "Roadmap review" in upcoming and f"/meetings/{event['_id']}?t=" in upcoming and "(in 3 hours)" in upcoming
    assert "Weekly social" not in upcoming                        # kept out of insights
    mails = html.split('id="mails"')[1].split('id="kept-out"')[0]
    assert "every day at 06:30" in mails and 'id="next-digest"' in mails
    assert "15 minutes before every meeting" in mails and "before Roadmap review" in mails
    assert 'id="send-preview"' in mails and "/digest/preview?t=" in mails
    kept = html.split('id="kept-out"')[1]
    assert "Every meeting in the series <strong>Weekly social" in kept and 'value="include"' in kept
    # Reached through a link, not signed in: no disconnect or delete forms.
    assert "/connections/me/disconnect" not in html and "sign in with Microsoft" in html


def test_any_stored_connection_status_shows_in_words_with_its_reason(client, rt, db):
    user, _ = _home(rt, db, status="no_mailbox", reason="cannot sync: no Exchange Online mailbox")

    html = client.get(links.home_url(rt.settings, user.id).removeprefix(rt.settings.public_url)).get_data(as_text=True)

    assert 'id="connection-status">No mailbox' in html
    assert 'id="connection-reason">cannot sync: no Exchange Online mailbox' in html
    assert users.get(db, user.id).connection.status == "no_mailbox"


def test_send_me_a_preview_now_mails_a_preview_and_records_nothing(client, rt, db, smtp_inbox):
    user, _ = _home(rt, db)
    token = links.settings_token(rt.settings, user.id)
    page = client.get(f"/connections/me?t={token}").get_data(as_text=True)
    csrf = page.split('name="csrf_token" value="')[1].split('"')[0]

    sent = client.post("/connections/me/preview", data={"csrf_token": csrf, "t": token})
    after = client.get(sent.headers["Location"]).get_data(as_text=True)

    assert sent.status_code == 303 and "sent=preview" in sent.headers["Location"]
    [message] = smtp_inbox.messages
    assert message["Subject"].startswith("Preview: Your day, ")
    assert "A preview" in next(p.get_content() for p in message.walk() if p.get_content_type() == "text/plain")
    assert digests_store.for_user(db, user.id) == []             # the morning's digest still goes out
    assert "A preview of your digest is on its way" in after


def test_the_json_status_needs_a_sign_in_and_says_so_as_a_problem(client):
    answer = client.get("/connections/me", headers={"Accept": "application/json"})

    assert answer.status_code == 401 and answer.mimetype == "application/problem+json"
    assert answer.get_json()["code"] == "unauthorized"


def test_a_host_header_that_is_not_a_hostname_is_a_plain_400_not_a_500(client, caplog):
    """Found by the no-5xx fuzz test: an over-long DNS label in Host leaves Flask with no URL adapter, so the
    error page (which links home) could not be built and the answer became a 500 with a traceback."""
    for path in ("/", "/nowhere", "/api/users/x/meetings"):
        response = client.get(path, headers={"Host": "a" * 70 + ".example"})
        assert response.status_code == 400, path
    assert not [r for r in caplog.records if r.exc_info]
