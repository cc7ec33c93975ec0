"""A user's data: the streamed export (theirs, and the operators'), deleting it all (also while a sync is
running), and retention."""

from __future__ import annotations

import json
import os
import re
import tracemalloc
from datetime import UTC, datetime, timedelta

import pytest

from service.config import ConfigError, Settings
from service.connections import export as mydata
from service.insights import days, timeside, week
from service.store import calendars, digests, events, exclusions, people, tokens, users
from service.sync import requests as sync_requests
from service.sync import sweeps
from tests.support.factories import add_event, add_people, add_user, attendee

NOW = datetime(2026, 7, 1, 12, tzinfo=UTC)


def signed_in(client, user_id: str) -> str:
    """Sign ``user_id`` in and return the CSRF token their status page puts in its forms."""
    with client.session_transaction() as session:
        session["user_id"] = user_id
    page = client.get("/connections/me").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def seed(db, user_id="user-1"):
    user = add_user(db, user_id=user_id, email=f"{user_id}@example.com")
    add_people(db, [{"email": f"{user_id}@example.com", "name": "Me", "assessments": {"disc": {"primary": "S"}}}])
    calendars.upsert_listed(db, user.id, [{"calendar_id": "cal-1", "name": "Calendar", "owner_email": None,
                                           "is_default": True, "is_own": True}])
    calendars.save_cursor(db, user.id, "cal-1", "https://graph/delta?$deltatoken=SECRET-CURSOR", NOW, NOW, NOW)
    tokens.save_blob(db, user.id, "ENCRYPTED-TOKEN-BLOB")
    for n in range(3):
        add_event(db, user.id, f"g{n}", NOW + timedelta(days=n), NOW + timedelta(days=n, hours=1),
                  subject=f"Meeting {n}", attendees=[attendee("ana@example.com")], calendar_id="cal-1")
    exclusions.add(db, user.id, exclusions.MEETING, "uid-g1")
    digests.claim(db, user.id, "2026-07-01")
    digests.finish(db, user.id, "2026-07-01", digests.SENT)
    return user


def test_a_signed_in_user_downloads_everything_held_about_them_and_never_a_token(client, db):
    user = seed(db)
    seed(db, "user-2")                        # someone else's data stays out of it
    year, number = week.week_of(NOW, days.user_zone(user))
    held_week = timeside.week_report(db, user, year, number)     # kept, finished, in week_summaries
    signed_in(client, user.id)

    response = client.get("/connections/me/data")

    assert response.status_code == 200 and response.is_streamed
    assert response.headers["Content-Disposition"].startswith("attachment")
    text = response.get_data(as_text=True)
    body = json.loads(text)
    assert body["profile"]["email"] == "user-1@example.com" and body["connection"]["status"] == "connected"
    assert body["settings"]["digest"]["enabled"] is True
    assert [c["name"] for c in body["calendars"]] == ["Calendar"]
    assert [e["subject"] for e in body["events"]] == ["Meeting 0", "Meeting 1", "Meeting 2"]
    assert body["exclusions"][0]["key"] == "uid-g1" and body["digests_sent"][0]["status"] == "sent"
    assert body["week_summaries"][f"{year}-{number:02d}"] == week.report_doc(held_week)
    assert "ENCRYPTED-TOKEN-BLOB" not in text and "SECRET-CURSOR" not in text and "user-2" not in text
    assert client.get("/connections/me/data").status_code == 200
    with client.session_transaction() as session:
        session.clear()
    assert client.get("/connections/me/data").status_code == 401


def test_operators_export_and_delete_through_the_ops_api(client, db, ops_headers):
    user = seed(db)

    exported = client.get(f"/ops/api/users/{user.email}/export", headers=ops_headers)
    assert exported.status_code == 200 and len(json.loads(exported.get_data())["events"]) == 3
    listed = client.get(f"/ops/api/users/{user.id}/calendars", headers=ops_headers).get_json()
    assert listed["items"][0]["has_cursor"] is True and "delta_link" not in listed["items"][0]
    assert client.get("/ops/api/users/nobody@example.com/export", headers=ops_headers).status_code == 404
    assert client.post(f"/ops/api/users/{user.id}/delete").status_code == 401

    deleted = client.post(f"/ops/api/users/{user.id}/delete", headers=ops_headers)

    assert deleted.status_code == 200 and deleted.get_json()["events"] == 3
    assert users.get(db, user.id) is None


