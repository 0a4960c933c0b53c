--- @include "readRecord"
--[[
  What happens when a job ends, whichever script ends it (settled by its hop, cancelled, expired),
  in the same atomic step as the status change:
  - the prompt goes (the result stays), except a failed job's, kept so an operator can retry it
    (its record has no result to keep instead); the record expires `ttl` ms from now;
  - the tenant's count of unfinished jobs drops, and the spend reserved for it is released;
  - a job with a webhook leaves its event in the outbox, so the event cannot be lost;
  - a batch's job counts into its batch, and the last one marks the batch for finalizing;
  - a least-busy lease it holds is dropped;
  - long-polls waiting on the job are woken.
  Returns 1 when a webhook event is owed, so the caller can hand it on at once, else 0.
  Keys under `prefix` are built here as BullMQ builds its own: every one shares the prefix's hash tag.
  `rec` holds the record's ENDED_FIELDS when the caller has read them already (readRecord).
]]
-- `request` is there only in a record written before the request had a key of its own.
local ENDED_FIELDS = {'tenant', 'webhook_url', 'batch', 'est_e10', 'est_month', 'lease', 'request'}

local function jobEnded(jobKey, outboxKey, prefix, channel, ttl, now, id, status, rec)
  local owed = 0
  local r = rec or readRecord(jobKey, ENDED_FIELDS)
  if r.lease then
    redis.call('ZREM', r.lease, id)
  end
  if status ~= 'failed' then
    redis.call('DEL', jobKey .. ':request')
    if r.request then
      redis.call('HDEL', jobKey, 'request')
    end
  else
    redis.call('PEXPIRE', jobKey .. ':request', ttl)
  end
  local tenantKey = prefix .. ':tenant:' .. (r.tenant or '')
  redis.call('HINCRBY', tenantKey, 'queued', '-1')
  if r.est_e10 then
    -- The spend reserved at admission gives way to what the job really cost (counted at settle).
    redis.call('HINCRBY', tenantKey, 'reserved_e10:' .. r.est_month, '-' .. r.est_e10)
  end
  redis.call('PEXPIRE', jobKey, ttl)
  if r.webhook_url then
    redis.call('ZADD', outboxKey, now, id)
    owed = 1
  end
  local batch = r.batch
  if batch then
    local batchKey = prefix .. ':batch:' .. batch
    redis.call('HINCRBY', batchKey, status == 'succeeded' and 'completed' or 'failed', '1')
    local c = redis.call('HMGET', batchKey, 'completed', 'failed', 'total')
    if c[3] and tonumber(c[1] or '0') + tonumber(c[2] or '0') >= tonumber(c[3]) then
      redis.call('SADD', prefix .. ':batches-done', batch)
    end
  end
  redis.call('PUBLISH', channel, id)
  return owed
end
