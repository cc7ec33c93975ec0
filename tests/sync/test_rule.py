"""The rule for asking for a sync is one script library (service/sync/rule.lua): every caller runs the same
script, and it is loaded again whenever Redis lost it (SCRIPT FLUSH, a restart)."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
import redis

from service import queues
from service.app import create_app
from service.runtime import Runtime
from service.sync import dispatch, requests, rule
from tests.support.chaos import RedisServer
from tests.support.notifications import STATE_A, STATE_B, SUB_A, SUB_B, change, subscribe


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


def test_an_unknown_entry_point_is_an_error_not_a_silent_no_op(redis_conn):
    with pytest.raises(redis.ResponseError, match="no entry point"):
        rule.call(redis_conn, "nonsense")
