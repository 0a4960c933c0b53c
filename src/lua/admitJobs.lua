--[[
  Admits jobs for one tenant against its limits in one atomic step, so concurrent requests cannot
  together pass a limit each would respect alone (a check followed by a separate write can).
  What is admitted is held as a lease until the jobs exist: createJobs turns each job's share of
  the lease into the tenant's unfinished count and spend reservation. A lease that outlives its
  request (the process died) expires, so a crash cannot hold a tenant's room for ever.
  A second call with the same lease id adds to it (a batch learns its estimated spend after its
  lines are read).
  KEYS[1] tenant totals (hash), KEYS[2] leases (zset: id → expiry ms), KEYS[3] lease sizes
  (hash: id → "jobs spend_e10 month"), KEYS[4] the tenant's intake window counter
  ARGV[1] now (ms), ARGV[2] lease id, ARGV[3] jobs, ARGV[4] estimated spend (1e-10 USD),
  ARGV[5] month (YYYY-MM), ARGV[6] max unfinished jobs ('' for none), ARGV[7] monthly budget
  (1e-10 USD, '' for none), ARGV[8] requests per window ('' for none), ARGV[9] window (ms),
  ARGV[10] lease lifetime (ms), ARGV[11] 1 to count this call against the request window
  Returns {'ok'} | {'rpm', ms until the window ends} | {'queued', unfinished, held, jobs}
          | {'budget', spent, reserved, held, estimate}
]]
--- @include "leases"

local now = tonumber(ARGV[1])
local jobs = tonumber(ARGV[3])
local estimate = tonumber(ARGV[4])
local month = ARGV[5]

if ARGV[8] ~= '' and ARGV[11] == '1' then
  local used = tonumber(redis.call('GET', KEYS[4]) or '0')
  if used >= tonumber(ARGV[8]) then
    local ttl = redis.call('PTTL', KEYS[4])
    if ttl < 0 then
      ttl = tonumber(ARGV[9])
    end
    return {'rpm', ttl}
  end
end

local heldJobs, heldSpend = liveLeases(KEYS[2], KEYS[3], now, month)
local t = redis.call('HMGET', KEYS[1], 'queued', 'spend_e10:' .. month, 'reserved_e10:' .. month)
local queued = math.max(0, tonumber(t[1] or '0'))
if ARGV[6] ~= '' and jobs > 0 and queued + heldJobs + jobs > tonumber(ARGV[6]) then
  return {'queued', queued, heldJobs, jobs}
end
if ARGV[7] ~= '' then
  local spent = tonumber(t[2] or '0')
  local reserved = math.max(0, tonumber(t[3] or '0'))
  local budget = tonumber(ARGV[7])
  if spent >= budget or spent + reserved + heldSpend + estimate > budget then
    return {'budget', fmt(spent), fmt(reserved), fmt(heldSpend), fmt(estimate)}
  end
end

if ARGV[8] ~= '' and ARGV[11] == '1' then
  if redis.call('INCR', KEYS[4]) == 1 then
    redis.call('PEXPIRE', KEYS[4], ARGV[9])
  end
end
if ARGV[6] ~= '' or ARGV[7] ~= '' then
  local prior = redis.call('HGET', KEYS[3], ARGV[2])
  if prior then
    local n, spend = parseLease(prior)
    jobs = jobs + n
    estimate = estimate + spend
  end
  if jobs > 0 or estimate > 0 then
    redis.call('HSET', KEYS[3], ARGV[2], fmt(jobs) .. ' ' .. fmt(estimate) .. ' ' .. month)
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[10]), ARGV[2])
  end
end
return {'ok'}
