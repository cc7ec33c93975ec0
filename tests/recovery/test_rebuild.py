"""What the recovery rebuilds from MongoDB after Redis came back empty, in process on a real Redis: the mirror,
a sync for every connected user, the digests the tick had taken, and (through the prep tick) the preps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import parseaddr

from rq.registry import ScheduledJobRegistry

from service import queues
from service.digest import prep
from service.digest import tick as digest_tick
from service.recovery import redis_loss
from service.store import digests, utcnow
from service.store import outbound as outbound_store
from service.store import preps as preps_store
from service.store import subscriptions as subscriptions_store
from service.store.records import Subscription
from service.subscriptions import mirror
from service.sync.rule import PENDING_KEY
from tests.support.clock import digest_due_today, local_today, midday_zone
from tests.support.factories import add_event, add_people, add_user, attendee


def test_the_mirror_and_a_sync_for_every_connected_user_come_back(db, redis_conn):
    for n, status in enumerate(("connected", "connected", "disconnected")):
        add_user(db, user_id=f"user-{n}", email=f"u{n}@example.com", status=status)
        subscriptions_store.replace_for_user(db, Subscription(
            id=f"sub-{n}", user_id=f"user-{n}", expires_at=utcnow() + timedelta(days=2),
            client_state_sha256=mirror.client_state_digest(f"state-{n}").hex()))
    redis_conn.flushdb()

    counts = redis_loss.recover(db, redis_conn, utcnow())

    assert counts == {"mirrored": 3, "users": 2, "syncs_requested": 2, "digests_queued": 0, "preps_queued": 0,
                      "deliveries_queued": 0}
    found = mirror.lookup(redis_conn, db, ["sub-0"])["sub-0"]
    assert found.user_id == "user-0" and found.client_state_digest == mirror.client_state_digest("state-0")
    assert redis_conn.exists(PENDING_KEY.format(user_id="user-0"), PENDING_KEY.format(user_id="user-1")) == 2
    assert not redis_conn.exists(PENDING_KEY.format(user_id="user-2"))


def test_a_digest_the_tick_took_before_redis_was_emptied_is_sent_once(rt, db, redis_conn, run_jobs, smtp_inbox):
    zone = midday_zone()
    for n in range(3):
        add_user(db, user_id=f"user-{n}", email=f"u{n}@example.com", time_zone=zone)
        digest_due_today(db, f"user-{n}")
    today = local_today(zone).isoformat()
    assert digest_tick.tick(db, redis_conn, rt.settings, utcnow()) == 3    # next_at moved on, jobs queued
    digests.claim(db, "user-2", today)                                     # user-2's job had just started

    redis_conn.flushdb()                                                   # and the jobs are gone
    assert digest_tick.tick(db, redis_conn, rt.settings, utcnow()) == 0    # the tick alone would skip today
    queued = redis_loss.requeue_taken_digests(db, redis_conn, utcnow())
    run_jobs()

    assert queued == 3
    assert sorted(parseaddr(m["To"])[1] for m in smtp_inbox.messages) == ["u0@example.com", "u1@example.com"]
    assert digests.get(db, "user-2", today)["status"] == "sending"         # its claim is retaken when stale,
    assert redis_loss.requeue_taken_digests(db, redis_conn, utcnow()) == 1  # by a job scheduled for then
    for n in range(2):
        assert digests.get(db, f"user-{n}", today)["attempts"] == 1


def test_a_prep_queued_before_redis_was_emptied_is_derived_again_and_sent_once(rt, db, redis_conn, run_jobs,
                                                                              smtp_inbox):
    add_people(db)
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=10)   # due now with the 15-minute default
    add_user(db, user_id="user-1", email="u1@example.com")
    add_user(db, user_id="user-2", email="u2@example.com")
    for user in ("user-1", "user-2"):
        add_event(db, user, f"m-{user}", start, start + timedelta(minutes=30),
                  attendees=[attendee(f"u{user[-1]}@example.com"), attendee("ana@example.com")])
    assert prep.tick(db, redis_conn) == 2
    preps_store.claim(db, "user-2", "uid-m-user-2", start)   # user-2's job had just claimed it

    redis_conn.flushdb()
    again = prep.tick(db, redis_conn)                          # the tick derives user-1's again,
    requeued = redis_loss.requeue_unfinished_preps(db, redis_conn, utcnow())   # the recovery user-2's
    run_jobs()

    assert again == 1 and requeued == 1
    assert [parseaddr(m["To"])[1] for m in smtp_inbox.messages] == ["u1@example.com"]
    scheduled = queues.get_queue(queues.PREP, redis_conn).scheduled_job_registry
    assert len(scheduled.get_job_ids()) == 1      # user-2's runs once its claim can be retaken (5 minutes)


def test_outbound_deliveries_waiting_for_a_retry_are_scheduled_again_at_their_own_time(db, redis_conn):
    now = utcnow()
    for endpoint_id, status in (("live", outbound_store.ACTIVE), ("paused", outbound_store.PAUSED)):
        outbound_store.insert_endpoint(db, endpoint_id, "https://example.com/hook", ["digest.sent"], "", "x", now)
        outbound_store.set_endpoint_status(db, endpoint_id, status, None, now)
    due = {"overdue": now - timedelta(minutes=5), "later": now + timedelta(seconds=40), "done": now,
           "held": now - timedelta(minutes=5)}
    for sequence, (delivery_id, at) in enumerate(due.items()):
        endpoint_id = "paused" if delivery_id == "held" else "live"
        event = {"_id": f"evt-{sequence}", "type": "digest.sent", "user_id": "user-1", "sequence": sequence}
        assert outbound_store.insert_delivery(db, delivery_id, endpoint_id, event, now, timedelta(hours=24))
        db.outbound_deliveries.update_one({"_id": delivery_id}, {"$set": {"next_attempt_at": at}})
    outbound_store.finish_attempt(db, "done", outbound_store.DELIVERED, 200, None, now, None)
    redis_conn.flushdb()

    counts = redis_loss.recover(db, redis_conn, now)

    assert counts["deliveries_queued"] == 2
    queue = queues.get_queue(queues.OUTBOUND, redis_conn)
    assert [job.args for job in queue.jobs] == [("overdue",)]            # due already: at once
    scheduled = ScheduledJobRegistry(queue=queue)
    [job_id] = scheduled.get_job_ids()
    assert queue.fetch_job(job_id).args == ("later",)                    # not before its own retry time
    at = scheduled.get_scheduled_time(job_id)
    assert due["later"] <= at <= due["later"] + timedelta(seconds=1)
