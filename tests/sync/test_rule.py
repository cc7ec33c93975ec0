"""The rule for asking for a sync is one script library (service/sync/rule.lua): every caller runs the same
script, it is loaded again whenever Redis lost it (SCRIPT FLUSH, a restart), and what it reads of RQ (a job
hash's status) agrees with RQ's own API for every state a job goes through under the pinned rq."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from datetime import timedelta

import pytest
import redis
from redis.connection import AbstractConnection
from rq import Queue
from rq.job import Job, JobStatus

from service import queues
from service.app import create_app
from service.runtime import Runtime
from service.sync import dispatch, requests, rule
from service.workers.inprocess import ThreadWorker
from tests.support.chaos import RedisServer
from tests.support.notifications import STATE_A, STATE_B, SUB_A, SUB_B, change, subscribe

OTHER_QUEUE = "rule-test"   # where the jobs a worker runs here wait, so that it never takes a sync job


def guard(conn, user: str) -> str | None:
    value = conn.get(requests.PENDING_KEY.format(user_id=user))
    return value.decode() if value is not None else None


def dirty_for_two_minutes(conn, user: str) -> None:
    conn.set(requests.DIRTY_KEY.format(user_id=user), "test", ex=requests.DIRTY_TTL - 120)


def run_burst(conn, queue_name: str) -> None:
    ThreadWorker([Queue(queue_name, connection=conn)], connection=conn).work(burst=True, logging_level="WARNING")


def test_the_script_reads_every_rq_job_state_as_rq_reports_it(redis_conn):
    """The pin's check (rq 3.0.x): for each state, RQ's public ``get_status`` says what we expect, the script
    treats a guard naming the job as live exactly for the LIVE states (request_sync coalesces or takes over),
    and the rescue (RQ's public API: queue, registries) finds the live ones where a worker will take them."""
    sync_queue = queues.get_queue(queues.SYNC, redis_conn)
    other = Queue(OTHER_QUEUE, connection=redis_conn)
    jobs: dict[str, Job] = {}
    jobs["finished"] = other.enqueue("tests.support.slow_jobs.sleep", 0)
    jobs["failed"] = other.enqueue("tests.support.slow_jobs.fail")
    run_burst(redis_conn, OTHER_QUEUE)
    jobs["queued"] = sync_queue.enqueue("tests.support.slow_jobs.sleep", 0)
    jobs["scheduled"] = sync_queue.enqueue_in(timedelta(hours=1), "tests.support.slow_jobs.sleep", 0)
    jobs["deferred"] = sync_queue.enqueue("tests.support.slow_jobs.sleep", 0, depends_on=jobs["queued"])
    jobs["canceled"] = sync_queue.enqueue("tests.support.slow_jobs.sleep", 0)
    jobs["canceled"].cancel()
    jobs["started"] = other.enqueue("tests.support.slow_jobs.hold", "rule:started", "rule:release")
    worker = threading.Thread(target=run_burst, args=(redis_conn, OTHER_QUEUE))
    worker.start()
    try:
        assert redis_conn.blpop(["rule:started"], timeout=20), "the held job never started"
        expected = {name: JobStatus(name) for name in jobs}
        assert {name: Job.fetch(job.id, connection=redis_conn).get_status() for name, job in jobs.items()} == expected
        gone = sync_queue.enqueue("tests.support.slow_jobs.sleep", 0)
        gone.delete()
        ids = {**{name: job.id for name, job in jobs.items()}, "gone": gone.id}

        claimed = {}
        for name, job_id in ids.items():
            redis_conn.set(requests.PENDING_KEY.format(user_id=f"ask-{name}"), job_id, ex=3600)
            claimed[name] = requests.request_sync(redis_conn, f"ask-{name}", "test")
            redis_conn.set(requests.PENDING_KEY.format(user_id=f"rescue-{name}"), job_id, ex=3600)
            dirty_for_two_minutes(redis_conn, f"rescue-{name}")
        rescued = {user.removeprefix("rescue-") for user in requests.rescue_stranded(redis_conn)}
    finally:
        redis_conn.rpush("rule:release", 1)
        worker.join(timeout=20)

    live = {status.value for status in rule.LIVE_STATUSES}
    assert live == {"queued", "scheduled", "deferred", "started"}
    assert {name for name, won in claimed.items() if not won} == live   # a live guard coalesces
    assert rescued == set(ids) - live                                    # and is found where RQ keeps the job
    assert not worker.is_alive()


def test_the_library_prefixes_rq_job_keys_as_rq_does(redis_conn):
    job = queues.get_queue(queues.SYNC, redis_conn).enqueue("tests.support.slow_jobs.sleep", 0)

    assert f"local JOB = '{Job.key_for('')}'" in rule.source()
    assert redis_conn.hget(Job.key_for(job.id), "status") == JobStatus.QUEUED.value.encode()


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test's own (a restart must not touch the suite's), with an append-only file."""
    server = RedisServer(tmp_path / "redis")
    yield server
    server.stop()


def scripts_cached(conn) -> int:
    return int(conn.info("memory")["number_of_cached_scripts"])


def script_loads(conn) -> int:
    """SCRIPT LOAD calls since the server started (Redis 7 counts subcommands apart; 6.2 does not)."""
    stats = conn.info("commandstats")
    return sum(entry["calls"] for name, entry in stats.items() if name in ("cmdstat_script|load", "cmdstat_script"))


def every_caller(conn, client, n: int) -> list[int]:
    """The webhook (a change and a lifecycle ``missed``), request_sync and the dispatcher, once each."""
    statuses = [client.post("/webhooks/graph", data=json.dumps({"value": [change(SUB_A, STATE_A, f"e{n}")]}),
                            content_type="application/json").status_code,
                client.post("/webhooks/graph/lifecycle", content_type="application/json", data=json.dumps(
                    {"value": [{"subscriptionId": SUB_B, "clientState": STATE_B, "lifecycleEvent": "missed"}]}
                )).status_code]
    requests.request_sync(conn, "user-c", "test")
    dispatch.drain(conn)
    return statuses


def test_one_script_serves_every_caller_and_is_loaded_again_after_a_flush_and_a_restart(own_redis, make_settings,
                                                                                        db):
    conn = redis.Redis.from_url(own_redis.url)
    client = create_app(runtime=Runtime(make_settings(), db=db, redis_conn=conn)).test_client()
    subscribe(db, SUB_A, "user-a", STATE_A)
    subscribe(db, SUB_B, "user-b", STATE_B)
    sha = hashlib.sha1(rule.source().encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1

    assert every_caller(conn, client, 1) == [202, 202]
    assert scripts_cached(conn) == 1 and conn.script_exists(sha) == [True]   # one library, whoever called

    conn.script_flush()
    assert every_caller(conn, client, 2) == [202, 202]
    assert conn.script_exists(sha) == [True]

    own_redis.kill()
    own_redis.start()        # restarted with its data (append-only file); Redis 7 keeps no scripts across it
    assert every_caller(conn, client, 3) == [202, 202]
    assert conn.script_exists(sha) == [True]
    sync_jobs = [job.args for job in queues.get_queue(queues.SYNC, conn).jobs if job.func_name == queues.SYNC_USER]
    assert sorted(sync_jobs) == [("user-a",), ("user-b",), ("user-c",)]   # the guards came back and coalesce

    own_redis.kill()
    for path in own_redis.directory.iterdir():
        if path.name != "redis.log":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    own_redis.start()        # restarted empty: no data, no scripts
    assert [every_caller(conn, client, n) for n in range(4, 9)] == [[202, 202]] * 5   # no 5xx at all
    assert script_loads(conn) == 1 and scripts_cached(conn) == 1                    # loaded once, then EVALSHA
    sync_jobs = [job.args for job in queues.get_queue(queues.SYNC, conn).jobs if job.func_name == queues.SYNC_USER]
    assert sorted(sync_jobs) == [("user-a",), ("user-b",), ("user-c",)]
    conn.close()


def test_a_change_notification_post_costs_one_round_trip_an_evalsha(own_redis, make_settings, db, monkeypatch):
    """docs/design.md, "The webhook's hot path": one Redis round trip per POST, whatever the rule decides
    (a new request, a coalesced one, a stale guard taken over)."""
    conn = redis.Redis.from_url(own_redis.url)
    client = create_app(runtime=Runtime(make_settings(), db=db, redis_conn=conn)).test_client()
    subscribe(db, SUB_A, "user-a", STATE_A)
    subscribe(db, SUB_B, "user-b", STATE_B)
    post = json.dumps({"value": [change(SUB_A, STATE_A), change(SUB_B, STATE_B), change(SUB_A, STATE_A, "e2")]})
    assert client.post("/webhooks/graph", data=post, content_type="application/json").status_code == 202  # mirrored
    conn.set(requests.PENDING_KEY.format(user_id="user-b"), "0123456789abcdef", ex=3600)   # stale: taken over
    conn.config_resetstat()
    sent = []
    send = AbstractConnection.send_packed_command
    monkeypatch.setattr(AbstractConnection, "send_packed_command",
                        lambda self, command, *args, **kwargs: sent.append(command) or send(self, command, *args,
                                                                                             **kwargs))

    statuses = [client.post("/webhooks/graph", data=post, content_type="application/json").status_code
                for _ in range(5)]

    monkeypatch.undo()
    assert statuses == [202] * 5
    assert len(sent) == 5                                           # one round trip per POST...
    assert conn.info("commandstats")["cmdstat_evalsha"]["calls"] == 5   # ...and each was the script
    # a and b from the first POST, b again when its stale guard was taken over, then nothing: coalesced.
    assert [f[b"u"] for _, f in conn.xrange(dispatch.STREAM) if f[b"k"] == b"sync"] == [b"user-a", b"user-b", b"user-b"]
    conn.close()


def test_an_unknown_entry_point_is_an_error_not_a_silent_no_op(redis_conn):
    with pytest.raises(redis.ResponseError, match="no entry point"):
        rule.call(redis_conn, "nonsense")
