--[[
  Records the outcome of a call made under breakerAcquire's verdict.
  KEYS[1] breaker hash, KEYS[2] trial leases (zset)
  ARGV[1] now (ms), ARGV[2] failure threshold, ARGV[3] cooldown (ms), ARGV[4] events channel,
  ARGV[5] provider name, ARGV[6] outcome: success | failure | throttled | neutral,
  ARGV[7] ticket: free | trial | probe, ARGV[8] for throttled: hold off until (ms),
  ARGV[9] the trial's token, ARGV[10] for a failure one tenant's own requests could have caused
  (a timeout): that tenant, else '', ARGV[11] '1' when several tenants share the provider
  Returns {state, until, failures, healthy}. Transitions are published as "<provider> <state> <until>".

  One tenant cannot open a breaker that other tenants share: its timeouts are held apart
  ('blamed', under 'blamed_tenant') and count as failures only once another tenant's call fails
  too, or a failure that no request can cause (a 5xx, a refused connection) joins them. Until then
  the provider stays proven for everyone; any success clears them.
]]
local now = tonumber(ARGV[1])
if ARGV[7] == 'trial' then
  redis.call('ZREM', KEYS[2], ARGV[9])
end
local f = redis.call('HMGET', KEYS[1], 'state', 'healthy', 'failures', 'open_until', 'blamed', 'blamed_tenant')
local state = f[1] or 'closed'
local outcome = ARGV[6]

if outcome == 'success' then
  if state ~= 'closed' or f[2] ~= '1' or (f[3] and f[3] ~= '0') or (f[5] and f[5] ~= '0') then
    redis.call('HSET', KEYS[1], 'state', 'closed', 'healthy', 1, 'failures', 0, 'throttled', 0, 'blamed', 0, 'blamed_tenant', '')
    if state ~= 'closed' or f[2] ~= '1' then
      redis.call('PUBLISH', ARGV[4], ARGV[5] .. ' closed 0')
    end
  end
  return {'closed', 0, 0, 1}
end

if outcome == 'failure' then
  local blame = ARGV[10]
  local blamed = tonumber(f[5] or '0')
  if blame ~= '' and ARGV[11] == '1' and state == 'closed' and tonumber(f[3] or '0') == 0 and (blamed == 0 or f[6] == blame) then
    redis.call('HSET', KEYS[1], 'blamed', blamed + 1, 'blamed_tenant', blame)
    return {state, 0, 0, tonumber(f[2] or '0')}
  end
  -- Corroborated: the held-apart timeouts count now, with this failure.
  local failures = tonumber(redis.call('HINCRBY', KEYS[1], 'failures', 1 + blamed))
  redis.call('HSET', KEYS[1], 'healthy', 0, 'blamed', 0, 'blamed_tenant', '')
  if state == 'open' then
    return {'open', tonumber(f[4] or '0'), failures, 0}
  end
  if state == 'half_open' or failures >= tonumber(ARGV[2]) then
    local untilMs = now + tonumber(ARGV[3])
    redis.call('HSET', KEYS[1], 'state', 'open', 'open_until', untilMs)
    redis.call('PUBLISH', ARGV[4], ARGV[5] .. ' open ' .. untilMs)
    return {'open', untilMs, failures, 0}
  end
  if f[2] == '1' then
    -- No longer proven healthy: every process switches to budgeted trial calls.
    redis.call('PUBLISH', ARGV[4], ARGV[5] .. ' suspect 0')
  end
  return {'closed', 0, failures, 0}
end

if outcome == 'throttled' then
  -- A 429 is not a failure, but until a call gets through again the provider is not proven.
  redis.call('HSET', KEYS[1], 'healthy', 0, 'throttled', 1, 'throttled_until', ARGV[8])
  if ARGV[7] == 'probe' and state == 'half_open' then
    redis.call('HSET', KEYS[1], 'probe_until', 0)
  end
  redis.call('PUBLISH', ARGV[4], ARGV[5] .. ' throttled ' .. ARGV[8])
  return {state, tonumber(f[4] or '0'), tonumber(f[3] or '0'), 0}
end

-- neutral: the call said nothing about the provider's health (a bad request, ...).
if ARGV[7] == 'probe' and state == 'half_open' then
  -- Give the probe back so the next caller can try at once.
  redis.call('HSET', KEYS[1], 'probe_until', 0)
end
return {state, 0, tonumber(f[3] or '0'), tonumber(f[2] or '0')}
