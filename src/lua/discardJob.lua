--[[
  Takes back a job its own request created but never enqueued, when the request is refused as a
  whole after part of it was written (bulk items are all-or-nothing): the record, its index entry,
  its idempotency key (if it still names this job) and what it added to the tenant's totals.
  KEYS[1] job hash, KEYS[2] tenant index, KEYS[3] idempotency key, KEYS[4] tenant totals
  ARGV[1] job id
]]
local f = redis.call('HMGET', KEYS[1], 'status', 'est_e10', 'est_month', 'lease')
if f[1] ~= 'queued' then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[1] .. ':request')
if f[4] then
  redis.call('ZREM', f[4], ARGV[1])
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[4], 'queued', -1)
if f[2] then
  redis.call('HINCRBY', KEYS[4], 'reserved_e10:' .. f[3], '-' .. f[2])
end
local idem = redis.call('GET', KEYS[3])
if idem and string.sub(idem, 1, #ARGV[1] + 1) == ARGV[1] .. ' ' then
  redis.call('DEL', KEYS[3])
end
return 1