# The 50,000 events with CALSYNC_TEST_SCALE=full (about a minute here, mostly the inserts); the
# default suite exports 10,000 in batches a fifth the size, so the memory bound is tested at the same ratio.
EXPORTED = 50_000 if os.environ.get("CALSYNC_TEST_SCALE") == "full" else 10_000


@pytest.mark.slow
@pytest.mark.wire
def test_the_export_of_many_events_streams_in_bounded_memory(db):
    user = add_user(db)
    template = {"user_id": user.id, "subject": "Planning " + "x" * 60, "is_all_day": False,
                "organizer": {"name": "Morgan Me", "email": "me@example.com"}, "type": "singleInstance",
                "attendees": [attendee(f"person{n}@example.com") for n in range(4)], "calendar_id": "cal-1"}
    for batch in range(EXPORTED // 5_000):
        db.events.insert_many([{**template, "graph_id": f"g{batch:02d}{n:05d}", "start": NOW, "end": NOW}
                               for n in range(5_000)])

    tracemalloc.start()
    size, chunks, ids = 0, 0, 0
    for chunk in mydata.export(db, user.id, batch=mydata.EXPORT_BATCH * EXPORTED // 50_000):
        size, chunks, ids = size + len(chunk), chunks + 1, ids + chunk.count('"graph_id"')
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    assert ids == EXPORTED and chunks > 100
    print(f"export: {size / 1e6:.1f} MB of JSON in {chunks} chunks, peak traced memory {peak / 1e6:.1f} MB")
    assert peak < size / 5      # a batch at a time, never the whole calendar


def test_deleting_all_my_data_from_the_connection_page(client, db, rt):
    user = seed(db)
    csrf = signed_in(client, user.id)

    assert client.post("/connections/me/delete", data={"csrf_token": csrf, "confirm": "nope"}).status_code == 400
    assert client.post("/connections/me/delete", data={"csrf_token": "x", "confirm": "DELETE"}).status_code == 400
    assert events.for_user(db, user.id)
    response = client.post("/connections/me/delete", data={"csrf_token": csrf, "confirm": "delete"})

    assert response.status_code == 200 and "entry about you" in " ".join(response.get_data(as_text=True).split())
    for collection in ("users", "events", "calendars", "exclusions", "digests_sent", "tokens", "subscriptions"):
        left = [d for d in db[collection].find({}) if user.id in (d.get("_id"), d.get("user_id"))]
        assert left == [], collection
    assert people.by_emails(db, [user.email])                  # the organization's directory keeps them
    assert users.get(db, "user-1") is None and not sync_requests.is_deleting(rt.redis, user.id)
    assert client.get("/connections/me").status_code == 401    # signed out with it


def test_retention_forgets_events_that_ended_long_ago(db, settings):
    user = add_user(db)
    old = add_event(db, user.id, "old", NOW - timedelta(days=200), NOW - timedelta(days=200, hours=-1))
    add_event(db, user.id, "recent", NOW - timedelta(days=89), NOW - timedelta(days=89, hours=-1))
    add_event(db, user.id, "ahead", NOW + timedelta(days=3), NOW + timedelta(days=3, hours=1))

    assert sweeps.retention(db, settings, NOW) == 1
    assert sorted(e["graph_id"] for e in events.for_user(db, user.id)) == ["ahead", "recent"]
    assert old["graph_id"] not in {e["graph_id"] for e in events.for_user(db, user.id)}
    assert Settings.from_env({"CALSYNC_RETENTION_DAYS": "30"}).retention_days == 30
    with pytest.raises(ConfigError, match="RETENTION"):
        Settings.from_env({"CALSYNC_RETENTION_DAYS": "5"})     # inside the synced window: sync would re-add
