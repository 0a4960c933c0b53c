--[[
  Ends a job that has not finished, from outside its hop: cancelled by the caller, or expired at
  its deadline. A worker still holding the job finds it terminal when it settles and drops its result.
  KEYS[1] job hash, KEYS[2] webhook outbox (zset)
  ARGV[1] now (ms), ARGV[2] events channel, ARGV[3] record TTL (ms), ARGV[4] job id,
  ARGV[5] cancelled | expired, ARGV[6] error (JSON), ARGV[7] key prefix
  Returns {'missing'} | {'terminal', status} | {'ended', hop, previous status}
]]
local f = redis.call('HMGET', KEYS[1], 'status', 'hop')
local status = f[1]
if not status then
  return {'missing'}
end
if status == 'succeeded' or status == 'failed' or status == 'cancelled' or status == 'expired' then
  return {'terminal', status}
end
redis.call('HSET', KEYS[1], 'status', ARGV[5], 'finished_at', ARGV[1], 'error', ARGV[6])
redis.call('HDEL', KEYS[1], 'request')
redis.call('HINCRBY', ARGV[7] .. ':tenant:' .. (redis.call('HGET', KEYS[1], 'tenant') or ''), 'queued', -1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
-- A job with a webhook leaves its event in the outbox in the same step, so it cannot be lost.
if redis.call('HEXISTS', KEYS[1], 'webhook_url') == 1 then
  redis.call('ZADD', KEYS[2], ARGV[1], ARGV[4])
end
-- A batch's job reports to the batch in the same step; the last one marks the batch for finalizing.
local batch = redis.call('HGET', KEYS[1], 'batch')
if batch then
  local batchKey = ARGV[7] .. ':batch:' .. batch
  redis.call('HINCRBY', batchKey, ARGV[5] == 'succeeded' and 'completed' or 'failed', 1)
  local c = redis.call('HMGET', batchKey, 'completed', 'failed', 'total')
  if c[3] and tonumber(c[1] or '0') + tonumber(c[2] or '0') >= tonumber(c[3]) then
    redis.call('SADD', ARGV[7] .. ':batches-done', batch)
  end
end
redis.call('PUBLISH', ARGV[2], ARGV[4])
return {'ended', f[2], status}
