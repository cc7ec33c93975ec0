"""Sync jobs against the Graph emulator (over HTTPS on loopback), drained by a real RQ worker on real Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from rq.registry import ScheduledJobRegistry

from service import locks, queues, runtime
from service.graph import GraphError
from service.store import calendars, users
from service.sync import requests, rounds, runner
from service.workers import jobs
from tests.support.mailboxes import Mailboxes, no_secret_anywhere, soon


def differences(rt, mailboxes: Mailboxes, user_id: str) -> list[str]:
    return mailboxes.differences(rt.db, rt.settings, user_id)


def sync_info(rt, user_id):
    return users.get(rt.db, user_id).sync


def request(rt, user_id: str, reason: str = "webhook") -> bool:
    return requests.request_sync(rt.redis, user_id, reason)


def make_due(redis_conn) -> int:
    """Move every scheduled sync to now, so the next drain runs it (instead of sleeping in the test)."""
    queue = queues.get_queue(queues.SYNC, redis_conn)
    registry = ScheduledJobRegistry(queue=queue)
    ids = registry.get_job_ids()
    for job_id in ids:
        registry.schedule(queue.fetch_job(job_id), datetime.now(UTC) - timedelta(seconds=1))
    return len(ids)


def test_backfill_stores_the_window_field_by_field_without_bodies(rt, mailbox, mailboxes, run_jobs):
    user_id = mailbox("alice")
    for day in range(-10, 40, 2):
        mailboxes.create(user_id, soon(day))
    mailboxes.create_series(user_id, soon(3), count=4)

    assert request(rt, user_id, "connect") is True
    run_jobs()

    assert differences(rt, mailboxes, user_id) == []
    assert no_secret_anywhere(rt.db)
    assert rt.db.events.count_documents({"user_id": user_id}) > 20
    (calendar,) = calendars.for_user(rt.db, user_id)
    assert calendar.is_default and calendar.enabled and "$deltatoken" in calendar.delta_link
    info = sync_info(rt, user_id)
    assert info.last_result == "full:initial" and info.error_count == 0
    assert info.lag_seconds >= 0 and info.last_sync_at


def test_incremental_round_applies_creates_updates_and_removals(rt, mailbox, mailboxes, run_jobs):
    user_id = mailbox("bob")
    ids = [mailboxes.create(user_id, soon(d)) for d in range(5)]
    master = mailboxes.create_series(user_id, soon(1, 15), count=3)
    series = mailboxes.occurrences(user_id, master)
    request(rt, user_id, "connect")
    run_jobs()

    mailboxes.update(user_id, ids[0], subject="renamed", move_minutes=90)
    mailboxes.delete(user_id, ids[1])
    mailboxes.update(user_id, master, subject="series renamed")   # every occurrence changes
    mailboxes.delete(user_id, series[2])                          # one occurrence goes
    mailboxes.update(user_id, ids[2], start=soon(90), minutes=60)   # moved out of the window
    mailboxes.create(user_id, soon(2))
    request(rt, user_id, "webhook")
    run_jobs()

    assert differences(rt, mailboxes, user_id) == []
    assert sync_info(rt, user_id).last_result == "delta"


def test_rejected_delta_token_triggers_a_full_resync_that_drops_vanished_events(rt, mailbox, mailboxes, run_jobs):
    user_id = mailbox("carol")
    for d in range(4):
        mailboxes.create(user_id, soon(d))
    request(rt, user_id, "connect")
    run_jobs()
    rt.db.events.insert_one({"user_id": user_id, "graph_id": "ghost", "subject": "gone",
                             "stored_at": datetime.now(UTC) - timedelta(days=1)})
    mailboxes.control.invalidate_delta(user_id, "gone")   # 410 for the delta token we hold
    mailboxes.create(user_id, soon(5))

    request(rt, user_id, "webhook")
    run_jobs()

    assert differences(rt, mailboxes, user_id) == []
    assert sync_info(rt, user_id).last_result == "full:token-rejected"


def test_window_roll_sweep_rebaselines_users_whose_window_moved(rt, mailbox, mailboxes, run_jobs):
    user_id = mailbox("dave")
    mailboxes.create(user_id, soon(1))
    request(rt, user_id, "connect")
    run_jobs()
    assert jobs.window_roll_sweep() == 0   # already on today's window
    rt.db.calendars.update_one({"user_id": user_id}, {"$set": {"window_start": datetime(2020, 1, 1, tzinfo=UTC)}})

    assert jobs.window_roll_sweep() == 1
    run_jobs()

    assert sync_info(rt, user_id).last_result == "full:window-roll"
    assert calendars.for_user(rt.db, user_id)[0].window_start == rounds.window_for(rt.settings, datetime.now(UTC))[0]


def test_request_sync_coalesces_in_redis(redis_conn):
    enqueued = [requests.request_sync(redis_conn, "u-1", "webhook") for _ in range(100)]

    assert enqueued.count(True) == 1
    assert queues.get_queue(queues.SYNC, redis_conn).count == 1
    assert redis_conn.get("calsync:dirty:u-1") == b"webhook"


def test_request_syncs_marks_a_whole_batch_dirty_and_enqueues_only_users_without_a_pending_sync(rt, redis_conn):
    request(rt, "u-2", "webhook")

    fresh = requests.request_syncs(redis_conn, ["u-1", "u-2", "u-3"], "notification")

    assert fresh == ["u-1", "u-3"]
    assert sorted(job.args[0] for job in queues.get_queue(queues.SYNC, redis_conn).jobs) == ["u-1", "u-2", "u-3"]
    assert all(redis_conn.get(f"calsync:dirty:{u}") == b"notification" for u in ("u-1", "u-2", "u-3"))


@pytest.mark.parametrize("bad", ["", None, 5, "x" * 500])
def test_request_sync_refuses_junk_user_ids(redis_conn, bad):
    with pytest.raises(ValueError):
        requests.request_sync(redis_conn, bad, "webhook")


def test_a_request_during_a_running_sync_is_not_lost(rt, mailbox, mailboxes, run_jobs, monkeypatch):
    user_id = mailbox("erin")
    mailboxes.create(user_id, soon(1))
    real_round = rounds.run_round
    late = []

    def round_with_a_notification_mid_way(*args, **kwargs):
        result = real_round(*args, **kwargs)
        if not late:   # a change and its notification land while the first round is finishing
            late.append(mailboxes.create(user_id, soon(2)))
            request(rt, user_id, "webhook")
        return result

    monkeypatch.setattr(rounds, "run_round", round_with_a_notification_mid_way)
    request(rt, user_id, "connect")
    run_jobs()

    assert late and differences(rt, mailboxes, user_id) == []


def test_a_user_locked_by_another_worker_is_not_interleaved_and_is_rechecked_once(
        rt, mailbox, mailboxes, run_jobs, redis_conn):
    user_id = mailbox("frank")
    mailboxes.create(user_id, soon(1))
    redis_conn.set(f"calsync:lock:sync:{user_id}", "another-job", px=60_000)   # a holder that never finishes

    request(rt, user_id, "connect")
    run_jobs()
    request(rt, user_id, "webhook")   # still enqueued at once: nothing blocks new requests
    run_jobs()

    assert rt.db.events.count_documents({}) == 0 and mailboxes.delta_pages(user_id) == 0
    assert redis_conn.exists(f"calsync:dirty:{user_id}")
    redis_conn.delete(f"calsync:lock:sync:{user_id}")
    assert make_due(redis_conn) == 1   # one delayed re-check, however many requests met the lock
    run_jobs()
    assert differences(rt, mailboxes, user_id) == []


def test_a_notification_after_the_last_round_is_picked_up_when_the_holder_releases(
        rt, mailbox, mailboxes, run_jobs, redis_conn, monkeypatch):
    user_id = mailbox("fay")
    mailboxes.create(user_id, soon(1))
    real_rounds = runner._rounds
    late, second = [], []

    def rounds_then_a_notification_that_meets_the_lock(*args, **kwargs):
        outcome = real_rounds(*args, **kwargs)
        if not late:   # after the holder's last look at the dirty flag, before it releases the lock
            late.append(mailboxes.create(user_id, soon(2)))
            request(rt, user_id, "webhook")
            queues.get_queue(queues.SYNC, redis_conn).empty()   # that job is the one another worker runs now:
            with monkeypatch.context() as m:                    # it meets the held lock and leaves it to us
                m.setattr(jobs, "get_current_job", lambda: None)   # (another job: not the holder's id)
                second.append(jobs.sync_user(user_id))
        return outcome

    monkeypatch.setattr(runner, "_rounds", rounds_then_a_notification_that_meets_the_lock)
    request(rt, user_id, "connect")
    run_jobs()

    assert second == ["coalesced"]
    assert late and differences(rt, mailboxes, user_id) == []


def test_losing_the_lock_mid_round_stores_no_cursor(rt, mailbox, mailboxes, redis_conn, monkeypatch):
    user_id = mailbox("gina")
    mailboxes.create_many(user_id, [soon(d % 30) for d in range(25)])
    monkeypatch.setattr(rounds, "PAGE_SIZE", 10)    # three pages
    lock = locks.lock(redis_conn, runner.LOCK_KEY.format(user_id=user_id), 60, token="me")
    assert locks.take(lock)
    pages = []

    def keep():
        pages.append(1)
        if len(pages) == 2:
            redis_conn.set(lock.name, "someone-else")   # our lock expired and another worker took it
        locks.keep(lock)

    graph = mailboxes.client(user_id)
    user = users.get(rt.db, user_id)
    rounds.refresh_calendars(rt.db, graph, user_id, user.email)
    (calendar,) = calendars.for_user(rt.db, user_id)
    with pytest.raises(locks.LockLost):
        rounds.run_round(rt.db, rt.settings, calendar, graph, keep=keep)

    assert all(c.delta_link is None for c in calendars.for_user(rt.db, user_id))
    assert 0 < rt.db.events.count_documents({}) < 25


def test_throttling_reschedules_without_blocking_other_users(rt, mailbox, mailboxes, run_jobs, redis_conn):
    slow, fast = mailbox("hank"), mailbox("ivy")
    mailboxes.create(slow, soon(1))
    mailboxes.create(fast, soon(1))
    request(rt, slow, "connect")
    mailboxes.fail_next((429, "7.5"))   # longer than the client waits inline

    request(rt, fast, "connect")
    run_jobs()

    assert differences(rt, mailboxes, fast) == []
    assert sync_info(rt, slow).last_result == "throttled"
    registry = ScheduledJobRegistry(queue=queues.get_queue(queues.SYNC, redis_conn))
    (job_id,) = registry.get_job_ids()
    throttled_at = next(datetime.fromisoformat(r["at"]) for r in mailboxes.handle.emulator.requests_log()
                        if r["status"] == 429)
    delay = registry.get_scheduled_time(job_id) - throttled_at   # counted from Graph's answer, not from now
    # Never before Retry-After (RQ keeps whole seconds: calsync rounds up), and within its jitter and that second.
    assert timedelta(seconds=7.5) <= delay < timedelta(seconds=11)
    make_due(redis_conn)
    run_jobs()
    assert differences(rt, mailboxes, slow) == []
    assert sync_info(rt, slow).error_count == 0


def test_short_fractional_retry_after_is_waited_inline(rt, mailbox, mailboxes):
    user_id = mailbox("jack")
    mailboxes.create(user_id, soon(1))
    waits = []
    mailboxes.factory = lambda uid: mailboxes.client(uid, sleep=waits.append)
    mailboxes.fail_next((429, "0.25"), (503, "1.5"), (504, None))

    assert jobs.sync_user(user_id) == "ok"

    assert waits[:2] == [0.25, 1.5] and len(waits) == 3
    assert differences(rt, mailboxes, user_id) == []


def test_a_token_refused_after_refresh_marks_the_user_needs_reconnect(rt, mailbox, mailboxes):
    user_id = mailbox("kate")
    refreshed = []

    def token(force_refresh=False):
        refreshed.append(force_refresh)
        return "tok-revoked"

    mailboxes.factory = lambda uid: mailboxes.client(uid, token=token)

    assert jobs.sync_user(user_id) == "needs_reconnect"

    assert refreshed == [False, True]
    user = users.get(rt.db, user_id)
    assert user.connection.status == users.NEEDS_RECONNECT and user.sync.error_count == 1


def test_other_graph_errors_propagate_to_rq_and_are_counted(rt, mailbox, mailboxes):
    user_id = mailbox("mia")
    mailboxes.fail_next((500, None))

    with pytest.raises(GraphError):
        jobs.sync_user(user_id)

    info = sync_info(rt, user_id)
    assert info.last_result == "error" and info.error_count == 1
    assert info.last_error == "500 InternalServerError"


def test_graph_still_unavailable_after_inline_retries_is_rescheduled(rt, mailbox, mailboxes, redis_conn):
    user_id = mailbox("max")
    mailboxes.fail_next(*[(503, "0")] * 4)

    assert jobs.sync_user(user_id) == "throttled"

    assert ScheduledJobRegistry(queue=queues.get_queue(queues.SYNC, redis_conn)).count == 1


def test_disconnected_users_are_skipped(rt, mailbox, mailboxes):
    user_id = mailbox("noah")
    users.set_connection_status(rt.db, user_id, users.DISCONNECTED)

    assert jobs.sync_user(user_id) == "skipped"
    assert mailboxes.requests_for(user_id) == 0


def test_time_zone_is_inferred_from_meetings_the_user_organizes(rt, mailbox, mailboxes):
    user_id = mailbox("olga")
    for d in range(3):
        mailboxes.create(user_id, soon(d), tz="W. Europe Standard Time")
    mailboxes.create(user_id, soon(4), tz="Tokyo Standard Time")
    for d in range(5):
        mailboxes.create(user_id, soon(d, 16), tz="Pacific Standard Time", organizer="boss@contoso.example")

    jobs.sync_user(user_id)

    user = users.get(rt.db, user_id)
    assert user.graph_time_zone == "W. Europe Standard Time" and user.time_zone == "Europe/Berlin"
    assert user.digest.next_at is not None   # the digest was planned again in the new zone


def test_an_explicit_time_zone_is_not_overwritten(rt, mailbox, mailboxes):
    user_id = mailbox("pete")
    users.choose_time_zone(rt.db, user_id, "Asia/Kolkata")
    mailboxes.create(user_id, soon(1), tz="W. Europe Standard Time")

    jobs.sync_user(user_id)

    assert users.get(rt.db, user_id).time_zone == "Asia/Kolkata"


def test_reconcile_sweep_syncs_only_users_quiet_for_too_long(rt, mailbox, mailboxes, redis_conn):
    quiet, recent, never = mailbox("quinn"), mailbox("rose"), mailbox("sam")
    users.record_sync_success(rt.db, quiet, datetime.now(UTC) - timedelta(hours=7), "delta", None)
    users.record_sync_success(rt.db, recent, datetime.now(UTC) - timedelta(minutes=5), "delta", None)

    assert jobs.reconcile_sweep() == 2

    assert {redis_conn.exists(f"calsync:sync-pending:{u}") for u in (quiet, never)} == {1}
    assert not redis_conn.exists(f"calsync:sync-pending:{recent}")


def test_a_job_in_a_process_without_a_runtime_fails_saying_how_to_start_workers(rt):
    runtime.install(None)

    with pytest.raises(runtime.NoRuntime, match="rq worker -w service.workers.worker.Worker"):
        jobs.sync_user("anyone")


def test_events_stored_before_calendars_were_known_are_filed_under_the_default_calendar(rt, mailbox, mailboxes,
                                                                                         run_jobs):
    user_id = mailbox("olga")
    kept = mailboxes.create(user_id, soon(2))
    before = datetime.now(UTC) - timedelta(days=1)
    rt.db.events.insert_many([{"user_id": user_id, "graph_id": kept, "subject": "old copy", "stored_at": before},
                              {"user_id": user_id, "graph_id": "vanished", "subject": "gone", "stored_at": before}])

    request(rt, user_id, "connect")
    run_jobs()

    (calendar,) = calendars.for_user(rt.db, user_id)
    assert {e["graph_id"]: e.get("calendar_id") for e in rt.db.events.find({"user_id": user_id})} == \
        {kept: calendar.calendar_id}
    assert differences(rt, mailboxes, user_id) == []
