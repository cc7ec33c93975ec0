"""Bad input from Graph (issue 21): unknown @odata.type values, missing optional fields, null where an object is
expected, 10,000 attendees, a 2 MB event: a clear log line and the event skipped or trimmed, never a crashed round
or a lost cursor."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from service.store import calendars, users
from tests.support.connect import connect_user, emulated_user


def when(days: int, hours: int = 10) -> dict:
    moment = (datetime.now(UTC) + timedelta(days=days)).replace(hour=hours, minute=0, second=0, microsecond=0)
    return {"dateTime": moment.strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": "UTC"}


def raw(event_id: str, **fields) -> dict:
    return {"@odata.type": "#microsoft.graph.event", "id": event_id, "subject": f"Raw {event_id}",
            "start": when(2), "end": when(2, 11), "lastModifiedDateTime": "2026-01-01T00:00:00Z", **fields}


def test_a_round_full_of_bad_entries_stores_what_it_can_says_what_it_skipped_and_keeps_its_cursor(stack, caplog):
    control = stack.emulator.control
    person = emulated_user(stack, mail="bo@contoso.com")
    control.create_event(person["id"], {"subject": "Real one", "start": when(1), "end": when(1, 11)})
    user_id = connect_user(stack, person["id"])
    stack.run_jobs()
    crowd = [{"emailAddress": {"address": f"p{n}@contoso.com", "name": f"P{n}"}, "type": "required",
              "status": {"response": "none"}} for n in range(10_000)]
    control.inject_delta(person["id"], [
        raw("unknown-type", **{"@odata.type": "#microsoft.graph.eventMessage"}),
        {"@odata.type": "#microsoft.graph.event", "id": "bare"},                     # optional fields missing
        raw("null-start", start=None),
        raw("null-objects", organizer=None, attendees=None, responseStatus=None, location=None, body=None),
        raw("crowd", attendees=crowd),
        raw("huge", subject="S" * 10_000, body={"contentType": "html", "content": "x" * 2_000_000}),
        "not an object", 42, None, {"id": None}, {"id": "x" * 5_000},
    ])
    control.create_event(person["id"], {"subject": "After", "start": when(3), "end": when(3, 11)})
    control.wait_idle()
    before = calendars.for_user(stack.runtime.db, user_id)[0].delta_link

    with caplog.at_level(logging.WARNING, logger="service.store.events"):
        stack.run_jobs()

    stored = {d["graph_id"]: d for d in stack.runtime.db.events.find({"user_id": user_id})}
    subjects = {d.get("subject") for d in stored.values()}
    assert {"Real one", "After"} <= subjects                                   # the round went on
    assert "unknown-type" not in stored and "null-start" not in stored
    assert stored["null-objects"]["organizer"] == {"name": None, "email": None}
    assert stored["null-objects"]["attendees"] == [] and "body" not in stored["null-objects"]
    assert len(stored["crowd"]["attendees"]) == 500
    assert len(stored["huge"]["subject"]) == 1_000 and "body" not in stored["huge"]
    assert stored["bare"]["graph_id"] == "bare"
    user = users.get(stack.runtime.db, user_id)
    assert user.sync.last_result == "delta" and user.sync.error_count == 0
    after = calendars.for_user(stack.runtime.db, user_id)[0].delta_link
    assert after and after != before                                            # the cursor moved on
    logged = caplog.text
    assert "not a usable event (type '#microsoft.graph.eventMessage')" in logged
    assert "its start or end is not a dateTimeTimeZone" in logged
    assert "lists 10000 attendees; kept the first 500" in logged
    assert "10000-character subject; kept 1000" in logged
    assert logged.count("not a usable event") >= 5                              # and each junk entry too
