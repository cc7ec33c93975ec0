from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from redis import exceptions as redis_errors

from service import queues
from service.digest import links, send
from service.digest import tick as jobs
from service.store import digests as digests_store
from service.store import users as users_store
from tests.support.factories import add_event, add_people, add_user, attendee


def deliver(rt, user_id: str, local_date: str, now=None) -> str:
    return send.deliver(rt.db, rt.settings, rt.mailer, user_id, local_date, now)


def _meeting(db, user_id, start, graph_id="m1", subject="Design review"):
    return add_event(db, user_id, graph_id, start, start + timedelta(minutes=30), subject=subject,
                     attendees=[attendee("ana@example.com"), attendee("room@example.com", type_="resource"),
                                attendee("new.person@partner.example", "New Person")])


def _parts(message):
    return {part.get_content_type(): part.get_content() for part in message.walk() if not part.is_multipart()}


def test_digest_arrives_over_smtp_as_multipart_text_and_html(rt, db, smtp_inbox):
    user = add_user(db, email="me@example.com", time_zone=None, graph_time_zone="Hawaiian Standard Time")
    add_people(db)
    _meeting(db, user.id, datetime(2026, 7, 1, 19, 0, tzinfo=UTC))  # 09:00 in Honolulu (UTC-10)

    assert deliver(rt, user.id, "2026-07-01") == "sent"

    [message] = smtp_inbox.messages
    assert smtp_inbox.envelopes[0][1] == ["me@example.com"]
    assert message["Subject"] == "Your day, Wed 1 Jul: 1 meeting"
    assert message["Message-ID"] == "<digest-user-1-2026-07-01@calsync>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.get_content_type() == "multipart/alternative"
    parts = _parts(message)
    assert set(parts) == {"text/plain", "text/html"}
    assert "09:00-09:30  Design review" in parts["text/plain"]
    assert "Pacific/Honolulu" in parts["text/plain"]
    assert "With: Ana, New Person (partner.example)" in parts["text/plain"]   # a named outsider keeps the name
    assert "room@example.com" not in parts["text/plain"]
    assert "\nTHE PEOPLE YOU MEET TODAY\r\n\r\nAna\r\n" in parts["text/plain"]
    assert "  * " in parts["text/plain"] and f"{rt.settings.public_url}/digest/tips?t=" in parts["text/plain"]
    assert f"{rt.settings.public_url}/meetings/" in parts["text/html"]
    assert f"{rt.settings.public_url}/digest/unsubscribe?t=" in parts["text/html"]
    # The signed opt-out link (issue 23) in both parts: it opens for this user only.
    for body in parts.values():
        assert f"{rt.settings.public_url}/opt-out?t=" in body
    token = parts["text/plain"].split("/opt-out?t=")[1].split()[0]
    assert links.read_opt_out_token(rt.settings, token) == user.id
    assert digests_store.get(db, user.id, "2026-07-01")["status"] == "sent"


def test_utc_plus_13_user_gets_their_local_date(rt, db, smtp_inbox):
    user = add_user(db, time_zone="Pacific/Tongatapu")
    add_people(db)
    _meeting(db, user.id, datetime(2026, 7, 1, 20, 0, tzinfo=UTC))  # 09:00 on 2 July in Tonga

    assert deliver(rt, user.id, "2026-07-01") == "skipped:no-meetings"
    assert deliver(rt, user.id, "2026-07-02") == "sent"

    [message] = smtp_inbox.messages
    assert "09:00-09:30  Design review" in _parts(message)["text/plain"]


def test_a_digest_is_sent_once_however_often_the_job_runs(rt, db, smtp_inbox):
    user = add_user(db)
    _meeting(db, user.id, datetime(2026, 7, 1, 9, 0, tzinfo=UTC))

    outcomes = [deliver(rt, user.id, "2026-07-01") for _ in range(3)]

    assert outcomes == ["sent", "already-handled", "already-handled"]
    assert len(smtp_inbox.messages) == 1


def test_failed_send_is_marked_failed_and_the_retry_sends(rt, db, smtp_inbox, make_settings):
    from service.runtime import Runtime

    user = add_user(db)
    _meeting(db, user.id, datetime(2026, 7, 1, 9, 0, tzinfo=UTC))
    broken = Runtime(make_settings(smtp_url="smtp://127.0.0.1:9"), db=db, redis_conn=rt.redis)

    with pytest.raises(OSError):
        deliver(broken, user.id, "2026-07-01")
    record = digests_store.get(db, user.id, "2026-07-01")
    assert record["status"] == "failed" and record["error"] == "ConnectionRefusedError"

    assert deliver(rt, user.id, "2026-07-01") == "sent"
    assert digests_store.get(db, user.id, "2026-07-01")["attempts"] == 2
    assert len(smtp_inbox.messages) == 1


