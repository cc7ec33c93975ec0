"""Outlook's per-mailbox limits, kept across every process: at most four Graph requests in flight for one
mailbox, and a pause for the whole mailbox once Outlook says it is throttled.

Outlook allows an app 4 concurrent requests and 10,000 requests per 10 minutes per mailbox
(graph/throttling-limits, "Outlook service limits"); going over answers 429 ``ApplicationThrottled``
("...over its MailboxConcurrency limit") with ``Retry-After``. Several workers syncing several calendars of
one user would go over without noticing, so every Graph request takes a slot first.

A slot is a member of the sorted set ``calsync:mailbox:{id}:inflight`` scored by when its lease ends, so a
process killed mid-request frees its slot after ``LEASE_SECONDS``; taking one is a single Lua script
(expire stale leases, check the pause, count, add) on Redis's clock. ``calsync:mailbox:{id}:paused`` holds
the longest ``Retry-After`` Outlook gave for the mailbox; nobody sends to it until the key expires.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from redis import Redis

log = logging.getLogger(__name__)

CONCURRENCY = 4            # Outlook: concurrent requests per app and mailbox
LEASE_SECONDS = 60         # longer than any request (10 s timeout): a SIGKILLed holder frees its slot then
INFLIGHT_KEY = "calsync:mailbox:{mailbox}:inflight"
PAUSED_KEY = "calsync:mailbox:{mailbox}:paused"

# Returns 0 with the slot taken, the pause left in ms (> 0) while the mailbox is paused, or -1 when full.
_TAKE = """
local paused = redis.call('PTTL', KEYS[2])
if paused > 0 then return paused end
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return -1 end
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 0
"""

# Extends the pause to ARGV[1] ms unless a longer one is already set.
_PAUSE = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', tonumber(ARGV[1]))
  return 1
end
return 0
"""


class MailboxBusy(Exception):  # noqa: N818 - a state, like Throttled
    """No slot (or the mailbox is paused) for longer than the caller may wait; ``retry_after`` in seconds."""

    def __init__(self, mailbox: str, retry_after: float):
        super().__init__(f"mailbox busy, retry after {retry_after:.1f}s")
        self.mailbox = mailbox
        self.retry_after = retry_after


@dataclass
class MailboxGate:
    """The slots and pauses of every mailbox, in one Redis shared by all workers."""

    redis: Redis
    limit: int = CONCURRENCY
    max_wait: float = 5.0                 # waiting longer than this goes back to the job layer (MailboxBusy)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def __post_init__(self) -> None:
        self._take = self.redis.register_script(_TAKE)
        self._pause = self.redis.register_script(_PAUSE)

    @contextmanager
    def slot(self, mailbox: str) -> Iterator[None]:
        """Hold one of the mailbox's slots for the duration of one request."""
        token = uuid.uuid4().hex
        keys = [INFLIGHT_KEY.format(mailbox=mailbox), PAUSED_KEY.format(mailbox=mailbox)]
        waited = 0.0
        while True:
            answer = int(self._take(keys=keys, args=[self.limit, LEASE_SECONDS * 1000, token]))
            if answer == 0:
                break
            delay = answer / 1000 if answer > 0 else random.uniform(0.01, 0.05)  # noqa: S311 - jitter
            if waited + delay > self.max_wait:
                raise MailboxBusy(mailbox, max(delay, 1.0))
            self.sleep(delay)
            waited += delay
        try:
            yield
        finally:
            self.redis.zrem(keys[0], token)

    def pause(self, mailbox: str, seconds: float) -> None:
        """Outlook throttled the mailbox: nobody sends to it for ``seconds`` (the longest pause wins)."""
        if self._pause(keys=[PAUSED_KEY.format(mailbox=mailbox)], args=[max(1, int(seconds * 1000))]):
            log.info("mailbox %s paused for %.1fs after a 429", mailbox, seconds)

    def in_flight(self, mailbox: str) -> int:
        """Slots held now (leases not yet expired), for operators and tests."""
        key = INFLIGHT_KEY.format(mailbox=mailbox)
        seconds, micros = self.redis.time()
        return int(self.redis.zcount(key, seconds * 1000 + micros // 1000, "+inf"))

    def paused_for(self, mailbox: str) -> float:
        left = self.redis.pttl(PAUSED_KEY.format(mailbox=mailbox))
        return max(left, 0) / 1000
