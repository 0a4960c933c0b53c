--[[
  One tenant's file ledger: the bytes its files hold, reserved as an upload is written, so uploads
  through any number of API processes, at once, can never together pass the tenant's quota (Redis
  runs noeviction: a full Redis stops every tenant). Every file, uploaded or written by the broker,
  has an entry until it is deleted or expires; expired entries are pruned here, by their expiry time,
  so nothing relies on keyspace notifications and a crashed upload frees its bytes when its TTL ends.

  KEYS[1] ledger hash: `used` = bytes counted against the quota; <file id> = that file's bytes
  KEYS[2] expiry zset: file id by expiry time (ms)
  KEYS[3] the tenant's file index (file id by creation time), for listing
  KEYS[4] the file's hash
  KEYS[5] the file's lines

  ARGV[1] op, ARGV[2] file id, ARGV[3] now (ms)
  reserve: ARGV[4] expiry (ms), ARGV[5] bytes, ARGV[6] quota (-1: not counted), ARGV[7..] lines to append
    The lines are appended only if the bytes fit; the lines key gets its expiry with its first write.
    Returns {1, used} or, refused, {0, used}.
  publish: ARGV[4] tenant, ARGV[5] file JSON, ARGV[6] non-blank lines, ARGV[7] created (ms)
    Returns 1, or 0 when the upload's entry is gone (discarded, or its TTL passed mid-upload).
  release: ARGV[4] tenant that must own the file's hash, or '' for an upload not yet published
    Deletes the file and gives its bytes back. Returns 1, or 0 when there was nothing of the tenant's.
]]
local op, id, now = ARGV[1], ARGV[2], tonumber(ARGV[3])

-- Bounded work per call; a backlog left over is pruned by the next calls.
local PRUNE_BATCH = 1000
-- Takes a file out of the ledger: its bytes back to the quota, its entries out of the indexes.
local function forget(file)
  local bytes = tonumber(redis.call('HGET', KEYS[1], file) or '0')
  if bytes ~= 0 then
    redis.call('HINCRBY', KEYS[1], 'used', -bytes)
  end
  redis.call('HDEL', KEYS[1], file)
  redis.call('ZREM', KEYS[2], file)
  redis.call('ZREM', KEYS[3], file)
end

local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, PRUNE_BATCH)
for _, gone in ipairs(expired) do
  forget(gone)
end

-- A ledger holding nothing goes, so a tenant with no files has no keys.
local function tidy()
  if redis.call('HLEN', KEYS[1]) <= 1 and tonumber(redis.call('HGET', KEYS[1], 'used') or '0') == 0 then
    redis.call('DEL', KEYS[1])
  end
end
if #expired > 0 then
  tidy()
end

-- The tenant's own keys live as long as its longest-lived file, and no longer.
local function keepUntil(key, at)
  local ttl = redis.call('PTTL', key)
  if ttl == -1 or (ttl >= 0 and now + ttl < at) then
    redis.call('PEXPIREAT', key, at)
  end
end

if op == 'reserve' then
  local expiry, bytes, quota = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
  local used = tonumber(redis.call('HGET', KEYS[1], 'used') or '0')
  local counted = 0
  if quota >= 0 then
    counted = bytes
    if counted > 0 and used + counted > quota then
      return {0, used}
    end
  end
  if counted > 0 then
    used = redis.call('HINCRBY', KEYS[1], 'used', counted)
  end
  redis.call('HINCRBY', KEYS[1], id, counted)
  redis.call('ZADD', KEYS[2], expiry, id)
  if #ARGV >= 7 then
    redis.call('RPUSH', KEYS[5], unpack(ARGV, 7, #ARGV))
    redis.call('PEXPIREAT', KEYS[5], expiry)
  end
  keepUntil(KEYS[1], expiry)
  keepUntil(KEYS[2], expiry)
  return {1, used}
end

if op == 'publish' then
  local expiry = redis.call('ZSCORE', KEYS[2], id)
  if not expiry or redis.call('HEXISTS', KEYS[1], id) == 0 then
    return 0
  end
  expiry = tonumber(expiry)
  redis.call('HSET', KEYS[4], 'tenant', ARGV[4], 'json', ARGV[5], 'lines', ARGV[6])
  redis.call('PEXPIREAT', KEYS[4], expiry)
  redis.call('ZADD', KEYS[3], ARGV[7], id)
  keepUntil(KEYS[3], expiry)
  return 1
end

if op == 'release' then
  local tenant = ARGV[4]
  if tenant ~= '' then
    if redis.call('HGET', KEYS[4], 'tenant') ~= tenant then
      return 0
    end
  elseif redis.call('HEXISTS', KEYS[1], id) == 0 then
    -- Not this tenant's upload (or already released): its keys are not ours to delete.
    return 0
  end
  forget(id)
  redis.call('DEL', KEYS[4], KEYS[5])
  tidy()
  return 1
end

return redis.error_reply('fileQuota: unknown op ' .. tostring(op))