def test_a_claim_left_by_a_dead_worker_is_taken_over_only_when_stale(rt, db, smtp_inbox):
    user = add_user(db)
    _meeting(db, user.id, datetime(2026, 7, 1, 9, 0, tzinfo=UTC))
    claimed = datetime.now(UTC)
    digests_store.claim(db, user.id, "2026-07-01", now=claimed)

    assert deliver(rt, user.id, "2026-07-01", now=claimed + timedelta(minutes=5)) == "already-handled"
    assert deliver(rt, user.id, "2026-07-01", now=claimed + timedelta(minutes=20)) == "sent"
    assert len(smtp_inbox.messages) == 1


def test_empty_days_send_nothing_unless_asked(rt, db, smtp_inbox):
    quiet = add_user(db, user_id="quiet", email="quiet@example.com")
    keen = add_user(db, user_id="keen", email="keen@example.com", digest={"send_empty": True})

    assert deliver(rt, quiet.id, "2026-07-01") == "skipped:no-meetings"
    assert deliver(rt, keen.id, "2026-07-01") == "sent"

    [message] = smtp_inbox.messages
    assert message["To"] == "Morgan Me <keen@example.com>"
    assert "No meetings today" in _parts(message)["text/plain"]


def test_disconnected_or_unsubscribed_users_get_nothing(rt, db, smtp_inbox):
    add_user(db, user_id="gone", email="gone@example.com", status="needs_reconnect")
    add_user(db, user_id="off", email="off@example.com", digest={"enabled": False})

    assert deliver(rt, "gone", "2026-07-01") == "skipped:not-connected"
    assert deliver(rt, "off", "2026-07-01") == "skipped:disabled"
    assert deliver(rt, "nobody", "2026-07-01") == "skipped:unknown-user"
    assert smtp_inbox.messages == []


def test_tick_enqueues_due_users_once_and_the_worker_sends(rt, db, redis_conn, smtp_inbox, run_jobs):
    now = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)  # today, whatever the hour
    # Each user's zone is chosen so that their send time (06:30 default, or 00:00) has passed locally.
    due = add_user(db, user_id="due", email="due@example.com", time_zone="UTC", digest={"time": "00:00"})
    windows = add_user(db, user_id="win", email="win@example.com", time_zone=None,
                       graph_time_zone="UTC", digest={"time": "00:00"})
    add_user(db, user_id="later", email="later@example.com", time_zone="UTC", digest={"time": "23:59"})
    add_user(db, user_id="off", email="off@example.com", digest={"enabled": False, "time": "00:00"})
    today = now.date()
    for user in (due, windows):
        _meeting(db, user.id, datetime.combine(today, datetime.min.time(), tzinfo=UTC) + timedelta(hours=12),
                 graph_id=f"m-{user.id}")

    # Two schedulers ticking at once enqueue each digest once (unique job id), then the record blocks it.
    assert jobs.tick(rt.db, rt.redis, rt.settings, now) == 2
    assert jobs.tick(rt.db, rt.redis, rt.settings, now) == 0
    queued = queues.get_queue(queues.DIGEST, redis_conn).job_ids
    assert sorted(queued) == sorted(jobs.job_id(u, today.isoformat()) for u in ("due", "win"))
    run_jobs()
    assert jobs.tick(rt.db, rt.redis, rt.settings, now) == 0
    run_jobs()

    assert sorted(m["To"] for m in smtp_inbox.messages) == ["Morgan Me <due@example.com>",
                                                           "Morgan Me <win@example.com>"]


