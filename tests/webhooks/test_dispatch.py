"""The webhook's hot path and the dispatcher behind it, on real Redis, real RQ and real processes.

Acknowledged means in Redis: once a POST is answered 202, the owner is dirty, the pending guard is set and
the request waits in the stream, whatever happens to the web process. The dispatcher moves requests onto
RQ coalesced (one sync per user), survives its own death (entries a dead dispatcher read are claimed by
another) and a failure mid-batch, and runs in ``calsync scheduler`` (the Procfile) and in ``calsync dev``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from rq import Queue

from harness.waiting import wait_until
from service import queues
from service.app import create_app
from service.cli.devserver import DevServer
from service.runtime import Runtime
from service.store import subscriptions as store
from service.store import utcnow
from service.store.records import Subscription
from service.sync import dispatch
from service.sync.requests import request_sync, rescue_stranded

ROOT = Path(__file__).resolve().parents[2]
STATE = "state-" + "s" * 40


def sub_id(n: int) -> str:
    return f"{n:08d}-aaaa-4aaa-8aaa-{n:012d}"


def subscribe(db, n: int) -> None:
    store.replace_for_user(db, Subscription(id=sub_id(n), user_id=f"user-{n}", client_state=STATE, tenant_id="t1",
                                            resource="r", expires_at=utcnow() + timedelta(days=3)))


def body(*numbers: int) -> str:
    return json.dumps({"value": [{"subscriptionId": sub_id(n), "changeType": "updated", "clientState": STATE,
                                  "tenantId": "t1", "resource": f"Users/u/Events/e{n}",
                                  "resourceData": {"id": f"e{n}"}} for n in numbers]})


def post(client, *numbers: int):
    return client.post("/webhooks/graph", data=body(*numbers), content_type="application/json")


def syncs(conn) -> list[str]:
    return sorted(job.args[0] for job in Queue(queues.SYNC, connection=conn).jobs
                  if job.func_name == queues.SYNC_USER)


def test_an_acknowledged_notification_is_in_redis_before_any_dispatcher_runs(client, redis_conn, db):
    subscribe(db, 1)
    assert post(client, 1).status_code == 202
    # The web process could die now: everything the sync needs is in Redis already.
    assert redis_conn.get("calsync:dirty:user-1") is not None
    assert redis_conn.get("calsync:sync-pending:user-1") is not None
    entries = redis_conn.xrange(dispatch.STREAM)
    assert [fields[b"u"] for _, fields in entries if fields[b"k"] == b"sync"] == [b"user-1"]
    assert Queue(queues.SYNC, connection=redis_conn).count == 0    # no RQ job built on the request path
    assert dispatch.drain(redis_conn) == 2                          # the sync and the throttled "seen" stamp
    assert syncs(redis_conn) == ["user-1"]
    assert dispatch.backlog(redis_conn) == 0


def test_the_guard_names_the_dispatched_job_and_a_stale_one_is_taken_over(client, redis_conn, db):
    """One guard for every caller: the webhook's (awaiting dispatch), then the job the dispatcher queued; a
    guard whose job is gone (lost with a crashed worker) no longer holds the user's syncs back for an hour."""
    subscribe(db, 1)
    guard = "calsync:sync-pending:user-1"
    post(client, 1)
    assert request_sync(redis_conn, "user-1", "reconcile") is False     # awaiting dispatch counts as pending
    dispatch.drain(redis_conn)
    [job] = [j for j in Queue(queues.SYNC, connection=redis_conn).jobs if j.func_name == queues.SYNC_USER]
    assert redis_conn.get(guard).decode() == job.id
    assert request_sync(redis_conn, "user-1", "reconcile") is False     # the queued job is live

    job.delete()                                                        # the job is lost
    assert post(client, 1).status_code == 202
    assert dispatch.drain(redis_conn) >= 1
    assert syncs(redis_conn) == ["user-1"]                              # the webhook took the stale guard over


def test_a_refused_write_is_never_acknowledged(make_settings, db, redis_conn):
    """Redis failing the script (the connection drops) is a 503, never a 202, and nothing is half-written."""
    subscribe(db, 1)
    rt = Runtime(make_settings(), db=db, redis_conn=redis_conn)
    client = create_app(runtime=rt).test_client()
    original = redis_conn.execute_command

    def refuse(*args, **options):
        if args and args[0] in ("EVALSHA", "EVAL"):
            raise RedisConnectionError("connection reset")
        return original(*args, **options)

    redis_conn.execute_command = refuse
    try:
        assert post(client, 1).status_code == 503
    finally:
        redis_conn.execute_command = original
    assert redis_conn.get("calsync:dirty:user-1") is None


def test_a_burst_becomes_one_sync_per_user(client, redis_conn, db):
    for n in range(3):
        subscribe(db, n)
    for k in range(100):
        assert post(client, k % 3, (k + 1) % 3).status_code == 202
    assert redis_conn.xlen(dispatch.STREAM) == 6                     # 3 syncs + 3 "seen": the rest coalesced
    dispatch.drain(redis_conn)
    assert syncs(redis_conn) == ["user-0", "user-1", "user-2"]
    stamps = [j for j in Queue(queues.SYNC, connection=redis_conn).jobs if j.func_name == queues.RECORD_NOTIFICATION]
    assert len(stamps) == 3


