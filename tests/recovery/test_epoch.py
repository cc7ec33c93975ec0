"""The epoch check on a real Redis: an emptied Redis is found at the next check, a Redis that only went away is
not, one process recovers each loss, and a recovery whose runner died is run again."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import redis

from service.recovery import epoch
from service.recovery.epoch import MARKER, EpochWatch
from service.store import recovery as store
from service.store import utcnow


class Recoveries:
    def __init__(self, fail: int = 0):
        self.runs: list[tuple[str, str]] = []
        self.fail = fail

    def __call__(self, new_epoch: str, reason: str) -> dict:
        self.runs.append((new_epoch, reason))
        if self.fail:
            self.fail -= 1
            raise RuntimeError("MongoDB went away mid-recovery")
        return {"users": 0}


def started(db, redis_conn, recoveries=None) -> EpochWatch:
    watch = EpochWatch(db, redis_conn, recoveries or Recoveries())
    assert watch.check() == epoch.FIRST
    assert watch.check() == epoch.OK
    return watch


def test_a_first_check_records_an_epoch_and_recovers_nothing(db, redis_conn):
    recoveries = Recoveries()

    watch = started(db, redis_conn, recoveries)

    assert recoveries.runs == []
    assert store.epoch(db)["epoch"] == redis_conn.hget(MARKER, "id").decode()
    assert int(redis_conn.hget(MARKER, "seq")) >= store.epoch(db)["seq"] >= 1
    assert watch.check() == epoch.OK


def test_an_emptied_redis_is_recovered_once_at_the_next_check(db, redis_conn):
    recoveries = Recoveries()
    watch = started(db, redis_conn, recoveries)
    before = store.epoch(db)["epoch"]

    redis_conn.flushdb()
    verdict = watch.check()

    assert verdict == epoch.LOST
    assert len(recoveries.runs) == 1 and recoveries.runs[0][1] == "redis-empty"
    record = store.epoch(db)
    assert record["epoch"] != before and record["previous"] == before
    assert record["recovery"]["status"] == "done"
    assert redis_conn.hget(MARKER, "id").decode() == record["epoch"]
    assert watch.check() == epoch.OK and len(recoveries.runs) == 1


def test_a_redis_that_does_not_answer_is_an_outage_not_a_loss(db, redis_conn):
    recoveries = Recoveries()
    watch = started(db, redis_conn, recoveries)
    gone = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)   # nothing listens there
    outage = EpochWatch(db, gone, recoveries)

    assert outage.check() == epoch.OUTAGE
    assert watch.check() == epoch.OK
    assert recoveries.runs == []


def test_a_redis_that_lost_its_latest_writes_is_a_loss(db, redis_conn):
    recoveries = Recoveries()
    watch = started(db, redis_conn, recoveries)
    for _ in range(3):
        watch.check()

    redis_conn.hset(MARKER, "seq", 1)   # what a replica that lagged (or an older snapshot) would show
    verdict = watch.check()

    assert verdict == epoch.LOST
    assert recoveries.runs[0][1] == "redis-behind"


def test_many_processes_checking_at_once_recover_an_emptied_redis_once(db, redis_conn):
    recoveries = Recoveries()
    started(db, redis_conn, recoveries)
    watches = [EpochWatch(db, redis.Redis(connection_pool=redis_conn.connection_pool), recoveries) for _ in range(6)]
    redis_conn.flushdb()
    barrier = threading.Barrier(len(watches))
    verdicts = []

    def check(watch):
        barrier.wait()
        verdicts.append(watch.check())

    threads = [threading.Thread(target=check, args=(w,)) for w in watches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert verdicts.count(epoch.LOST) == 1, verdicts
    assert len(recoveries.runs) == 1
    for watch in watches:                 # and afterwards every one of them agrees
        assert watch.check() in (epoch.OK, epoch.MISMATCH)
    assert len(recoveries.runs) == 1


def test_a_recovery_that_failed_is_run_again_a_minute_later(db, redis_conn):
    recoveries = Recoveries(fail=1)
    clock = [utcnow()]
    watch = EpochWatch(db, redis_conn, recoveries, clock=lambda: clock[0])
    watch.check()

    redis_conn.flushdb()
    watch.check()
    assert store.epoch(db)["recovery"]["status"] == "pending"
    watch.check()
    assert len(recoveries.runs) == 1          # not before its minute is up
    clock[0] += timedelta(seconds=61)
    watch.check()

    assert len(recoveries.runs) == 2
    assert store.epoch(db)["recovery"]["status"] == "done"


def test_epochs_that_disagree_for_longer_than_a_transition_are_recovered(db, redis_conn):
    recoveries = Recoveries()
    seconds = [0.0]
    watch = EpochWatch(db, redis_conn, recoveries, monotonic=lambda: seconds[0])
    watch.check()

    redis_conn.hset(MARKER, mapping={"id": "someone-else", "seq": 0})   # a runner died between its two writes
    assert watch.check() == epoch.MISMATCH
    seconds[0] += epoch.MISMATCH_GRACE - 1
    assert watch.check() == epoch.MISMATCH     # still inside the time a transition takes
    seconds[0] += 2
    verdict = watch.check()

    assert verdict == epoch.LOST and recoveries.runs[0] == ("someone-else", "epoch-mismatch")
    assert store.epoch(db)["epoch"] == "someone-else"


@pytest.mark.parametrize("gap", [epoch.RESTORE_GAP + 5])
def test_a_mongodb_far_behind_redis_is_reported_not_recovered(db, redis_conn, caplog, gap):
    caplog.set_level("ERROR", logger="service.recovery.epoch")
    recoveries = Recoveries()
    watch = started(db, redis_conn, recoveries)

    redis_conn.hincrby(MARKER, "seq", gap)   # MongoDB went back to an older backup of the same epoch
    assert watch.check() == epoch.OK

    assert recoveries.runs == []
    assert "calsync recover" in caplog.text
