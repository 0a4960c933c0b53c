--[[
  Appends one delivery attempt to a job's (or a batch's) webhook ledger and sets where the delivery
  stands, only while the record exists: an event delivered after its record expired must not bring
  back a stub of it with no expiry.
  KEYS[1] the record (hash), KEYS[2] its delivery attempts (list)
  ARGV[1] attempt (JSON), ARGV[2] pending | delivered | failed, ARGV[3] the list's TTL (ms)
  Returns 1 when recorded, 0 when the record is gone.
]]
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[1], 'webhook_status', ARGV[2])
return 1
