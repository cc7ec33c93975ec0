"""Every calendar a user has, against the emulator on the wire server: listing, per-calendar delta, one
subscription per mailbox, calendars added, renamed and deleted in Outlook (also mid-round), shared copies
off by default, turning calendars on and off, and Outlook's per-mailbox concurrency limit."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from service.graph import Throttled
from service.store import calendars, users
from service.store import events as events_store
from service.sync import rounds, runner, sweeps
from service.sync.requests import request_sync
from tests.support.connect import connect_session, connect_user, emulated_user

ISO = "%Y-%m-%dT%H:%M:%SZ"


def body(subject: str, days: float = 1, hours: int = 10) -> dict:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=days)
    start = start.replace(hour=hours)
    end = start + timedelta(minutes=30)
    return {"subject": subject, "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
            "end": {"dateTime": end.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}}


def truth(stack, user_id: str, calendar_id: str) -> set[str]:
    start, end = (w.strftime(ISO) for w in rounds.window_for(stack.settings, datetime.now(UTC)))
    return {e["id"] for e in stack.emulator.control.calendar(user_id, start, end, calendar_id=calendar_id)
            if not e.get("isCancelled")}


def stored(stack, user_id: str, calendar_id: str | None = None) -> set[str]:
    query = {"user_id": user_id} | ({"calendar_id": calendar_id} if calendar_id else {})
    return {e["graph_id"] for e in stack.runtime.db.events.find(query)}


@pytest.fixture
def ana(stack):
    """Ana: her default calendar, a second one of hers, and a copy of a calendar Ben shares with her."""
    control = stack.emulator.control
    ana = emulated_user(stack, mail="ana@contoso.com")
    ben = emulated_user(stack, mail="ben@contoso.com")
    projects = control.create_calendar(ana["id"], "Projects")
    shared = control.create_calendar(ana["id"], "Ben's team", owner_user_id=ben["id"])
    default_id = next(c["id"] for c in control.calendars(ana["id"]) if c["isDefaultCalendar"])
    control.create_events(ana["id"], [body("Standup", d) for d in range(1, 4)])
    control.create_events(ana["id"], [body("Project sync", d, 14) for d in range(1, 3)], calendar_id=projects["id"])
    control.create_events(ben["id"], [body("Ben's planning", 2, 9)], calendar_id=shared["sourceCalendarId"])
    return {"id": ana["id"], "default": default_id, "projects": projects["id"], "shared": shared["id"],
            "ben": ben["id"], "shared_source": shared["sourceCalendarId"]}


def test_every_own_calendar_is_listed_and_read_and_a_shared_one_is_listed_but_off(stack, ana):
    user_id = connect_user(stack, ana["id"])
    stack.run_jobs()

    listed = {c.calendar_id: c for c in calendars.for_user(stack.runtime.db, user_id)}
    assert set(listed) == {ana["default"], ana["projects"], ana["shared"]}
    assert listed[ana["default"]].is_default and listed[ana["default"]].enabled
    assert listed[ana["projects"]].is_own and listed[ana["projects"]].enabled
    assert not listed[ana["shared"]].is_own and not listed[ana["shared"]].enabled
    assert listed[ana["shared"]].owner_email == "ben@contoso.com"
    for calendar in (ana["default"], ana["projects"]):
        assert stored(stack, user_id, calendar) == truth(stack, user_id, calendar) != set()
        assert listed[calendar].delta_link and "$deltatoken" in listed[calendar].delta_link
    assert stored(stack, user_id) == truth(stack, user_id, ana["default"]) | truth(stack, user_id, ana["projects"])
    # One subscription for the whole mailbox (the documented resource for events), none per calendar.
    active = [s for s in stack.emulator.control.subscriptions() if s["status"] == "active"]
    assert [s["resource"].split("?")[0] for s in active] == [f"users/{user_id}/events"]


def test_a_change_on_a_second_calendar_is_notified_and_synced(stack, ana):
    user_id = connect_user(stack, ana["id"])
    stack.run_jobs()
    control = stack.emulator.control

    added = control.create_event(user_id, body("Late project call", 2, 16), calendar_id=ana["projects"])
    control.wait_idle(timeout=20)
    stack.run_jobs()

    doc = events_store.get(stack.runtime.db, user_id, added["id"])
    assert doc is not None and doc["calendar_id"] == ana["projects"]
    assert stored(stack, user_id, ana["projects"]) == truth(stack, user_id, ana["projects"])


def test_calendars_added_renamed_and_deleted_in_outlook_are_noticed(stack, ana):
    user_id = connect_user(stack, ana["id"])
    stack.run_jobs()
    control, db = stack.emulator.control, stack.runtime.db
    travel = control.create_calendar(user_id, "Travel")
    control.create_events(user_id, [body("Flight", 3, 7)], calendar_id=travel["id"])
    control.rename_calendar(user_id, ana["projects"], "Projects 2027")
    old = stored(stack, user_id, ana["projects"])
    assert old

    users.record_calendars_refreshed(db, user_id, datetime.now(UTC) - timedelta(days=1))   # the periodic refresh
    request_sync(stack.runtime.redis, user_id, "test")
    stack.run_jobs()

    names = {c.calendar_id: c.name for c in calendars.for_user(db, user_id)}
    assert names[travel["id"]] == "Travel" and names[ana["projects"]] == "Projects 2027"
    assert stored(stack, user_id, travel["id"]) == truth(stack, user_id, travel["id"]) != set()

    control.delete_calendar(user_id, ana["projects"])
    control.wait_idle(timeout=20)   # its events' deletions are notified; the next round's 404 drops it
    request_sync(stack.runtime.redis, user_id, "test")
    stack.run_jobs()

    assert ana["projects"] not in {c.calendar_id for c in calendars.for_user(db, user_id)}
    assert stored(stack, user_id, ana["projects"]) == set()
    assert users.get(db, user_id).connected and users.get(db, user_id).sync.last_result


def test_a_calendar_deleted_mid_round_is_dropped_and_the_others_still_sync(stack, ana, monkeypatch):
    user_id = connect_user(stack, ana["id"])
    control = stack.emulator.control
    control.create_events(user_id, [body(f"Review {n}", 1 + n % 20, 8 + n % 9) for n in range(120)],
                          calendar_id=ana["projects"])
    real = events_store.apply_changes
    pages = []

    def apply_then_delete(db, uid, items, now, calendar_id=None, removals=None):
        result = real(db, uid, items, now, calendar_id, removals)
        if calendar_id == ana["projects"]:
            pages.append(1)
            if len(pages) == 1:
                control.delete_calendar(user_id, ana["projects"])   # between this page and the next
        return result

    monkeypatch.setattr(events_store, "apply_changes", apply_then_delete)
    stack.run_jobs()

    assert pages == [1]                     # the next page was 404 ErrorItemNotFound: the round stopped there
    assert ana["projects"] not in {c.calendar_id for c in calendars.for_user(stack.runtime.db, user_id)}
    assert stored(stack, user_id, ana["projects"]) == set()
    assert stored(stack, user_id, ana["default"]) == truth(stack, user_id, ana["default"]) != set()
    assert users.get(stack.runtime.db, user_id).sync.error_count == 0


def test_turning_calendars_on_and_off_from_the_settings_page(stack, ana):
    user_id, session = connect_session(stack, ana["id"])
    stack.run_jobs()
    db = stack.runtime.db
    listed = {c.calendar_id: c for c in calendars.for_user(db, user_id)}
    page = session.get(f"{stack.url}/digest/settings", timeout=10).text
    assert "Ben&#39;s team" in page and "shared by ben@contoso.com" in page
    token = page.split('name="t" value="')[1].split('"')[0]
    assert stored(stack, user_id, ana["projects"])

    # Projects off, Ben's shared calendar on, and an id that is not one of Ana's: ignored.
    other = emulated_user(stack, mail="cy@contoso.com")
    calendars.upsert_listed(db, other["id"], [{"calendar_id": "cy-cal", "name": "Cy", "owner_email": None,
                                                "is_default": True, "is_own": True}])
    cy_key = calendars.for_user(db, other["id"])[0].key
    form = {"t": token, "calendar": [listed[ana["default"]].key, listed[ana["shared"]].key, cy_key, "junk"]}
    saved = session.post(f"{stack.url}/digest/settings/calendars", data=form, timeout=10)
    assert saved.status_code == 200 and "Calendars saved." in saved.text
    assert stored(stack, user_id, ana["projects"]) == set()          # deleted at once
    stack.run_jobs()

    now = {c.calendar_id: c for c in calendars.for_user(db, user_id)}
    assert not now[ana["projects"]].enabled and now[ana["projects"]].delta_link is None
    assert stored(stack, user_id, ana["projects"]) == set()
    assert now[ana["shared"]].enabled and now[ana["shared"]].last_error is None
    assert stored(stack, user_id, ana["shared"]) == truth(stack, user_id, ana["shared"]) != set()
    assert calendars.for_user(db, other["id"])[0].enabled                # Cy's untouched
    # The shared copy sends no notifications: the poll sweep reads it once it is due.
    ben_event = stack.emulator.control.create_event(ana["ben"], body("Ben's second", 3, 11),
                                                    calendar_id=ana["shared_source"])
    assert sweeps.polled_calendars(db, stack.runtime.redis, datetime.now(UTC)) == 0   # just read
    assert sweeps.polled_calendars(db, stack.runtime.redis, datetime.now(UTC) + timedelta(minutes=16)) == 1
    stack.run_jobs()
    assert ben_event["id"] in stored(stack, user_id, ana["shared"])
    assert stored(stack, user_id, ana["shared"]) == truth(stack, user_id, ana["shared"])


def test_no_more_than_four_requests_in_flight_per_mailbox_across_clients(stack, ana):
    """The emulator enforces Outlook's MailboxConcurrency limit; the gate keeps every client under it."""
    user_id = connect_user(stack, ana["id"])
    stack.run_jobs()
    control = stack.emulator.control
    control.set_faults(slow_rate=1.0, slow_seconds=0.3, path_prefix="/users/")
    control.set_limits(mailbox_concurrency=4)
    path = f"users/{user_id}/calendars"
    errors, done = [], []

    def call(client) -> None:
        try:
            client.get_json(path)
            done.append(1)
        except Throttled as exc:
            errors.append(exc)

    def burst(make_client) -> None:
        threads = [threading.Thread(target=call, args=(make_client(),)) for _ in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)

    def ungated():
        client = stack.runtime.tokens.graph(user_id)
        client.gate, client.max_attempts = None, 1
        return client

    burst(ungated)
    assert errors and all(e.status == 429 for e in errors)   # without the gate Outlook refuses the fifth
    errors.clear()
    control.set_limits(mailbox_concurrency=4)                 # statistics start over

    burst(lambda: stack.runtime.tokens.graph(user_id))

    control.clear_faults()
    assert errors == [] and len(done) >= 10
    mailbox = next(m for m in control.limits()["mailboxes"] if m["mailbox_id"] == user_id)
    assert mailbox["peak_concurrency"] == 4 and not any(mailbox["throttled"].values())


def test_a_round_that_fails_after_listing_the_calendars_still_records_when_it_listed_them(stack):
    """The listing's time is stored with the round's outcome (one write), also when the round then fails: the
    next round does not list the calendars again before their refresh interval."""
    alice = emulated_user(stack, mail="alice@contoso.com")
    user_id = connect_user(stack, alice["id"])
    db = stack.runtime.db
    calendars.clear_cursor(db, user_id)   # connected, never synced: the round lists the calendars first
    db.users.update_one({"_id": user_id}, {"$unset": {"sync.calendars_refreshed_at": ""}})
    stack.emulator.control.set_faults(path_prefix=f"/users/{user_id}/calendars/", script=[{"status": 500}] * 8)
    before = datetime.now(UTC)

    with pytest.raises(Exception, match="500"):
        runner.sync_user(db, stack.runtime.redis, stack.settings, stack.runtime.graph_for, user_id, "job-1")

    user = users.get(db, user_id)
    assert user.sync.last_result == "error" and user.sync.calendars_refreshed_at is not None
    assert user.sync.calendars_refreshed_at >= before - timedelta(seconds=1)
