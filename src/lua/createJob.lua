--[[
  Creates a job record, or returns the job an Idempotency-Key already names.
  KEYS[1] job hash, KEYS[2] tenant index (zset by creation time), KEYS[3] idempotency key,
  KEYS[4] the tenant's totals (hash; 'queued' counts its unfinished jobs)
  ARGV[1] job id, ARGV[2] now (ms), ARGV[3] record TTL (ms), ARGV[4] '1' when an idempotency key applies,
  ARGV[5] body hash, ARGV[6] idempotency window (s), ARGV[7..] field, value, ...
  Returns {0, id} created, {1, id} same key and body, {2, id} same key with another body.
]]
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
redis.call('HSET', KEYS[1], unpack(ARGV, 7))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local now = tonumber(ARGV[2])
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('HINCRBY', KEYS[4], 'queued', 1)
-- The index must not outlive the records it points to.
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. tostring(now - tonumber(ARGV[3])))
return {0, ARGV[1]}
