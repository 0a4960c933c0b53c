--[[
  Creates the records of one or more jobs of one tenant, or finds the job an Idempotency-Key
  already names. A bulk request's jobs go a chunk to a call, so the tenant's counts and lease are
  updated once a call, not once a job.
  KEYS[1] tenant index (zset by creation time), KEYS[2] the tenant's totals (hash; 'queued' counts
  its unfinished jobs), KEYS[3] the tenant's admission leases (zset), KEYS[4] their sizes (hash);
  run as createQueuedJob (one job), KEYS[5..] are BullMQ's for adding its first hop.
  ARGV[1] now (ms), ARGV[2] record TTL after the job ends (ms), ARGV[3] idempotency window (s),
  ARGV[4] the admission lease these jobs were admitted under ('' for none), ARGV[5] the month
  estimates are reserved in, ARGV[6..8] BullMQ's own arguments for adding the first hop ('' when
  not run as createQueuedJob), then two arguments for each job. The first is a JSON array of
  strings: its hash and its idempotency key (in the tenant's slot, as KEYS[1] is; arguments, not
  keys, so the number of keys is fixed and a Cluster client routes by the first, whatever the
  number of jobs), id, '1' when an idempotency key applies, body hash, estimated spend (1e-10 USD,
  0 for none), the least-busy lease zset of its first target ('' for none; the fields then name it
  as `lease`), that lease's expiry (ms), then field, value, ... of its hash. The second is the
  request (JSON), apart, so that a large prompt is not decoded here.
  The request is a string of its own (`<job key>:request`), not a field: with it out, a queued job's
  hash holds only short values, which Redis keeps as a compact listpack rather than a hashtable.
  Returns per job code, id: 0 created, 1 same key and body, 2 same key with another body.
]]
--- @include "leases"
--- @bullmq "addPrioritizedJob"

local now = tonumber(ARGV[1])
local out = {}
local created, estimated, trim = 0, 0, false
for a = 9, #ARGV, 2 do
  local job = cjson.decode(ARGV[a])
  local jobKey, idemKey, id, keyed, bodyHash = job[1], job[2], job[3], job[4], job[5]
  local estimate, leaseKey, leaseExpiry, request = tonumber(job[6]), job[7], job[8], ARGV[a + 1]
  local code = 0
  if keyed == '1' then
    local prior = redis.call('GET', idemKey)
    if prior then
      local sep = string.find(prior, ' ', 1, true)
      id = string.sub(prior, 1, sep - 1)
      code = string.sub(prior, sep + 1) == bodyHash and 1 or 2
    else
      redis.call('SET', idemKey, id .. ' ' .. bodyHash, 'EX', ARGV[3])
    end
  end
  if code == 0 then
    -- No expiry yet: a record lives until its job ends, however long that takes (jobEnded sets the
    -- TTL then), so a long job cannot vanish mid-run and take its result and its tenant count with it.
    redis.call('HSET', jobKey, unpack(job, 9))
    redis.call('SET', jobKey .. ':request', request)
    if leaseKey ~= '' then
      redis.call('ZADD', leaseKey, leaseExpiry, id)
    end
    -- ARGV[1], not `now`: a number argument costs Redis an snprintf (see countAttempt).
    redis.call('ZADD', KEYS[1], ARGV[1], id)
    if estimate > 0 then
      -- The record carries its reservation, so whichever script ends the job can release it.
      redis.call('HSET', jobKey, 'est_e10', fmt(estimate), 'est_month', ARGV[5])
      estimated = estimated + estimate
    end
    created = created + 1
    -- One job in 32 (by the last character of its random id) trims the index for the rest.
    trim = trim or string.byte(id, -1) % 32 == 0
  end
  out[#out + 1] = code
  out[#out + 1] = id
end
if created > 0 then
  redis.call('HINCRBY', KEYS[2], 'queued', created == 1 and '1' or fmt(created))
  if estimated > 0 then
    redis.call('HINCRBY', KEYS[2], 'reserved_e10:' .. ARGV[5], fmt(estimated))
  end
  if ARGV[4] ~= '' then
    takeFromLease(KEYS[3], KEYS[4], ARGV[4], created, estimated)
  end
end
-- The index must not outlive the records it points to: an entry created two TTLs ago belongs to a
-- job that ended and expired, unless it ran that long (lists skip and drop entries whose record is gone).
if trim then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. fmt(now - 2 * tonumber(ARGV[2])))
end
if ARGV[6] ~= '' and out[1] == 0 then
  addPrioritizedJob({unpack(KEYS, 5)}, {ARGV[6], ARGV[7], ARGV[8]})
end
return out
