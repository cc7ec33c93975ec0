"""The four events, from where they happen: a real connect through the emulator, a disconnect, a token that
must be renewed, a deletion of all of a user's data, a digest sent, and meeting prep."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from rq import Queue
from standardwebhooks import Webhook

from service import outbox, queues
from service.digest import send
from service.identity.tokens import require_reconnect
from service.outbound import endpoints
from service.store import utcnow
from service.store.events import MeetingChanges
from service.subscriptions import certificate
from service.workers import jobs
from tests.support.connect import connect_user, emulated_user
from tests.support.factories import add_event, add_people, add_user, attendee


def payloads(receiver, secret, count):
    got = receiver.wait_for(count)
    assert len(got) == count, [json.loads(r.body)["type"] for r in got]
    return [Webhook(secret).verify(r.body, r.headers) for r in got]


def test_connecting_through_the_emulator_sends_connected_then_the_first_rounds_meetings(make_stack, receiver):
    with make_stack(outbound_allow_private=True, outbound_timeout=1.0) as stack:
        created = endpoints.register(stack.runtime.db, stack.settings, receiver.url, None)
        alice = emulated_user(stack, mail="alice@contoso.com")
        start = (datetime.now(UTC) + timedelta(days=1)).replace(hour=15, minute=0, second=0, microsecond=0)
        made = [stack.emulator.control.create_event(alice["id"], {
            "subject": f"Private plans {n}", "body": {"contentType": "text", "content": "secret body"},
            "start": {"dateTime": (start + timedelta(hours=n)).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
            "end": {"dateTime": (start + timedelta(hours=n, minutes=30)).strftime("%Y-%m-%dT%H:%M:%S"),
                    "timeZone": "UTC"}}) for n in range(2)]

        user_id = connect_user(stack, alice["id"])
        stack.run_jobs()
        stack.run_jobs()

        received = payloads(receiver, created.secret, 2)
    by_type = {p["type"]: p for p in received}
    assert by_type["connection.status_changed"]["data"] | {"since": None} == {
        "status": "connected", "previous_status": None, "reason": "connected", "since": None}
    changed = by_type["meetings.changed"]
    assert changed["user_id"] == user_id and changed["data"]["updated"] == [] and changed["data"]["deleted"] == []
    assert sorted(changed["data"]["created"]) == sorted(e["id"] for e in made)
    assert by_type["connection.status_changed"]["sequence"] < changed["sequence"]
    raw = " ".join(r.body for r in receiver.requests)
    assert "Private plans" not in raw and "secret body" not in raw and "access_token" not in raw


def test_disconnect_reconnect_required_and_deleting_everything_are_status_changes(rt, endpoint, receiver, run_jobs):
    _, secret = endpoint
    user = add_user(rt.db, email="kim@example.com")
    add_event(rt.db, user.id, "m1", utcnow(), utcnow() + timedelta(minutes=30))
    outbox.meetings_changed(rt.db, rt.redis, user.id, _changes(created={"m1"}))

    require_reconnect(rt.db, rt.redis, user.id, "invalid_grant")
    require_reconnect(rt.db, rt.redis, user.id, "invalid_grant")       # already: nothing new
    rt.connections.disconnect(user.id, purge=False)
    rt.connections.disconnect(user.id, purge=False)                    # already: nothing new
    rt.connections.delete_all_data(user.id)
    run_jobs()

    got = payloads(receiver, secret, 3)      # the meetings.changed still queued went with the user's data
    statuses = [(p["data"]["previous_status"], p["data"]["status"], p["data"]["reason"]) for p in got]
    assert statuses == [("connected", "needs_reconnect", "invalid_grant"),
                        ("needs_reconnect", "disconnected", "disconnected by the user"),
                        ("disconnected", "disconnected", "data_deleted")]
    assert [p["sequence"] for p in got] == [2, 3, 4]
    kept = {e["type"] for e in rt.db.outbound_events.find({"user_id": user.id})}
    assert kept == {"connection.status_changed"}      # the purge kept only the status changes


def test_a_sent_digest_is_an_event_with_its_date_and_count(rt, endpoint, receiver, run_jobs, smtp_inbox):
    _, secret = endpoint
    user = add_user(rt.db, email="me@example.com", time_zone="UTC")
    add_event(rt.db, user.id, "m1", datetime(2026, 7, 1, 9, tzinfo=UTC), datetime(2026, 7, 1, 10, tzinfo=UTC),
              subject="Design review", attendees=[attendee("ana@example.com")])

    assert send.deliver(rt.db, rt.settings, rt.mailer, user.id, "2026-07-01", redis=rt.redis) == "sent"
    assert send.deliver(rt.db, rt.settings, rt.mailer, user.id, "2026-07-01", redis=rt.redis) == "already-handled"
    run_jobs()

    (digest,) = payloads(receiver, secret, 1)
    assert digest["type"] == "digest.sent" and digest["data"]["local_date"] == "2026-07-01"
    assert digest["data"]["meetings"] == 1 and "Design review" not in json.dumps(digest)


def test_meeting_prep_due_delivers_a_minimal_signed_payload(rt, endpoint, receiver, run_jobs):
    _, secret = endpoint
    start = datetime(2026, 7, 1, 15, tzinfo=UTC)

    outbox.prep_due(rt.db, rt.redis, "user-1", "AAMkAGI2", start, ["ana@example.com"],
                    prep_at=start - timedelta(minutes=30))
    run_jobs()

    (prep,) = payloads(receiver, secret, 1)
    assert prep["data"] == {"meeting_id": "AAMkAGI2", "start": "2026-07-01T15:00:00Z",
                            "prep_at": "2026-07-01T14:30:00Z", "matched_attendees": ["ana@example.com"],
                            "channels": ["email"]}


def _changes(**sets):
    return MeetingChanges(**{name: set(ids) for name, ids in sets.items()})


def test_a_rich_notification_applied_without_a_sync_is_a_meetings_changed_too(make_stack, receiver, tmp_path):
    cert, key = tmp_path / "rich-cert.pem", tmp_path / "rich-key.pem"
    certificate.create_certificate(cert, key)
    with make_stack(rich_notifications=True, rich_cert_path=str(cert), rich_key_path=str(key),
                    outbound_allow_private=True, outbound_timeout=1.0) as stack:
        control = stack.emulator.control
        user_id = connect_user(stack, emulated_user(stack, mail="alice@contoso.com")["id"])
        stack.run_jobs()
        event = control.create_event(user_id, _event_body("Rich planning"))
        control.wait_idle(timeout=20)
        stack.run_jobs()                     # new to us: the delta sync stores it
        created = endpoints.register(stack.runtime.db, stack.settings, receiver.url, ["meetings.changed"])
        control.clear_deliveries()

        control.update_event(user_id, event["id"], {"subject": "Rich planning (moved)"})
        control.wait_idle(timeout=20)
        assert [j.func_name for j in Queue(queues.SYNC, connection=stack.runtime.redis).jobs] == [queues.APPLY_RICH]
        stack.run_jobs()

        (data,) = [p["data"] for p in payloads(receiver, created.secret, 1)]
    assert data == {"created": [], "updated": [event["id"]], "deleted": [], "truncated": False}


def _event_body(subject: str) -> dict:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    return {"subject": subject, "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
            "end": {"dateTime": (start + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}}


def test_a_users_data_export_lists_the_webhook_events_about_them(rt, endpoint, client, ops_headers):
    user = add_user(rt.db, email="kim@example.com")
    outbox.digest_sent(rt.db, rt.redis, user.id, "2026-07-01", utcnow(), 2)

    export = client.get(f"/ops/api/users/{user.id}/export", headers=ops_headers)

    (event,) = json.loads(export.get_data(as_text=True))["webhook_events"]
    assert event["type"] == "digest.sent" and event["sequence"] == 1 and event["data"]["meetings"] == 2


def test_a_prep_mail_sent_by_its_job_is_a_meeting_prep_due_event(rt, endpoint, receiver, run_jobs, smtp_inbox):
    _, secret = endpoint
    add_people(rt.db)
    me = add_user(rt.db)
    start = utcnow().replace(microsecond=0) + timedelta(minutes=10)
    add_event(rt.db, me.id, "m1", start, start + timedelta(minutes=30), subject="Design review",
              attendees=[attendee("me@example.com"), attendee("ana@example.com"), attendee("x@partner.example")])

    assert jobs.send_prep(me.id, "uid-m1", start.isoformat()) == "sent"
    assert jobs.send_prep(me.id, "uid-m1", start.isoformat()) == "already-handled"
    run_jobs()

    (due,) = payloads(receiver, secret, 1)
    assert due["type"] == "meeting.prep_due" and due["user_id"] == me.id and len(smtp_inbox.messages) == 1
    assert due["data"]["meeting_id"] == "m1" and due["data"]["meeting_key"] == "uid-m1"
    assert due["data"]["start"] == outbox.iso(start) and due["data"]["matched_attendees"] == ["ana@example.com"]
    assert "Design review" not in receiver.requests[0].body
