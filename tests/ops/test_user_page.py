"""Operators' pages in words: a user's page with the timeline and actions, delivery health, a failing endpoint
shown as failing, form mistakes as pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from service.ops.queues import stat_label
from service.store import activity, users
from tests.support.factories import add_user
from tests.support.serving import OPS_TOKEN


@pytest.fixture
def operator(client):
    page = client.get("/ops/login").get_data(as_text=True)
    csrf = page.split('name="csrf_token" value="')[1].split('"')[0]
    client.post("/ops/login", data={"token": OPS_TOKEN, "csrf_token": csrf})
    page = client.get("/ops/webhooks", headers={"Accept": "text/html"}).get_data(as_text=True)
    return client, page.split('name="csrf_token" value="')[1].split('"')[0]   # signing in starts a new session


def _user_with_history(db):
    now = datetime.now(UTC)
    user = add_user(db, email="ana@contoso.com", name="Ana Silva")
    users.touch_notification(db, user.id, now - timedelta(minutes=3))
    users.record_sync_success(db, user.id, now - timedelta(minutes=3), "delta", 1.2)
    users.record_sync_failure(db, user.id, now - timedelta(hours=1), "throttled", "429 ApplicationThrottled")
    users.set_connection_status(db, user.id, "no_mailbox", "cannot sync: no Exchange Online mailbox")
    db.digests_sent.insert_one({"_id": f"{user.id}:2026-07-01", "user_id": user.id, "local_date": "2026-07-01",
                                "status": "failed", "error": "SMTPServerDisconnected", "finished_at": now,
                                "claimed_at": now})
    db.preps_sent.insert_one({"_id": "p1", "user_id": user.id, "meeting": "uid-1", "start": now, "status": "sent",
                              "sent_at": now - timedelta(minutes=20), "finished_at": now - timedelta(minutes=20)})
    return user


def test_a_users_page_has_their_connection_in_words_the_timeline_and_the_actions(operator, db):
    client, _ = operator
    user = _user_with_history(db)

    page = client.get("/ops/users/ana@contoso.com", headers={"Accept": "text/html"})
    api = client.get("/ops/api/users/ana@contoso.com").get_json()

    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'id="connection">no mailbox <span class="muted">(no_mailbox)</span>' in html
    assert 'id="reason">cannot sync: no Exchange Online mailbox' in html
    timeline = html.split('id="timeline"')[1]
    for kind in ("notification", "sync", "error", "connection", "digest", "prep"):
        assert f'class="timeline-{kind}"' in timeline, kind
    assert "digest for Wed 1 Jul: failed (SMTPServerDisconnected)" in timeline
    assert "sync throttled: 429 ApplicationThrottled" in timeline and "(3 minutes ago)" in timeline
    assert f"/ops/users/{user.id}/resync" in html and f"/ops/api/users/{user.id}/export" in html
    assert api["connection"]["status"] == "no_mailbox" and api["timeline"][0]["at"].endswith("Z")
    assert [e["kind"] for e in api["timeline"]].count("sync") == 1


@pytest.fixture
def noon():
    """A UTC noon before the operator signs in: "today" (the operators' day is UTC) spans the history."""
    with time_machine.travel(datetime(2026, 12, 2, 12, 0, tzinfo=UTC), tick=True):
        yield


def test_the_dashboard_has_delivery_health_and_labelled_counts(noon, operator, db):
    client, _ = operator
    _user_with_history(db)
    db.outbound_endpoints.insert_one({"_id": "ep_1", "url": "https://hooks.example.com/x",
                                      "event_types": ["digest.sent"], "status": "active", "secrets": [],
                                      "created_at": datetime.now(UTC),
                                      "failing_since": datetime.now(UTC), "consecutive_failures": 2, "attempts": []})

    html = client.get("/ops/", headers={"Accept": "text/html"}).get_data(as_text=True)
    listing = client.get("/ops/webhooks", headers={"Accept": "text/html"}).get_data(as_text=True)

    assert 'id="delivery-digests_failed"><b class="bad">1</b>Digests failed today' in html
    assert 'id="delivery-preps_sent"><b class="">1</b>Prep mails sent today' in html
    assert "Webhook endpoints failing" in html and 'id="count-users_total"><b class="">1</b>Users' in html
    assert '<td class="bad health">failing (2 failed attempts)</td>' in listing


def test_an_operators_form_mistake_is_a_page_and_a_scripts_is_a_problem(operator, ops_headers):
    client, csrf = operator

    form = client.post("/ops/api/webhooks", data={"csrf_token": csrf, "url": "ftp://x", "event_types": "digest.sent"})
    expired = client.post("/ops/api/webhooks", data={"csrf_token": "stale", "url": "https://x.example.com/"})
    script = client.post("/ops/api/webhooks", headers=ops_headers, json={"url": "ftp://x"})

    assert form.status_code == 400 and form.mimetype == "text/html"
    page = form.get_data(as_text=True)
    assert "<h1>Bad request</h1>" in page and "http:// or https://" in page
    assert script.status_code == 400 and script.mimetype == "application/problem+json"
    assert expired.status_code == 403 and "This form expired" in expired.get_data(as_text=True)


def test_the_activity_log_keeps_the_latest_of_each_kind_and_goes_with_the_user(db):
    start = datetime(2026, 7, 1, tzinfo=UTC)
    for n in range(25):
        activity.note(db, "u1", "notification", start + timedelta(minutes=n), "change notification")
    activity.note(db, "u1", "error", start, "sync error: 503")

    kept = activity.for_user(db, "u1")

    assert [e["kind"] for e in kept].count("notification") == activity.KEEP["notification"]
    assert kept[0]["at"] == start + timedelta(minutes=24) and kept[-1]["kind"] == "error"
    assert activity.delete_for_user(db, "u1") == 1 and activity.for_user(db, "u1") == []


def test_counters_read_in_words_even_ones_this_release_does_not_know():
    assert stat_label("webhook:dropped:client_state") == "Notifications dropped: wrong clientState"
    assert stat_label("webhook:rich:fallback:no_key") == "Rich notifications synced instead: no key"
    assert stat_label("subscriptions:renewed") == "Subscriptions renewed"
    assert stat_label("mailbox:paused_seconds") == "Mailbox: paused seconds"
