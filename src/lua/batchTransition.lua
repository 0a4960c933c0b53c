--[[
  Moves a batch from one of the statuses it may leave to another, or does nothing: the batch
  worker's steps and the API's cancel race each other, and a check followed by a separate write
  let a cancel during validation be overwritten by `in_progress` (then `completed`).
  KEYS[1] batch hash
  ARGV[1] the new status, ARGV[2] the timestamp field to stamp ('' for none), ARGV[3] now (Unix s),
  ARGV[4] the statuses it may move from (comma-separated), ARGV[5..] more field, value pairs
  Returns {1, previous status, start_done} when moved, {0, current status, start_done} when not.
]]
local f = redis.call('HMGET', KEYS[1], 'status', 'start_done')
local current = f[1]
if not current then
  return {0, '', ''}
end
local allowed = false
for from in string.gmatch(ARGV[4], '[^,]+') do
  if from == current then
    allowed = true
  end
end
if not allowed then
  return {0, current, f[2] or ''}
end
redis.call('HSET', KEYS[1], 'status', ARGV[1])
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
end
if #ARGV >= 5 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 5))
end
return {1, current, f[2] or ''}
