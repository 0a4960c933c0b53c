--[[
  Claims hop ARGV[1] of a job for a worker. This guard is what makes a hop run at most once in
  effect: a duplicate or stale BullMQ job finds the record terminal or moved on and does nothing.
  KEYS[1] job hash, KEYS[2] webhook outbox (zset)
  ARGV[1] hop, ARGV[2] now (ms), ARGV[3] events channel, ARGV[4] record TTL (ms), ARGV[5] job id,
  ARGV[6] key prefix, ARGV[7] the hop's BullMQ job key ('' for none), ARGV[8] the line its job
  log gets when the claim succeeds, ARGV[9] how long the call may hold its least-busy lease (ms),
  ARGV[10] '1' when that BullMQ job is known to exist (the fetch that claims it has just taken it)
  Returns {'missing'} | {'terminal', status} | {'moved', hop} | {'expired', 1 if a webhook event is owed} |
  {'ok', request, chain, previous status, deadline, created_at, tenant, alias}
]]
--- @include "isTerminal"
--- @include "jobEnded"
--- @include "hopLog"

local f = redis.call('HMGET', KEYS[1], 'status', 'hop', 'deadline_at', 'chain', 'started_at', 'created_at', 'tenant', 'lease', 'alias')
local status = f[1]
if not status then
  return {'missing'}
end
if isTerminal(status) then
  return {'terminal', status}
end
if tonumber(f[2]) ~= tonumber(ARGV[1]) then
  return {'moved', f[2]}
end
local now = tonumber(ARGV[2])
if f[3] and now > tonumber(f[3]) then
  redis.call('HSET', KEYS[1], 'status', 'expired', 'finished_at', ARGV[2],
    'error', '{"type":"deadline_exceeded","message":"the job passed its deadline before it could run"}')
  local owed = jobEnded(KEYS[1], KEYS[2], ARGV[6], ARGV[3], ARGV[4], ARGV[2], ARGV[5], 'expired')
  return {'expired', owed}
end
if not f[5] then
  redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[2])
else
  redis.call('HSET', KEYS[1], 'status', 'running')
end
if f[8] then
  -- Re-added, not just updated: a lease that ran out while a dead worker held the job is taken again.
  redis.call('ZADD', f[8], now + tonumber(ARGV[9]), ARGV[5])
end
hopLog(ARGV[7], ARGV[8], ARGV[10] == '1')
local requestKey = KEYS[1] .. ':request'
local request = redis.call('GET', requestKey)
if not request then
  -- A record written before the request had a key of its own: move it there.
  request = redis.call('HGET', KEYS[1], 'request')
  if request then
    redis.call('SET', requestKey, request)
    redis.call('HDEL', KEYS[1], 'request')
  end
end
return {'ok', request or 'null', f[4], status, f[3] or '', f[6] or '', f[7] or '', f[9] or ''}
