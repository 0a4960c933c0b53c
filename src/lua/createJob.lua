--[[
  Creates a job record, or returns the job an Idempotency-Key already names.
  KEYS[1] job hash, KEYS[2] tenant index (zset by creation time), KEYS[3] idempotency key,
  KEYS[4] the tenant's totals (hash; 'queued' counts its unfinished jobs), KEYS[5] the tenant's
  admission leases (zset), KEYS[6] their sizes (hash)
  ARGV[1] job id, ARGV[2] now (ms), ARGV[3] record TTL after the job ends (ms), ARGV[4] '1' when an idempotency key applies,
  ARGV[5] body hash, ARGV[6] idempotency window (s), ARGV[7] the admission lease this job was
  admitted under ('' for none), ARGV[8] its estimated spend (1e-10 USD, 0 for none), ARGV[9] the
  month that estimate is reserved in, ARGV[10] the least-busy lease zset of its first target ('' for
  none; the fields then name it as `lease`), ARGV[11] that lease's expiry (ms), ARGV[12] the request
  (JSON), ARGV[13..] field, value, ...
  The request is a string of its own (`<job key>:request`), not a field: with it out, a queued job's
  hash holds only short values, which Redis keeps as a compact listpack rather than a hashtable.
  Returns {0, id} created, {1, id} same key and body, {2, id} same key with another body.
]]
--- @include "leases"

if ARGV[4] == '1' then
  local prior = redis.call('GET', KEYS[3])
  if prior then
    local sep = string.find(prior, ' ', 1, true)
    local priorId = string.sub(prior, 1, sep - 1)
    if string.sub(prior, sep + 1) == ARGV[5] then
      return {1, priorId}
    end
    return {2, priorId}
  end
  redis.call('SET', KEYS[3], ARGV[1] .. ' ' .. ARGV[5], 'EX', ARGV[6])
end
-- No expiry yet: a record lives until its job ends, however long that takes (jobEnded sets the
-- TTL then), so a long job cannot vanish mid-run and take its result and its tenant count with it.
redis.call('HSET', KEYS[1], unpack(ARGV, 13))
redis.call('SET', KEYS[1] .. ':request', ARGV[12])
if ARGV[10] ~= '' then
  redis.call('ZADD', ARGV[10], ARGV[11], ARGV[1])
end
local now = tonumber(ARGV[2])
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('HINCRBY', KEYS[4], 'queued', 1)
local estimate = tonumber(ARGV[8])
if estimate > 0 then
  -- The record carries its reservation, so whichever script ends the job can release it.
  redis.call('HSET', KEYS[1], 'est_e10', ARGV[8], 'est_month', ARGV[9])
  redis.call('HINCRBY', KEYS[4], 'reserved_e10:' .. ARGV[9], ARGV[8])
end
if ARGV[7] ~= '' then
  takeFromLease(KEYS[5], KEYS[6], ARGV[7], estimate)
end
-- The index must not outlive the records it points to: an entry created two TTLs ago belongs to a
-- job that ended and expired, unless it ran that long (lists skip and drop entries whose record is gone).
-- One job in 32 (by the last character of its random id) does it for the rest: the trim is the same.
if string.byte(ARGV[1], -1) % 32 == 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. string.format('%.0f', now - 2 * tonumber(ARGV[3])))
end
return {0, ARGV[1]}
