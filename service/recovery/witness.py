"""Redis as MongoDB's witness for the mail it sent: if MongoDB comes back from an older backup, the digests and
prep mails sent since are still known here, so ``calsync recover`` records them and none goes out twice.

One key per mail sent, kept eight days (longer than any backup worth restoring): ``calsync:witness:digest:{user}:
{local date}`` = the instant it was sent; ``calsync:witness:prep:{record id}`` = {u, m, s, at}. Losing both
stores at once is the one case this cannot cover (then a digest sent in between can go out again).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta

from redis import Redis
from redis.exceptions import RedisError

from service.store import utcnow

log = logging.getLogger(__name__)

DIGEST = "calsync:witness:digest:{user_id}:{local_date}"
PREP = "calsync:witness:prep:{record_id}"
KEEP = timedelta(days=8)


def digest_sent(redis: Redis, user_id: str, local_date: str, at: datetime | None = None) -> None:
    """Remember a sent digest; a Redis error is only logged (the mail went, MongoDB has the record)."""
    try:
        redis.set(DIGEST.format(user_id=user_id, local_date=local_date), (at or utcnow()).isoformat(), ex=KEEP)
    except RedisError as exc:
        log.warning("could not note digest %s of user %s in Redis (%s)", local_date, user_id, type(exc).__name__)


def prep_sent(redis: Redis, record_id: str, user_id: str, meeting: str, start: datetime,
              at: datetime | None = None) -> None:
    try:
        key = PREP.format(record_id=record_id)
        pipe = redis.pipeline()
        pipe.hset(key, mapping={"u": user_id, "m": meeting, "s": start.isoformat(), "at": (at or utcnow()).isoformat()})
        pipe.expire(key, KEEP)
        pipe.execute()
    except RedisError as exc:
        log.warning("could not note prep %s of user %s in Redis (%s)", record_id, user_id, type(exc).__name__)


def digests(redis: Redis) -> Iterator[tuple[str, str, datetime]]:
    """(user_id, local date, sent at) of every digest Redis saw sent in the last eight days."""
    prefix = DIGEST.format(user_id="", local_date="")[:-1]
    for key in redis.scan_iter(match=prefix + "*", count=1000):
        user_id, _, local_date = key.decode().removeprefix(prefix).rpartition(":")
        value = redis.get(key)
        if value:
            yield user_id, local_date, datetime.fromisoformat(value.decode())


def preps(redis: Redis) -> Iterator[tuple[str, str, str, datetime, datetime]]:
    """(record id, user_id, meeting, start, sent at) of every prep mail Redis saw sent."""
    prefix = PREP.format(record_id="")
    for key in redis.scan_iter(match=prefix + "*", count=1000):
        fields = {k.decode(): v.decode() for k, v in redis.hgetall(key).items()}
        if {"u", "m", "s", "at"} <= fields.keys():
            yield (key.decode().removeprefix(prefix), fields["u"], fields["m"], datetime.fromisoformat(fields["s"]),
                   datetime.fromisoformat(fields["at"]))
