"""What the webhook does with a parsed collection: look up, verify, queue. Redis only on this path.

Change notifications take one Redis round trip per request (``receive_changes``): a server-side script
(``CHANGES_SCRIPT``) looks up every subscription in the mirror, compares the clientState digests, marks
each owner dirty, sets the pending guard and, only for owners with no sync pending, appends a request to
the dispatcher's stream (``service.sync.dispatch``); it also throttles the "last notification" stamp and
counts what was kept and dropped. When it returns, the request is in Redis and the route answers 202; no
RQ job is built on the request path (the dispatcher does that). A subscription missing from the mirror
falls back to MongoDB (read only, refilling the mirror), then a second run of the script. Rich items and
lifecycle notifications are rare and keep the plain pipelined path. Nothing here calls Graph or writes
MongoDB. Any RedisError propagates so the route answers 5xx and Graph redelivers.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from pymongo.database import Database
from redis import Redis
from rq.job import Job

from service import queues
from service.store import utcnow
from service.subscriptions import mirror
from service.subscriptions.lifecycle import LIFECYCLE_PENDING, LIFECYCLE_PENDING_TTL
from service.subscriptions.mirror import SubscriptionRef, client_state_digest
from service.sync import dispatch
from service.sync.requests import (
    AWAITING_DISPATCH,
    DIRTY_KEY,
    DIRTY_TTL,
    GUARD_IS_LIVE,
    PENDING_KEY,
    PENDING_TTL,
    request_sync,
)
from service.webhooks.notifications import (
    CLIENT_STATE,
    MALFORMED_ITEM,
    UNKNOWN_SUBSCRIPTION,
    Collection,
    Notification,
    Verdict,
    verify,
)

log = logging.getLogger(__name__)

STATS = "calsync:stats:webhook:{name}"
SEEN_KEY = "calsync:webhook:seen:{user_id}"
SEEN_EVERY = 60


def stat_key(name: str) -> str:
    return STATS.format(name=name)


CHANGES_SCRIPT = GUARD_IS_LIVE + """
local now, reason, final = ARGV[1], ARGV[2], ARGV[3] == '1'
local dirty_ttl, pending_ttl, seen_ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local malformed, n = tonumber(ARGV[7]), tonumber(ARGV[8])
local out, synced, seen = {}, {}, {}
local accepted, unknown, bad_state = 0, 0, 0
for i = 0, n - 1 do
  local sub, digest, may_rich = ARGV[9 + 3 * i], ARGV[10 + 3 * i], ARGV[11 + 3 * i]
  local rec = redis.call('HMGET', SUB_PREFIX .. sub, 'u', 'c', 'r')
  local user = rec[1]
  if not user and not final then
    out[#out + 1] = 'm'
  elseif not user or user == '' then
    unknown = unknown + 1
    out[#out + 1] = 'x'
  elseif digest == '' or digest ~= rec[2] then
    bad_state = bad_state + 1
    out[#out + 1] = 'c'
  else
    accepted = accepted + 1
    if rec[3] == '1' and may_rich == '1' then
      out[#out + 1] = 'r'
    else
      out[#out + 1] = rec[3] == '1' and 'p' or 'a'
      if not synced[user] then
        synced[user] = true
        redis.call('SET', DIRTY_PREFIX .. user, reason, 'EX', dirty_ttl)
        local guard = PENDING_PREFIX .. user
        local queue_it = redis.call('SET', guard, AWAITING, 'NX', 'EX', pending_ttl)
        if not queue_it and not guard_is_live(redis.call('GET', guard), AWAITING, JOB_PREFIX) then
          redis.call('SET', guard, AWAITING, 'EX', pending_ttl)   -- its job was lost: take the guard over
          queue_it = true
        end
        if queue_it then
          redis.call('XADD', STREAM, '*', 'k', 'sync', 'u', user)
        end
      end
    end
    if not seen[user] then
      seen[user] = true
      if redis.call('SET', SEEN_PREFIX .. user, now, 'NX', 'EX', seen_ttl) then
        redis.call('XADD', STREAM, '*', 'k', 'seen', 'u', user, 's', sub, 'at', now)
      end
    end
  end
  out[#out + 1] = user or ''
end
redis.call('INCRBY', STATS_PREFIX .. 'accepted', accepted)
if unknown > 0 then redis.call('INCRBY', STATS_PREFIX .. 'dropped:UNKNOWN', unknown) end
if bad_state > 0 then redis.call('INCRBY', STATS_PREFIX .. 'dropped:CLIENT_STATE', bad_state) end
if malformed > 0 then redis.call('INCRBY', STATS_PREFIX .. 'dropped:MALFORMED', malformed) end
return out
"""
for _name, _value in (("SUB_PREFIX", mirror.key("")), ("DIRTY_PREFIX", DIRTY_KEY.format(user_id="")),
                      ("PENDING_PREFIX", PENDING_KEY.format(user_id="")), ("SEEN_PREFIX", SEEN_KEY.format(user_id="")),
                      ("STATS_PREFIX", STATS.format(name="")), ("STREAM", dispatch.STREAM),
                      ("JOB_PREFIX", Job.redis_job_namespace_prefix), ("AWAITING", AWAITING_DISPATCH)):
    CHANGES_SCRIPT = CHANGES_SCRIPT.replace(_name, repr(_value))
for _name, _value in (("UNKNOWN", UNKNOWN_SUBSCRIPTION), ("CLIENT_STATE", CLIENT_STATE), ("MALFORMED", MALFORMED_ITEM)):
    CHANGES_SCRIPT = CHANGES_SCRIPT.replace(f":{_name}'", f":{_value}'")
_script = None   # redis-py's Script: EVALSHA, loading the script again after a Redis restart (NOSCRIPT)


def receive_changes(redis: Redis, db: Database, collection: Collection) -> Verdict:
    """Verify a change-notification collection and queue the work in one Redis round trip (a second one
    and a MongoDB read only for subscriptions missing from the mirror); returns what was kept and dropped."""
    items = collection.items
    codes = _run_changes(redis, items, collection, malformed=collection.malformed, final=False)
    missed = [n for n, (code, _) in enumerate(codes) if code == "m"]
    if missed:
        mirror.lookup(redis, db, [items[n].subscription_id for n in missed])   # refills the mirror from MongoDB
        again = _run_changes(redis, tuple(items[n] for n in missed), collection, malformed=0, final=True)
        for n, result in zip(missed, again, strict=True):
            codes[n] = result
    verdict = Verdict()
    rich = defaultdict(list)
    for item, (code, user_id) in zip(items, codes, strict=True):
        if code == "x":
            verdict.dropped[UNKNOWN_SUBSCRIPTION] += 1
        elif code == "c":
            verdict.dropped[CLIENT_STATE] += 1
        else:
            ref = SubscriptionRef(item.subscription_id, user_id, client_state_digest(item.client_state or ""),
                                  code in ("r", "p"))
            verdict.accepted.append((item, ref))
            if code == "r":
                rich[user_id].append(_rich_item(item))
    if collection.malformed:
        verdict.dropped[MALFORMED_ITEM] += collection.malformed
    for user_id, rich_items in rich.items():
        queues.enqueue(redis, queues.SYNC, queues.APPLY_RICH, user_id, rich_items, list(collection.validation_tokens))
    if verdict.dropped:
        log.warning("dropped notifications: %s", ", ".join(f"{r}={c}" for r, c in sorted(verdict.dropped.items())))
    return verdict


def _run_changes(redis: Redis, items: tuple[Notification, ...], collection: Collection, *, malformed: int,
                 final: bool) -> list[tuple[str, str]]:
    """Run ``CHANGES_SCRIPT`` over ``items``: per item (code, owner); codes a/p accepted (plain path), r accepted
    (rich path), x unknown subscription, c wrong clientState, m not in the mirror (only when not ``final``)."""
    global _script
    if _script is None:
        _script = redis.register_script(CHANGES_SCRIPT)
    args: list = [utcnow().isoformat(), "notification", "1" if final else "0", DIRTY_TTL, PENDING_TTL, SEEN_EVERY,
                  malformed, len(items)]
    rich_possible = bool(collection.validation_tokens)
    for item in items:
        may_rich = rich_possible and (item.encrypted is not None or item.change_type == "deleted")
        digest = client_state_digest(item.client_state) if item.client_state is not None else b""
        args += [item.subscription_id, digest, "1" if may_rich else "0"]
    reply = _script(args=args, client=redis)
    return [(_text(reply[k]), _text(reply[k + 1])) for k in range(0, len(reply), 2)]


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def receive_lifecycle(redis: Redis, db: Database, collection: Collection) -> Verdict:
    """Verify lifecycle notifications; ``missed`` asks for a sync, the others queue one job per subscription."""
    verdict = _verified(redis, db, collection)
    queued = set()
    for item, ref in verdict.accepted:
        event = item.lifecycle_event
        if event == "missed":
            request_sync(redis, ref.user_id, "missed")
            continue
        if (ref.subscription_id, event) in queued:
            continue
        queued.add((ref.subscription_id, event))
        guard = LIFECYCLE_PENDING.format(subscription_id=ref.subscription_id, event=event)
        if redis.set(guard, 1, nx=True, ex=LIFECYCLE_PENDING_TTL):
            queues.enqueue(redis, queues.SUBSCRIPTIONS, queues.HANDLE_LIFECYCLE, ref.subscription_id, event)
    _record(redis, verdict, "lifecycle")
    return verdict


def _verified(redis: Redis, db: Database, collection: Collection) -> Verdict:
    refs = mirror.lookup(redis, db, [item.subscription_id for item in collection.items])
    verdict = verify(collection.items, refs)
    if collection.malformed:
        verdict.dropped[MALFORMED_ITEM] += collection.malformed
    return verdict


def _rich_item(item: Notification) -> dict:
    """The primitives the rich job needs (the encrypted blob stays encrypted in Redis)."""
    return {"subscription_id": item.subscription_id, "tenant_id": item.tenant_id,
            "change_type": item.change_type, "resource_id": item.resource_id,
            "encrypted": dict(item.encrypted) if item.encrypted else None}


def _record(redis: Redis, verdict: Verdict, accepted_name: str) -> None:
    """Count accepted and dropped items, and stamp each owner's last notification (throttled)."""
    now = utcnow()
    pipe = redis.pipeline(transaction=False)
    pipe.incrby(stat_key(accepted_name), len(verdict.accepted))
    for reason, count in verdict.dropped.items():
        pipe.incrby(stat_key(f"dropped:{reason}"), count)
    users = {ref.user_id: ref.subscription_id for _, ref in verdict.accepted}
    for user_id in users:
        pipe.set(SEEN_KEY.format(user_id=user_id), now.isoformat(), nx=True, ex=SEEN_EVERY)
    results = pipe.execute()
    fresh_flags = results[len(results) - len(users):]
    for (user_id, subscription_id), fresh in zip(users.items(), fresh_flags, strict=True):
        if fresh:
            queues.enqueue(redis, queues.SYNC, queues.RECORD_NOTIFICATION, user_id, subscription_id, now.isoformat())
    if verdict.dropped:
        log.warning("dropped notifications: %s", ", ".join(f"{r}={c}" for r, c in sorted(verdict.dropped.items())))
