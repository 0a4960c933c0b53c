--[[
  Records the end of one hop: appends the attempt to the ledger (when there is one) and either
  ends the job (succeeded / failed), moves it to the next hop (queued), or puts it back to wait for
  the same hop (retry: rate limited or breaker open on its last target). Only the hop that holds
  the job may settle it, and never after a terminal state, so a job ends exactly once.
  KEYS[1] job hash, KEYS[2] the attempt provider's usage totals (hash), KEYS[3] webhook outbox (zset)
  ARGV[1] hop, ARGV[2] now (ms), ARGV[3] events channel, ARGV[4] record TTL (ms), ARGV[5] job id,
  ARGV[6] attempt (JSON object, or '' for none), ARGV[7] queued | retry | succeeded | failed,
  ARGV[8] prompt tokens, ARGV[9] completion tokens, ARGV[10] cost in 1e-10 USD (each '' if none),
  ARGV[11] key prefix (a batch job's batch and its tenant's totals live under it),
  ARGV[12] the month (YYYY-MM) this spend counts against, ARGV[13] the hop's BullMQ job key ('' for
  none), ARGV[14] lines for its job log (newline-separated), ARGV[15] the least-busy lease zset of the
  next target when it moves on ('' for none), ARGV[16..] field, value, ...
  Returns 0 when the job had already moved on (or is gone), 3 when it had ended meanwhile, 1 when
  applied, 2 when applied and the job's end owes a webhook event.
]]
--- @include "isTerminal"
--- @include "jobEnded"
--- @include "countAttempt"
--- @include "hopLog"
--- @include "inflight"

local f = redis.call('HMGET', KEYS[1], 'status', 'hop', 'lease')
local status = f[1]
if not status then
  return 0
end
if isTerminal(status) then
  -- Ended meanwhile (cancelled, expired): the caller records the call as late, if there was one.
  return 3
end
if tonumber(f[2]) ~= tonumber(ARGV[1]) then
  return 0
end
if ARGV[6] ~= '' then
  countAttempt(KEYS[1], KEYS[2], ARGV[11], ARGV[12], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10])
end
if #ARGV >= 16 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 16))
end
hopLog(ARGV[13], ARGV[14])
local now = tonumber(ARGV[2])
if ARGV[7] == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'queued')
  redis.call('HINCRBY', KEYS[1], 'hop', 1)
  dropLease(f[3], ARGV[5])
  if ARGV[15] ~= '' then
    redis.call('ZADD', ARGV[15], now + QUEUED_LEASE_MS, ARGV[5])
    redis.call('HSET', KEYS[1], 'lease', ARGV[15])
  elseif f[3] then
    redis.call('HDEL', KEYS[1], 'lease')
  end
elseif ARGV[7] == 'retry' then
  redis.call('HSET', KEYS[1], 'status', 'queued')
  if f[3] then
    redis.call('ZADD', f[3], now + QUEUED_LEASE_MS, ARGV[5])
  end
else
  if ARGV[7] == 'succeeded' then
    -- Affinity: the prompt prefix this job carried now points at the target that served it.
    local affinity = redis.call('HGET', KEYS[1], 'affinity')
    if affinity then
      local sep = string.find(affinity, ' ', 1, true)
      local target = cjson.decode(redis.call('HGET', KEYS[1], 'chain'))[tonumber(ARGV[1]) + 1]
      redis.call('SET', string.sub(affinity, 1, sep - 1), target, 'EX', string.sub(affinity, sep + 1))
    end
  end
  redis.call('HSET', KEYS[1], 'status', ARGV[7], 'finished_at', ARGV[2])
  return 1 + jobEnded(KEYS[1], KEYS[3], ARGV[11], ARGV[3], ARGV[4], ARGV[2], ARGV[5], ARGV[7])
end
return 1
