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
--- @include "readRecord"
--- @include "jobEnded"
--- @include "countAttempt"
--- @include "hopLog"
--- @include "inflight"

-- Every field the steps below need (status, hop, the ledger, the tenant, and the optional lease,
-- affinity, budget alias, webhook, batch and reservation) in one read of the whole record, since
-- most of the optional ones are absent (readWhole); the record is then written once.
local rec = readWhole(KEYS[1])
local status = rec.status
if not status then
  return 0
end
if isTerminal(status) then
  -- Ended meanwhile (cancelled, expired): the caller records the call as late, if there was one.
  return 3
end
if tonumber(rec.hop) ~= tonumber(ARGV[1]) then
  return 0
end
local writes = {unpack(ARGV, 16)}
if ARGV[6] ~= '' then
  writes[#writes + 1] = 'attempts'
  writes[#writes + 1] = countAttempt(KEYS[2], ARGV[11], ARGV[12], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], rec)
end
hopLog(ARGV[13], ARGV[14])
local now = tonumber(ARGV[2])
local function write(...)
  local n, more = #writes, {...}
  for i = 1, #more do
    writes[n + i] = more[i]
  end
  redis.call('HSET', KEYS[1], unpack(writes))
end
if ARGV[7] == 'queued' then
  dropLease(rec.lease, ARGV[5])
  if ARGV[15] ~= '' then
    redis.call('ZADD', ARGV[15], now + QUEUED_LEASE_MS, ARGV[5])
    write('status', 'queued', 'hop', tonumber(ARGV[1]) + 1, 'lease', ARGV[15])
  else
    write('status', 'queued', 'hop', tonumber(ARGV[1]) + 1)
    if rec.lease then
      redis.call('HDEL', KEYS[1], 'lease')
    end
  end
elseif ARGV[7] == 'retry' then
  write('status', 'queued')
  if rec.lease then
    redis.call('ZADD', rec.lease, now + QUEUED_LEASE_MS, ARGV[5])
  end
else
  if ARGV[7] == 'succeeded' and rec.affinity then
    -- Affinity: the prompt prefix this job carried now points at the target that served it.
    local sep = string.find(rec.affinity, ' ', 1, true)
    local target = cjson.decode(redis.call('HGET', KEYS[1], 'chain'))[tonumber(ARGV[1]) + 1]
    redis.call('SET', string.sub(rec.affinity, 1, sep - 1), target, 'EX', string.sub(rec.affinity, sep + 1))
  end
  write('status', ARGV[7], 'finished_at', ARGV[2])
  return 1 + jobEnded(KEYS[1], KEYS[3], ARGV[11], ARGV[3], ARGV[4], ARGV[2], ARGV[5], ARGV[7], rec)
end
return 1
