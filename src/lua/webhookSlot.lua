--[[
  One tenant's webhook delivery slots, shared by every sender process, so a tenant whose receiver
  is slow can hold at most `limit` deliveries in flight however many senders run.
  Slots are leases, not a counter (as breakerAcquire's trials are): a sender that dies mid-attempt
  gives its slot back when the lease runs out, so a crash can never wedge a tenant.
  KEYS[1] leases (zset: lease token → expiry), KEYS[2] deliveries waiting for a slot (zset:
  delivery id → when it is due back), KEYS[3] pace (hash: avg_ms, how long a delivery holds a slot)
  ARGV[1] 'acquire' | 'release', ARGV[2] now (ms), ARGV[3] lease token, ARGV[4] delivery id,
  ARGV[5] limit, ARGV[6] lease (ms), ARGV[7] jitter in [0, 1), ARGV[8] shortest wait (ms),
  ARGV[9] longest wait (ms)
  acquire returns {1, 0} with a slot, or {0, ms to wait} when the tenant is at its limit;
  release returns {1, 0}.
]]
local now = tonumber(ARGV[2])
local lease = tonumber(ARGV[6])

if ARGV[1] == 'release' then
  local expiry = redis.call('ZSCORE', KEYS[1], ARGV[3])
  if expiry then
    redis.call('ZREM', KEYS[1], ARGV[3])
    local held = now - (tonumber(expiry) - lease)
    local avg = tonumber(redis.call('HGET', KEYS[3], 'avg_ms') or '')
    avg = avg and (avg * 0.8 + held * 0.2) or held
    redis.call('HSET', KEYS[3], 'avg_ms', math.max(1, math.floor(avg)))
    redis.call('PEXPIRE', KEYS[3], 3600000)
  end
  return {1, 0}
end

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  return {1, 0}
end
local limit = tonumber(ARGV[5])
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], lease)
  redis.call('ZREM', KEYS[2], ARGV[4])
  return {1, 0}
end

-- At the limit. The wait is about the time it takes the deliveries already waiting to drain
-- (waiting / limit turns of an average delivery), jittered, so however long the backlog the
-- waiting ones come back at roughly the pace slots free up: a fast receiver's backlog is not
-- left idling, and a slow one's thousands do not spin through the queue.
local minWait = tonumber(ARGV[8])
local maxWait = tonumber(ARGV[9])
local waiting = redis.call('ZCARD', KEYS[2])
if not redis.call('ZSCORE', KEYS[2], ARGV[4]) then
  waiting = waiting + 1
end
local avg = tonumber(redis.call('HGET', KEYS[3], 'avg_ms') or '') or minWait
local turns = math.ceil(waiting / limit)
local wait = math.min(maxWait, math.max(minWait, turns * avg)) * (0.5 + tonumber(ARGV[7]))
wait = math.floor(wait)
redis.call('ZADD', KEYS[2], now + wait + minWait, ARGV[4])
redis.call('PEXPIRE', KEYS[2], maxWait * 2 + minWait)
return {0, wait}
