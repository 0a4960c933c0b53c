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
  -- One line (a claim) or two (a call and its outcome) go without a table and the pattern
  -- iterator, which cost Redis more than the RPUSH does (about 1% of a job's work).
  local length
  local at = string.find(lines, '\n', 1, true)
  if not at then
    length = redis.call('RPUSH', logKey, lines)
  elseif at > 1 and at < #lines and not string.find(lines, '\n', at + 1, true) then
    length = redis.call('RPUSH', logKey, string.sub(lines, 1, at - 1), string.sub(lines, at + 1))
  else
    local each = {}
    for line in string.gmatch(lines, '[^\n]+') do
      each[#each + 1] = line
    end
    length = redis.call('RPUSH', logKey, unpack(each))
  end
  if length > HOP_LOG_KEPT then
    redis.call('LTRIM', logKey, -HOP_LOG_KEPT, -1)
  end
end
