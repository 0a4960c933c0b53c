--[[
  Re-opens a failed job at the hop that failed, for an operator's retry (Bull Board): the record
  goes back to queued at that hop, the ledger says who re-opened it, and it counts again as an
  unfinished job of its tenant; its end will owe a new event (the `reopened` count names it).
  Only a failed job at exactly that hop, and not a batch's line (its batch has counted it), may be
  re-opened; anything else is refused with the reason, so a retry is never a silent no-op nor a
  second terminal state.
  KEYS[1] job hash
  ARGV[1] hop, ARGV[2] the ledger entry (JSON), ARGV[3] key prefix, ARGV[4] now (ms)
  Returns {1, reopened count} | {0, reason, detail}
]]
local f = redis.call('HMGET', KEYS[1], 'status', 'hop', 'batch', 'tenant', 'attempts', 'reopened', 'deadline_at', 'request')
local requestKey = KEYS[1] .. ':request'
f[8] = f[8] or (redis.call('EXISTS', requestKey) == 1)
if not f[1] then
  return {0, 'missing', ''}
end
if f[1] ~= 'failed' then
  return {0, 'status', f[1]}
end
if f[3] then
  return {0, 'batch', f[3]}
end
if tonumber(f[2]) ~= tonumber(ARGV[1]) then
  return {0, 'hop', f[2]}
end
if f[7] and tonumber(ARGV[4]) >= tonumber(f[7]) then
  -- Its first claim would only expire it.
  return {0, 'deadline', f[7]}
end
if not f[8] then
  return {0, 'request', ''}
end
local attempts = f[5]
if not attempts or attempts == '[]' then
  attempts = '[' .. ARGV[2] .. ']'
else
  attempts = string.sub(attempts, 1, -2) .. ',' .. ARGV[2] .. ']'
end
local reopened = tonumber(f[6] or '0') + 1
redis.call('HSET', KEYS[1], 'status', 'queued', 'attempts', attempts, 'reopened', reopened)
redis.call('HDEL', KEYS[1], 'finished_at', 'error', 'webhook_status')
-- Unfinished again: no expiry until it ends, and it counts against its tenant again.
redis.call('PERSIST', KEYS[1])
redis.call('PERSIST', requestKey)
redis.call('HINCRBY', ARGV[3] .. ':tenant:' .. (f[4] or ''), 'queued', 1)
return {1, reopened}
