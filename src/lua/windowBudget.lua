--[[
  A fixed-window budget shared by every process (tokens per minute, a model's requests per minute).
  Reserves ARGV[1] units if they fit under ARGV[2] in the current window of ARGV[3] ms; a negative
  amount returns units (reconciling an estimate with reported usage) and always applies. A reservation
  larger than the whole budget is let through into an empty window, or it could never run.
  KEYS[1] counter
  Returns {1, 0, used} when reserved, {0, ms until the window ends, used} when it must wait.
]]
local amount = tonumber(ARGV[1])
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if amount <= 0 then
  if used == 0 then
    return {1, 0, 0}
  end
  return {1, 0, redis.call('INCRBY', KEYS[1], amount)}
end
if used > 0 and used + amount > tonumber(ARGV[2]) then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then
    ttl = tonumber(ARGV[3])
  end
  return {0, ttl, used}
end
local total = redis.call('INCRBY', KEYS[1], amount)
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return {1, 0, total}
