"""Outlook's working hours: asked for (MailboxSettings.Read) only when the operator turns them on, read through
the emulator with a real sign-in, and never over hours the person chose."""

from __future__ import annotations

from service import queues
from service.identity.msal_app import sign_in_scopes
from service.insights.workhours import STANDARD
from service.store import workhours as workhours_store
from service.workers import jobs
from tests.support.connect import connect_user, emulated_user

TOKYO_HOURS = {"daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "saturday"],
               "startTime": "10:00:00.0000000", "endTime": "18:30:00.0000000",
               "timeZone": {"name": "Tokyo Standard Time"}}


def test_the_scope_is_not_asked_for_by_default(make_settings):
    assert "MailboxSettings.Read" not in sign_in_scopes(make_settings())
    assert sign_in_scopes(make_settings(outlook_working_hours=True))[-1] == "MailboxSettings.Read"


def test_the_connect_page_lists_the_extra_scope_only_when_turned_on(make_stack):
    with make_stack() as stack:
        assert "MailboxSettings.Read" not in stack.app.test_client().get("/connect").get_data(as_text=True)
    with make_stack(outlook_working_hours=True) as stack:
        assert "MailboxSettings.Read" in stack.app.test_client().get("/connect").get_data(as_text=True)


def test_outlook_hours_are_read_and_stored_with_their_zone_unless_the_person_chose_theirs(make_stack, db):
    with make_stack(outlook_working_hours=True) as stack:
        ada = emulated_user(stack, mail="ada@contoso.com", time_zone="Europe/Paris")
        stack.emulator.control.set_working_hours(ada["id"], TOKYO_HOURS)
        user_id = connect_user(stack, ada["id"])

        assert jobs.working_hours_sweep() == 1
        stack.run_jobs()

        assert workhours_store.get(db, user_id) == {"start": "10:00", "end": "18:30", "days": [0, 1, 2, 3, 5],
                                                    "source": "outlook", "time_zone": "Asia/Tokyo"}

        workhours_store.save(db, user_id, {"start": "08:00", "end": "12:00", "days": [0], "source": "settings"})
        assert jobs.refresh_working_hours(user_id) == "chosen"
        assert workhours_store.get(db, user_id)["source"] == "settings"


def test_someone_connected_before_the_scope_keeps_the_default_and_stays_connected(make_stack, db):
    with make_stack() as stack:
        bob = emulated_user(stack, mail="bob@contoso.com")
        user_id = connect_user(stack, bob["id"])
    with make_stack(outlook_working_hours=True) as stack:
        assert jobs.refresh_working_hours(user_id) == "not-consented"

        assert workhours_store.get(db, user_id) is None
        assert db.users.find_one({"_id": user_id})["connection"]["status"] == "connected"


def test_nothing_is_read_when_turned_off(stack, db):
    ada = emulated_user(stack, mail="ada@contoso.com")
    connect_user(stack, ada["id"])

    assert jobs.working_hours_sweep() == 0
    assert queues.REFRESH_WORKING_HOURS in queues.JOB_NAMES and STANDARD.source == "default"
