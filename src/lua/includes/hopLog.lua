--[[
  Appends lines to a hop's BullMQ job log (`<bull job key>:logs`, where BullMQ's own job.log
  writes and Bull Board reads), in the step that did what they tell: no round trip of its own.
  Nothing is written for a BullMQ job that no longer exists (its logs would outlive it), nor when
  `bullKey` is ''; `exists` is true when the caller knows the job is there. `lines` is
  newline-separated; they go in one RPUSH, and the log is trimmed only once it has grown past what
  is kept.
]]
local HOP_LOG_KEPT = 50

local function hopLog(bullKey, lines, exists)
  if bullKey == '' or lines == '' or (not exists and redis.call('EXISTS', bullKey) == 0) then
    return
  end
  local logKey = bullKey .. ':logs'
  local each = {}
  for line in string.gmatch(lines, '[^\n]+') do
    each[#each + 1] = line
  end
  if redis.call('RPUSH', logKey, unpack(each)) > HOP_LOG_KEPT then
    redis.call('LTRIM', logKey, -HOP_LOG_KEPT, -1)
  end
end
