-- calsync's Redis script library: the rule for asking for a sync, written once.
--
-- One script, one SHA: service/sync/rule.py prepends the constants (DIRTY, PENDING, STREAM, JOB, AWAITING,
-- DIRTY_TTL, PENDING_TTL, LIVE) from its Python ones and runs it with EVALSHA; redis-py loads it again on
-- NOSCRIPT (a Redis restarted empty, SCRIPT FLUSH). ARGV[1] names the entry point (the table `entry` at the
-- end); no KEYS are passed: keys are derived from user and subscription ids, so this needs one Redis, not
-- Redis Cluster.
--
-- The rule. Asking for a user's sync marks the user dirty and claims the pending guard unless a live guard
-- stands. A guard is live when it reads AWAITING (a request waiting in the dispatcher's stream) or names an
-- RQ job whose status is in LIVE (queued, scheduled, deferred, started: the job will still run). Any other
-- guard (its job gone, finished, failed, canceled, or a value from before guards named jobs) is taken over.
-- Whoever claims the guard sees to it that the sync runs: `request` returns which job ids the caller must
-- enqueue; `notifications` appends {k: sync, u: user} to STREAM, and the dispatcher, once it has enqueued
-- the job, writes the job's id into the guard (`named`).

local function guard_is_live(held)
  if not held then return false end
  if held == AWAITING then return true end
  return LIVE[redis.call('HGET', JOB .. held, 'status')] == true
end

-- Mark `user` dirty and claim its guard as `claim` (a job id, or AWAITING); true when claimed.
local function ask(user, reason, claim)
  redis.call('SET', DIRTY .. user, reason, 'EX', DIRTY_TTL)
  local guard = PENDING .. user
  if redis.call('SET', guard, claim, 'NX', 'EX', PENDING_TTL) then return true end
  if guard_is_live(redis.call('GET', guard)) then return false end
  redis.call('SET', guard, claim, 'EX', PENDING_TTL)   -- its job was lost or is over: take the guard over
  return true
end

-- Whose notification this is, from our mirror of the subscription (never from the payload): the owner when
-- the SHA-256 digest of the clientState received equals the mirrored digest. Codes: 'ok'; 'm' not in the
-- mirror (unless `final`: the caller refills the mirror from MongoDB and calls again with `final`);
-- 'x' unknown subscription; 'c' clientState missing (an empty digest) or wrong.
local function verify(sub_key, digest, final)
  local rec = redis.call('HMGET', sub_key, 'u', 'c', 'r')
  local user = rec[1]
  if not user then return final and 'x' or 'm', '', false end
  if user == '' then return 'x', '', false end
  if digest == '' or digest ~= rec[2] then return 'c', '', false end
  return 'ok', user, rec[3] == '1'
end

local entry = {}

-- request_syncs: ARGV reason, then (user, job id) pairs. Per user 1 (enqueue that job now) or 0 (coalesced).
function entry.request(argv)
  local out = {}
  for i = 3, #argv, 2 do
    out[#out + 1] = ask(argv[i], argv[2], argv[i + 1]) and 1 or 0
  end
  return out
end

-- The dispatcher, after enqueueing: (user, job id) pairs. A guard still AWAITING now names its job (one a
-- sync already cleared, or another request already claimed, is left alone). Returns how many were named.
function entry.named(argv)
  local named = 0
  for i = 2, #argv, 2 do
    local guard = PENDING .. argv[i]
    if redis.call('GET', guard) == AWAITING then
      redis.call('SET', guard, argv[i + 1], 'KEEPTTL')
      named = named + 1
    end
  end
  return named
end

-- The webhook, change and lifecycle notifications alike (service/webhooks/receiver.py). ARGV: now, reason,
-- final ('1'/'0'), malformed count, the mirror's key prefix, the "seen" key prefix and TTL, the counters'
-- keys (accepted, unknown, clientState, malformed), then per item (subscription id, SHA-256 digest of its
-- clientState or '', action): action '0' a change, '1' a change that may carry rich content, 'v' verify
-- only (lifecycle: the caller decides). A verified change asks for its owner's sync (once per user) unless
-- it takes the rich path; every owner's "last notification" is stamped at most once per TTL. Returns per
-- item (code, owner): 'a' asked, 'p' asked (a rich subscription, plain item), 'r' rich, 'v' verified, or
-- verify's 'm', 'x', 'c' with an empty owner.
function entry.notifications(argv)
  local now, reason, final, malformed = argv[2], argv[3], argv[4] == '1', tonumber(argv[5])
  local sub_prefix, seen_prefix, seen_ttl = argv[6], argv[7], tonumber(argv[8])
  local out, asked, seen = {}, {}, {}
  local accepted, unknown, bad_state = 0, 0, 0
  for i = 13, #argv, 3 do
    local sub, action = argv[i], argv[i + 2]
    local code, user, rich = verify(sub_prefix .. sub, argv[i + 1], final)
    if code == 'x' then
      unknown = unknown + 1
    elseif code == 'c' then
      bad_state = bad_state + 1
    elseif code == 'ok' then
      accepted = accepted + 1
      if action == 'v' then
        code = 'v'
      elseif rich and action == '1' then
        code = 'r'
      else
        code = rich and 'p' or 'a'
        if not asked[user] then
          asked[user] = true
          if ask(user, reason, AWAITING) then
            redis.call('XADD', STREAM, '*', 'k', 'sync', 'u', user)
          end
        end
      end
      if not seen[user] then
        seen[user] = true
        if redis.call('SET', seen_prefix .. user, now, 'NX', 'EX', seen_ttl) then
          redis.call('XADD', STREAM, '*', 'k', 'seen', 'u', user, 's', sub, 'at', now)
        end
      end
    end
    out[#out + 1] = code
    out[#out + 1] = user
  end
  redis.call('INCRBY', argv[9], accepted)
  if unknown > 0 then redis.call('INCRBY', argv[10], unknown) end
  if bad_state > 0 then redis.call('INCRBY', argv[11], bad_state) end
  if malformed > 0 then redis.call('INCRBY', argv[12], malformed) end
  return out
end

local run = entry[ARGV[1]]
if not run then return redis.error_reply('calsync rule: no entry point ' .. tostring(ARGV[1])) end
return run(ARGV)
