--[[
  Asks a provider's circuit breaker for permission to call it. Called only when the process's
  local view is not "closed and proven healthy", so a healthy provider costs no round trip.
  KEYS[1] breaker hash, KEYS[2] trial leases (zset: token → expiry)
  ARGV[1] now (ms), ARGV[2] failure threshold, ARGV[3] lease (ms) for a probe or a trial,
  ARGV[4] events channel, ARGV[5] provider name, ARGV[6] a token naming this caller's trial
  Returns {verdict, state, until}:
    'free'      closed and healthy: call without a ticket
    'trial'     closed but unproven (a failure since the last success): one of at most `threshold`
                calls in flight, or one at a time after a 429; release it with breakerRecord
    'probe'     the single half-open probe
    'wait'      unproven and every trial slot is taken: try again shortly
    'open'      open (or half-open with its probe out) until `until`
    'throttled' the provider answered 429: hold off until `until`
]]
local now = tonumber(ARGV[1])
local f = redis.call('HMGET', KEYS[1], 'state', 'healthy', 'failures', 'open_until', 'probe_until', 'throttled_until', 'throttled')
local state = f[1] or 'closed'
local throttledUntil = tonumber(f[6] or '0')
if now < throttledUntil then
  return {'throttled', state, throttledUntil}
end
if state == 'closed' then
  if f[2] == '1' then
    return {'free', state, 0}
  end
  local failures = tonumber(f[3] or '0')
  -- Trials are leases, not a counter: a worker that dies mid-call gives its slot back when the
  -- lease runs out, so a crash can never leave an unproven provider with no slot at all.
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  local trials = redis.call('ZCARD', KEYS[2])
  -- After a 429, one call at a time finds out whether the limit has lifted, not a stampede.
  local limit = tonumber(ARGV[2])
  if f[7] == '1' then
    limit = failures + 1
  end
  if failures + trials < limit then
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[6])
    redis.call('PEXPIRE', KEYS[2], ARGV[3])
    return {'trial', state, 0}
  end
  return {'wait', state, 0}
end
if state == 'open' and now < tonumber(f[4] or '0') then
  return {'open', state, tonumber(f[4])}
end
if state == 'half_open' and now < tonumber(f[5] or '0') then
  return {'open', state, tonumber(f[5])}
end
-- Cooldown over (or the last probe's lease ran out): this caller is the one probe.
local lease = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'state', 'half_open', 'probe_until', lease)
if state ~= 'half_open' then
  redis.call('PUBLISH', ARGV[4], ARGV[5] .. ' half_open ' .. lease)
end
return {'probe', 'half_open', lease}
