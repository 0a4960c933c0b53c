--[[
  A fixed-window budget shared by every process (tokens per minute, a model's requests per minute).
  'reserve' takes ARGV[1] units if they fit under ARGV[2] in the current window of ARGV[3] ms; a
  reservation larger than the whole budget is let through into an empty window, or it could never
  run. 'adjust' always applies ARGV[1] (negative gives units back; positive charges what a call
  used beyond its reservation, even past the limit: the next callers then wait, and the budget is
  kept to what was really used). A window's counter always expires with its window.
  KEYS[1] counter
  ARGV[1] amount, ARGV[2] limit, ARGV[3] window (ms), ARGV[4] 'reserve' | 'adjust'
  Returns {1, 0, used} when applied, {0, ms until the window ends, used} when it must wait.
]]
local amount = tonumber(ARGV[1])
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if ARGV[4] == 'adjust' then
  if used == 0 and amount <= 0 then
    -- The window it was reserved in has ended: there is nothing to give back to.
    return {1, 0, 0}
  end
  local total = redis.call('INCRBY', KEYS[1], amount)
  if redis.call('PTTL', KEYS[1]) < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
  end
  return {1, 0, total}
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
