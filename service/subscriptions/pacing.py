"""Subscription writes paced per tenant, across every worker: Graph's subscription service limit, kept to.

Microsoft Graph limits writes of subscriptions (POST, PATCH, DELETE; a reauthorize is a POST) per app and tenant
(graph/throttling-limits, "Subscription service limits"). Its revisions disagree on the figure: 500, 1,000 and 2,000
requests per 20 seconds (an older one 5,000); calsync takes 1,000, the one two revisions share and the emulator
enforces (``CALSYNC_SUBSCRIPTION_WRITES_PER_20_S``, ``Settings.subscription_writes_per_20_s``, changes it).
Enrolling a tenant of 20,000 mailboxes is 20,000 creates: going over the limit earns 429s and Retry-After waits for
every worker at once, staying far under it leaves the tenant waiting; so every worker takes a slot here before each
write, and together they send at the documented rate.

One key per tenant, ``calsync:pace:subscriptions:{tenant}``, holds when the next write may go (a GCRA
schedule on Redis's clock, one Lua script: no two workers get the same slot). The schedule may lag real time by
``BURST`` slots (fewer under a low limit), so an idle tenant starts with a short burst; the interval is stretched so
that even a burst followed by the steady rate stays within the limit in any 20-second window (2 % under the
limit at 1,000 writes). A 429 from Graph moves the
schedule past its Retry-After: every worker waits, not only the one that was told.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from redis import Redis

log = logging.getLogger(__name__)

WINDOW_SECONDS = 20.0
DEFAULT_WRITES_PER_WINDOW = 1_000
BURST = 20                      # writes an idle tenant may send at once
KEY = "calsync:pace:subscriptions:{tenant}"

# KEYS[1] the schedule; ARGV: interval ms, burst allowance ms, most a caller may wait ms. Returns the ms to wait
# before sending (>= 0, the slot is taken), or -(ms) when the slot would be further off than the caller may wait
# (nothing taken).
_TAKE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local interval, allowance, most = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')
if nxt < now_ms - allowance then nxt = now_ms - allowance end
local wait = nxt - now_ms
if wait < 0 then wait = 0 end
if wait > most then return -wait end
redis.call('SET', KEYS[1], tostring(nxt + interval), 'PX', math.floor(wait + allowance + interval + 60000))
return wait
"""

# KEYS[1] the schedule; ARGV[1] pause ms: no slot before now + pause.
_PAUSE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local until_ms = now_ms + tonumber(ARGV[1])
local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')
if nxt < until_ms then
  redis.call('SET', KEYS[1], tostring(until_ms), 'PX', tonumber(ARGV[1]) + 60000)
  return 1
end
return 0
"""


class PaceExceeded(Exception):  # noqa: N818 - a state, like Throttled
    """The tenant's next write slot is further off than the caller may wait; ``retry_after`` in seconds."""

    def __init__(self, tenant_id: str, retry_after: float):
        super().__init__(f"subscription writes of tenant {tenant_id} paced: retry after {retry_after:.1f}s")
        self.tenant_id = tenant_id
        self.retry_after = retry_after


@dataclass
class SubscriptionPacer:
    """Per-tenant slots for subscription writes, shared by all workers through Redis."""

    redis: Redis
    writes: int = DEFAULT_WRITES_PER_WINDOW     # per WINDOW_SECONDS, per app and tenant (Settings.subscription_...)
    burst: int | None = None      # BURST, or a fiftieth of the limit when that is less (its cost: burst / writes)
    max_wait: float = 30.0                                      # waiting longer goes back to the job layer
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def __post_init__(self) -> None:
        self._take = self.redis.register_script(_TAKE)
        self._pause = self.redis.register_script(_PAUSE)
        # A burst of ``burst`` then one write per interval: burst + (window / interval) <= writes in any window.
        if self.burst is None:
            self.burst = max(1, min(BURST, self.writes // 50))
        self.interval_ms = WINDOW_SECONDS * 1000 / (self.writes - self.burst)
        self.allowance_ms = (self.burst - 1) * self.interval_ms

    def acquire(self, tenant_id: str | None, max_wait: float | None = None) -> float:
        """Wait for the tenant's next write slot; returns the seconds waited. PaceExceeded when it is further off
        than ``max_wait`` (this pacer's unless given; after a 429's pause, say). A mailbox without a tenant (a
        personal account) is not paced."""
        if not tenant_id:
            return 0.0
        most = self.max_wait if max_wait is None else max_wait
        answer = float(self._take(keys=[KEY.format(tenant=tenant_id)],
                                  args=[self.interval_ms, self.allowance_ms, int(most * 1000)]))
        if answer < 0:
            raise PaceExceeded(tenant_id, -answer / 1000)
        if answer > 0:
            self.sleep(answer / 1000)
        return answer / 1000

    def pause(self, tenant_id: str | None, seconds: float) -> None:
        """Graph throttled a subscription write of the tenant: no worker writes before ``seconds`` have passed."""
        if tenant_id and self._pause(keys=[KEY.format(tenant=tenant_id)], args=[max(1, int(seconds * 1000))]):
            log.info("subscription writes of tenant %s paused for %.1fs after a 429", tenant_id, seconds)
