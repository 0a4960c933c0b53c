--[[
  Reads the named fields of a job record in one HMGET, into a table by name (absent fields are
  false), so a script reads each field once however many includes need it.
]]
local function readRecord(jobKey, names)
  local values = redis.call('HMGET', jobKey, unpack(names))
  local rec = {}
  for i, name in ipairs(names) do
    rec[name] = values[i]
  end
  return rec
end
