--[[
  Reads the named fields of a job record in one HMGET, into a table by name (absent fields are
  false), so a script reads each field once however many includes need it.
  readWhole reads every field in one HGETALL instead (absent fields are nil). It is the cheaper read
  when most of the fields a step needs are absent, as the optional ones (lease, affinity, budget
  alias, webhook, batch, reservation) are for most jobs: Redis finds that a small hash lacks a field
  only by scanning the whole of it, once for every field an HMGET names.
]]
local function readRecord(jobKey, names)
  local values = redis.call('HMGET', jobKey, unpack(names))
  local rec = {}
  for i, name in ipairs(names) do
    rec[name] = values[i]
  end
  return rec
end

local function readWhole(jobKey)
  local all = redis.call('HGETALL', jobKey)
  local rec = {}
  for i = 1, #all, 2 do
    rec[all[i]] = all[i + 1]
  end
  return rec
end