def test_a_tick_that_dies_while_queuing_leaves_the_rest_due_for_the_next_tick(rt, db, redis_conn, monkeypatch):
    """Redis went away (or the worker was killed) in the middle of a tick: every digest it had not queued stays
    due, and the next tick queues it. Before, the tick moved everyone on first and queued after, and a tick that
    died in between lost those digests for the day (a chaos run lost some this way)."""
    now = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    for user_id in ("a", "b", "c"):
        add_user(db, user_id=user_id, email=f"{user_id}@example.com", time_zone="UTC", digest={"time": "00:00"})
    real, calls = queues.enqueue, []

    def redis_dies_at_the_second(*args, **kwargs):
        calls.append(args[3])
        if len(calls) == 2:
            raise redis_errors.ConnectionError("Connection reset by peer")
        return real(*args, **kwargs)

    monkeypatch.setattr(queues, "enqueue", redis_dies_at_the_second)
    with pytest.raises(redis_errors.ConnectionError):
        jobs.tick(rt.db, rt.redis, rt.settings, now)
    monkeypatch.undo()
    still_due = {u.id for u in users_store.digests_due(db, now, 10)}
    again = jobs.tick(rt.db, rt.redis, rt.settings, now)

    today = now.date().isoformat()
    assert still_due == {"a", "b", "c"} - {calls[0]}          # only the one queued was moved on
    assert again == 2
    assert sorted(queues.get_queue(queues.DIGEST, redis_conn).job_ids) == sorted(
        jobs.job_id(u, today) for u in ("a", "b", "c"))


def test_tick_uses_the_graph_windows_zone(rt, db):
    # 16:30 UTC is 06:30 in Honolulu (UTC-10): due there, not yet due in Tokyo's next-day sense.
    morning = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)   # 02:00 in Honolulu, 08:00 in New York
    add_user(db, user_id="hi", email="hi@example.com", time_zone=None, graph_time_zone="Hawaiian Standard Time",
             planned_at=morning)
    add_user(db, user_id="ny", email="ny@example.com", time_zone="America/New_York", planned_at=morning)

    not_yet = jobs.due_users(rt.db, rt.settings, datetime(2026, 7, 1, 16, 29, tzinfo=UTC))
    due = jobs.due_users(rt.db, rt.settings, datetime(2026, 7, 1, 16, 30, tzinfo=UTC))

    assert not_yet == [("ny", "2026-07-01")]
    assert due == [("hi", "2026-07-01")]
    assert users_store.get(db, "hi").digest.next_at == datetime(2026, 7, 2, 16, 30, tzinfo=UTC)


def test_job_ids_only_use_characters_rq_accepts():
    assert jobs.job_id("a.b:c/d", "2026-07-01") == "digest-a_b_c_d-2026-07-01"


def test_two_schedulers_and_real_workers_send_one_digest_per_user(rt, db, redis_conn, smtp_inbox, run_jobs):
    from service.workers.scheduler import PERIODIC, Scheduler

    now = datetime.now(UTC)
    user = add_user(db, time_zone="UTC", digest={"time": "00:00"})
    _meeting(db, user.id, now.replace(hour=12, minute=0, second=0, microsecond=0))
    tasks = tuple(t for t in PERIODIC if t.name == "digest-tick")
    first, second = Scheduler(redis_conn, tasks, identity="a"), Scheduler(redis_conn, tasks, identity="b")

    assert first.tick() == ["digest-tick"] and second.tick() == []
    run_jobs()  # digest_tick, then send_digest
    redis_conn.delete("calsync:scheduler:last:digest-tick")
    first.tick()
    run_jobs()

    assert len(smtp_inbox.messages) == 1
    assert digests_store.get(db, user.id, now.date().isoformat())["status"] == "sent"


def test_the_tick_sends_only_on_the_users_digest_days(rt, db):
    friday = datetime(2026, 7, 3, 5, 0, tzinfo=UTC)
    user = add_user(db, time_zone="UTC", digest={"days": [0, 1, 2, 3, 4]}, planned_at=friday)
    users_store.set_digest_preferences(db, user.id, days=[0, 1, 2, 3, 4])

    sent = [jobs.due_users(rt.db, rt.settings, friday + timedelta(days=n, hours=2)) for n in range(4)]

    assert sent == [[(user.id, "2026-07-03")], [], [], [(user.id, "2026-07-06")]]   # Fri, -, -, Mon
    assert users_store.get(db, user.id).digest.next_date == "2026-07-07"


def test_a_day_planned_before_the_user_dropped_it_is_not_sent(rt, db):
    saturday = datetime(2026, 7, 4, 5, 0, tzinfo=UTC)
    user = add_user(db, time_zone="UTC", planned_at=saturday)                  # every day: Saturday planned
    db.users.update_one({"_id": user.id}, {"$set": {"digest.days": [0, 1, 2, 3, 4]}})   # without rescheduling

    assert jobs.due_users(rt.db, rt.settings, saturday + timedelta(hours=2)) == []
    assert users_store.get(db, user.id).digest.next_date == "2026-07-06"
