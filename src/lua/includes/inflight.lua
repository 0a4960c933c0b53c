--[[
  Least-busy leases: a job routed by a `least_busy` alias is counted against its current target
  in a zset (job id → expiry) from the moment it is created until it ends or moves to another
  target. The record's `lease` field names the zset, so every script that moves or ends the job
  can drop it in the same step. A lease expires on its own: a queued job's after an hour, a
  running one's when its call's timeout has passed, so a worker that died strands no count.
]]
local QUEUED_LEASE_MS = 3600000

local function dropLease(zsetKey, id)
  if zsetKey then
    redis.call('ZREM', zsetKey, id)
  end
end
