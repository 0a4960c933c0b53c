--[[
  Whether a job status is final; the same list as TERMINAL_STATUSES in src/store/job-record.ts.
]]
local function isTerminal(status)
  return status == 'succeeded' or status == 'failed' or status == 'cancelled' or status == 'expired'
end