def test_entries_a_dead_dispatcher_read_are_claimed_by_another(client, redis_conn, db, monkeypatch):
    subscribe(db, 1)
    post(client, 1)
    dispatch.ensure_group(redis_conn)
    read = redis_conn.xreadgroup(dispatch.GROUP, "dead-one", {dispatch.STREAM: ">"}, count=10)
    assert len(read[0][1]) == 2                 # read, never enqueued nor acknowledged: then it died
    assert dispatch.drain(redis_conn, "survivor") == 0 and syncs(redis_conn) == []   # not idle long enough yet
    monkeypatch.setattr(dispatch, "CLAIM_IDLE_MS", 50)
    wait_until(lambda: all(entry["time_since_delivered"] >= 50 for entry in
                           redis_conn.xpending_range(dispatch.STREAM, dispatch.GROUP, "-", "+", 10)),
               timeout=10, message="the dead dispatcher's entries to be idle for 50 ms")
    assert dispatch.drain(redis_conn, "survivor") == 2
    assert syncs(redis_conn) == ["user-1"]
    assert redis_conn.xpending(dispatch.STREAM, dispatch.GROUP)["pending"] == 0


def test_a_failure_mid_batch_loses_nothing(client, redis_conn, db, monkeypatch):
    subscribe(db, 1)
    post(client, 1)
    real = Queue.enqueue_many

    def broken(self, *args, **kwargs):
        raise RedisConnectionError("Redis went away mid-batch")

    monkeypatch.setattr(Queue, "enqueue_many", broken)
    with pytest.raises(RedisConnectionError):
        dispatch.dispatch_once(redis_conn, "one", block_ms=None)
    monkeypatch.setattr(Queue, "enqueue_many", real)
    monkeypatch.setattr(dispatch, "CLAIM_IDLE_MS", 0)
    assert dispatch.drain(redis_conn, "one") == 2
    assert syncs(redis_conn) == ["user-1"]


def test_the_scheduler_process_dispatches_and_restarts_without_losing_requests(client, redis_conn, redis_url, db,
                                                                                tmp_path):
    """``calsync scheduler`` (the Procfile's line) runs a dispatcher; one started after the requests, or a
    second one after the first is SIGKILLed, still moves them onto RQ."""
    for n in range(4):
        subscribe(db, n)
    post(client, 0, 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALSYNC_") and k != "MONGODB_URI"}
    env.update(PYTHONPATH=str(ROOT), REDIS_URL=redis_url, CALSYNC_DATA_DIR=str(tmp_path / "var"))
    argv = [sys.executable, "-c", "from service.cli import main; main()", "scheduler"]

    def start():
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_for(users, timeout=20.0):
        wait_until(lambda: syncs(redis_conn) == users, timeout=timeout, message=f"sync jobs for {users}")

    def waiting_in_stream() -> list[bytes]:
        return sorted(fields[b"u"] for _, fields in redis_conn.xrange(dispatch.STREAM) if fields[b"k"] == b"sync")

    first = start()
    try:
        wait_for(["user-0", "user-1"])
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL    # gone: no dispatcher runs from here on
        post(client, 2, 3)                      # nobody dispatches now: the requests wait in Redis
        assert b"user-2" in waiting_in_stream() and b"user-3" in waiting_in_stream()
        assert syncs(redis_conn) == ["user-0", "user-1"]
        second = start()
        try:
            wait_for(["user-0", "user-1", "user-2", "user-3"])
        finally:
            second.terminate()
            assert second.wait(timeout=15) == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


def test_calsync_dev_embedded_dispatches_and_syncs(rt, redis_conn, db):
    """In one process (``calsync dev`` on embedded stores) a notification reaches the worker thread's sync."""
    subscribe(db, 1)
    server = DevServer(rt, port=0, scheduler=False)
    server.start()
    try:
        client = server.app.test_client()
        assert post(client, 1).status_code == 202
        # The sync job ran (it clears the guard as it starts, the dirty flag as its round starts).
        wait_until(lambda: not redis_conn.exists("calsync:sync-pending:user-1", "calsync:dirty:user-1"),
                   timeout=20, message="the sync job to clear user-1's guard and dirty flag")
        assert dispatch.backlog(redis_conn) == 0
    finally:
        server.stop()
    assert not [t for t in server.threads if t.is_alive()]


def test_a_dirty_user_whose_sync_job_vanished_is_rescued(redis_conn):
    """Dirty, guarded by a job recorded as queued that sits in no queue (its worker died taking it): the
    rescue queues a sync; a user whose job is really queued, or who was dirtied just now, is left alone."""
    for user in ("lost", "queued", "fresh"):
        assert request_sync(redis_conn, f"user-{user}", "notification")
    sync_queue = Queue(queues.SYNC, connection=redis_conn)
    [lost] = [job for job in sync_queue.jobs if job.args == ("user-lost",)]
    redis_conn.lrem(sync_queue.key, 0, lost.id)                       # gone from the queue, still "queued"
    for user in ("lost", "queued"):
        redis_conn.expire(f"calsync:dirty:user-{user}", 86_400 - 120)   # dirty for two minutes
    redis_conn.lrem(sync_queue.key, 0, [j.id for j in sync_queue.jobs if j.args == ("user-fresh",)][0])

    assert rescue_stranded(redis_conn) == ["user-lost"]
    assert syncs(redis_conn) == ["user-lost", "user-queued"]
    assert rescue_stranded(redis_conn) == []                          # the rescued job is live now
