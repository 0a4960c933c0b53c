--[[
  Claims the hop a BullMQ fetch has just taken, as startAttempt would, and adds the claim's reply
  to the hop's data in the answer (not in Redis) as `syClaim`: BullMQ hands a fetched job's data
  through to the worker and drops fields of the hash it does not know. Only hops of provider
  queues are claimed (SY.leaseMs names them by their queue's key prefix); anything else BullMQ
  fetched goes back untouched. `SY` is set by whoever defines the script (defineClaimOnFetch):
  the record key prefix, the webhook outbox, the events channel, the record TTL, the key prefix
  and, per queue, how long a call may hold its least-busy lease.
  result: BullMQ's {job hash as field, value, ..., job id, rate limit delay, delay until}
]]
--- @script "startAttempt"

local function claimFetched(result, queuePrefix, now)
  if type(result) ~= 'table' or type(result[1]) ~= 'table' or #result[1] == 0 then
    return result
  end
  local leaseMs = SY.leaseMs[queuePrefix]
  if not leaseMs then
    return result
  end
  local job = result[1]
  -- The worker's name is the `pb` BullMQ has just written to the hop from the fetch's options:
  -- read there, not by decoding those options a second time (msgpack, about 2% of a job's Redis work).
  local at, worker
  for i = 1, #job, 2 do
    local field = job[i]
    if field == 'data' then
      at = i + 1
    elseif field == 'pb' then
      worker = job[i + 1]
    end
  end
  local ok, hop = pcall(cjson.decode, at and job[at] or '')
  if not ok or type(hop) ~= 'table' or type(hop.id) ~= 'string' or type(hop.hop) ~= 'number' then
    return result
  end
  local reply = startAttempt({SY.jobs .. hop.id, SY.outbox},
    {hop.hop, now, SY.events, SY.ttlMs, hop.id, SY.shard, queuePrefix .. result[2],
     'claimed by worker ' .. (worker or 'unnamed'), leaseMs, '1'})
  -- Appended to the data's JSON text; the request and the chain are JSON already and go in as they
  -- are, since encoding a large prompt again as a string would cost Redis a pass over every byte.
  local data = string.sub(job[at], 1, -2)
  if reply[1] == 'ok' then
    -- startAttempt's eight, in one concatenation rather than a table of parts joined: a Lua table
    -- costs Redis 500 to 1,000 instructions an entry, and this one was 1% of a job's work.
    local enc = cjson.encode
    job[at] = data .. ',"syClaim":["ok",' .. reply[2] .. ',' .. reply[3] .. ',' .. enc(reply[4]) .. ',' .. enc(reply[5])
      .. ',' .. enc(reply[6]) .. ',' .. enc(reply[7]) .. ',' .. enc(reply[8]) .. ']}'
    return result
  end
  local parts = {}
  for i = 1, #reply do
    parts[i] = cjson.encode(reply[i])
  end
  job[at] = data .. ',"syClaim":[' .. table.concat(parts, ',') .. ']}'
  return result
end
