"""A Redis lease: one owner holds a key until it expires; only the owner may extend or release it.

Used for the scheduler's leadership and the per-user sync lock. Taking it is ``SET NX PX``; extending
and releasing are compare-and-set scripts, so a holder that stalled past its expiry cannot extend or
delete a lease someone else has taken since.
"""

from __future__ import annotations

from redis import Redis

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class Lease:
    def __init__(self, connection: Redis, key: str, owner: str, ttl_ms: int):
        self.connection = connection
        self.key = key
        self.owner = owner
        self.ttl_ms = ttl_ms

    def acquire(self) -> bool:
        """Take the lease, or keep it if this owner already holds it (e.g. a job re-run after a crash)."""
        if self.connection.set(self.key, self.owner, nx=True, px=self.ttl_ms):
            return True
        return self.renew()

    def renew(self) -> bool:
        return bool(self.connection.eval(_RENEW, 1, self.key, self.owner, self.ttl_ms))

    def release(self) -> None:
        self.connection.eval(_RELEASE, 1, self.key, self.owner)
