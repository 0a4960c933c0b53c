--[[
  Admission leases (see admitJobs): a zset of lease id → expiry and a hash of lease id →
  "jobs spend_e10 month". Integers are written with %.0f: Lua's tostring turns large numbers
  into "1e+13", which HINCRBY refuses.
]]
local function fmt(n)
  return string.format('%.0f', n)
end

local function parseLease(value)
  local jobs, spend, month = string.match(value, '^(%-?%d+) (%-?%d+) (%S+)$')
  return tonumber(jobs), tonumber(spend), month
end

-- Drops expired leases; returns the jobs and this month's spend the live ones still hold.
local function liveLeases(zsetKey, hashKey, now, month)
  local expired = redis.call('ZRANGEBYSCORE', zsetKey, '-inf', now)
  for _, id in ipairs(expired) do
    redis.call('HDEL', hashKey, id)
  end
  if #expired > 0 then
    redis.call('ZREMRANGEBYSCORE', zsetKey, '-inf', now)
  end
  local jobs, spend = 0, 0
  local values = redis.call('HVALS', hashKey)
  for _, v in ipairs(values) do
    local n, s, m = parseLease(v)
    jobs = jobs + n
    if m == month then
      spend = spend + s
    end
  end
  return jobs, spend
end

-- Moves `jobs` jobs' share out of a lease: those jobs now count on their own.
local function takeFromLease(zsetKey, hashKey, id, jobs, spend)
  local value = redis.call('HGET', hashKey, id)
  if not value then
    return
  end
  local n, s, m = parseLease(value)
  n = n - jobs
  s = math.max(0, s - spend)
  if n <= 0 then
    redis.call('HDEL', hashKey, id)
    redis.call('ZREM', zsetKey, id)
  else
    redis.call('HSET', hashKey, id, fmt(n) .. ' ' .. fmt(s) .. ' ' .. m)
  end
end
