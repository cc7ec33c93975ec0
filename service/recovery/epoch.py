"""Telling an emptied Redis from a Redis that was only unreachable, within seconds.

Redis holds a marker, ``calsync:epoch`` = ``{id, seq}``; MongoDB holds the same epoch id and the highest
``seq`` it has seen (``store.recovery``). Every scheduler process checks them every few seconds (one Redis
``HGETALL``, one MongoDB read by ``_id``) and raises ``seq`` in Redis first, then in MongoDB. So, read in that
order (MongoDB, then Redis):

- Redis or MongoDB does not answer: an outage, never a loss (the webhook answers 503 and Graph redelivers).
- The marker is gone: Redis came back empty (no persistence, a FLUSHALL, a new empty server).
- The marker's ``seq`` is below MongoDB's: Redis lost writes it had acknowledged (a failover to a replica that
  lagged, a restart from an older snapshot), so notifications acknowledged in that window may be gone too.
- The marker names another epoch than MongoDB for longer than a transition takes: the process that started a
  new epoch died half-way, or MongoDB went back to a backup; recovering again is safe either way.

One process wins each new epoch (``HSETNX`` or a watched transaction in Redis, then a compare-and-set in
MongoDB) and runs the recovery; a recovery whose runner died is retaken by the next check a minute later.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pymongo.database import Database
from pymongo.errors import PyMongoError
from redis import Redis
from redis.exceptions import RedisError, WatchError

from service.store import as_utc, utcnow
from service.store import recovery as store

log = logging.getLogger(__name__)

MARKER = "calsync:epoch"
MISMATCH_GRACE = 20.0              # seconds an epoch transition may take before a disagreement is acted on
RETAKE_AFTER = timedelta(seconds=60)   # a pending recovery untouched this long is run again
RESTORE_GAP = 720                  # heartbeats MongoDB may lag Redis (about an hour at 5 s) before we say so

OK, FIRST, OUTAGE, LOST, BUSY, MISMATCH = "ok", "first", "outage", "lost", "busy", "mismatch"


@dataclass
class EpochWatch:
    """The check every scheduler process runs each tick; ``recover(epoch, reason)`` rebuilds what Redis lost."""

    db: Database
    redis: Redis
    recover: Callable[[str, str], dict]
    clock: Callable[[], datetime] = field(default=utcnow)
    monotonic: Callable[[], float] = field(default=time.monotonic)
    mismatch_since: float | None = None
    warned_restore: bool = False

    def check(self) -> str:
        try:
            stored = store.epoch(self.db)
        except PyMongoError as exc:
            log.info("epoch check skipped: MongoDB did not answer (%s)", type(exc).__name__)
            return OUTAGE
        try:
            marker = {k.decode(): v.decode() for k, v in self.redis.hgetall(MARKER).items()}
        except RedisError as exc:
            log.info("epoch check skipped: Redis did not answer (%s)", type(exc).__name__)
            return OUTAGE
        try:
            return self._decide(stored, marker)
        except (PyMongoError, RedisError) as exc:   # a store went away mid-check: the next one decides
            log.warning("epoch check interrupted: %s", type(exc).__name__)
            return OUTAGE

    def _decide(self, stored: dict | None, marker: dict) -> str:
        if stored is None:
            return self._first(marker)
        if not marker.get("id"):
            return self._lost(stored, "redis-empty")
        if marker["id"] != stored["epoch"]:
            return self._mismatch(stored, marker)
        self.mismatch_since = None
        seq = int(marker.get("seq") or 0)
        if seq < int(stored.get("seq") or 0):
            return self._lost(stored, "redis-behind", seen=marker)
        if seq > int(stored.get("seq") or 0) + RESTORE_GAP and not self.warned_restore:
            self.warned_restore = True
            log.error("MongoDB is %d heartbeats behind Redis: was it restored from a backup? Run `calsync recover`",
                      seq - int(stored.get("seq") or 0))
        raised = self.redis.hincrby(MARKER, "seq", 1)
        store.raise_seq(self.db, stored["epoch"], raised, self.clock())
        self._retake_if_abandoned(stored)
        return OK

    def _first(self, marker: dict) -> str:
        """No epoch recorded yet: a new deployment, or the first run of this version (nothing known lost)."""
        if marker.get("id"):
            store.adopt_epoch(self.db, marker["id"], int(marker.get("seq") or 0), "first-check", self.clock())
        else:
            new = uuid.uuid4().hex
            if self.redis.hsetnx(MARKER, "id", new):
                store.start_epoch(self.db, new, 0, self.clock())
        log.info("redis epoch recorded")
        return FIRST

    def _lost(self, stored: dict, reason: str, seen: dict | None = None) -> str:
        new = uuid.uuid4().hex
        if not self._claim_marker(new, seen):
            return BUSY
        if store.replace_epoch(self.db, stored["epoch"], new, reason, self.clock()) is None:
            return BUSY   # another process moved MongoDB on meanwhile; it recovers
        log.error("Redis lost its data (%s): recovering from MongoDB (epoch %s)", reason, new)
        self._run(new, reason)
        return LOST

    def _claim_marker(self, new: str, seen: dict | None) -> bool:
        """Write the new marker only if Redis still shows what we judged (empty, or ``seen``)."""
        if seen is None:
            won = bool(self.redis.hsetnx(MARKER, "id", new))
            if won:
                self.redis.hset(MARKER, "seq", 0)
            return won
        with self.redis.pipeline() as pipe:
            try:
                pipe.watch(MARKER)
                if pipe.hget(MARKER, "id") != seen["id"].encode():
                    return False
                pipe.multi()
                pipe.delete(MARKER)
                pipe.hset(MARKER, mapping={"id": new, "seq": 0})
                pipe.execute()
            except WatchError:
                return False
        return True

    def _mismatch(self, stored: dict, marker: dict) -> str:
        now = self.monotonic()
        if self.mismatch_since is None:
            self.mismatch_since = now
        if now - self.mismatch_since < MISMATCH_GRACE:
            return MISMATCH   # most likely another process between its two writes
        self.mismatch_since = None
        if store.replace_epoch(self.db, stored["epoch"], marker["id"], "epoch-mismatch", self.clock()) is None:
            return BUSY
        log.error("Redis and MongoDB name different epochs (a recovery cut short, or MongoDB restored from a "
                  "backup: then also run `calsync recover`); recovering Redis from MongoDB")
        self._run(marker["id"], "epoch-mismatch")
        return LOST

    def _retake_if_abandoned(self, stored: dict) -> None:
        recovery = stored.get("recovery") or {}
        if recovery.get("status") != "pending":
            return
        started = as_utc(recovery.get("started_at"))
        if started is not None and started > self.clock() - RETAKE_AFTER:
            return
        if store.claim_recovery(self.db, stored["epoch"], self.clock() - RETAKE_AFTER, self.clock()):
            log.warning("retaking the recovery of epoch %s (its runner stopped)", stored["epoch"])
            self._run(stored["epoch"], stored.get("reason") or "retaken")

    def _run(self, epoch: str, reason: str) -> None:
        try:
            counts = self.recover(epoch, reason)
        except Exception:  # left pending: the next check a minute on runs it again (every step is idempotent)
            log.exception("recovery of epoch %s failed; it will be retried", epoch)
            return
        store.finish_recovery(self.db, epoch, counts, self.clock())
        log.warning("recovery of epoch %s done: %s", epoch, counts)
