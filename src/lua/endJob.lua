--[[
  Ends a job that has not finished, from outside its hop: cancelled by the caller, or expired at
  its deadline. A worker still holding the job is told to stop its call; one that settles anyway
  finds the job terminal and records the call as late, its result dropped.
  KEYS[1] job hash, KEYS[2] webhook outbox (zset)
  ARGV[1] now (ms), ARGV[2] events channel, ARGV[3] record TTL (ms), ARGV[4] job id,
  ARGV[5] cancelled | expired, ARGV[6] error (JSON), ARGV[7] key prefix, ARGV[8] '1' to end it only
  while it is queued (a front-door caller who hung up before their job started), ARGV[9] the
  channel a running job's worker hears its cancel on
  Returns {'missing'} | {'terminal', status} | {'started', status} | {'ended', hop, previous status, 1 if a webhook event is owed}
]]
--- @include "isTerminal"
--- @include "jobEnded"

local f = redis.call('HMGET', KEYS[1], 'status', 'hop')
local status = f[1]
if not status then
  return {'missing'}
end
if isTerminal(status) then
  return {'terminal', status}
end
if ARGV[8] == '1' and status ~= 'queued' then
  return {'started', status}
end
redis.call('HSET', KEYS[1], 'status', ARGV[5], 'finished_at', ARGV[1], 'error', ARGV[6])
local owed = jobEnded(KEYS[1], KEYS[2], ARGV[7], ARGV[2], ARGV[3], ARGV[1], ARGV[4], ARGV[5])
if status == 'running' then
  -- A call is in flight somewhere: the worker holding it stops it (see workers/running-calls.ts).
  redis.call('PUBLISH', ARGV[9], ARGV[4])
end
return {'ended', f[2], status, owed}
